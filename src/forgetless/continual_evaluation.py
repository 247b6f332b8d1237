"""Continual evaluation: every seen task's accuracy every few training steps, not only at task
ends, so that what happens *during* a task is visible — the stability gap of De Lange, van de
Ven & Tuytelaars (ICLR 2023): right after a new task starts, replay, distillation and
regularisation methods lose much of an old task's accuracy, then recover, which end-of-task
matrices never show.

Each task is evaluated on a fixed subset of its test set (``samples`` per task, drawn once from
the learner's seed with a generator of its own, so evaluating never changes training). The
record (``ContinualEvaluation.record``) is the JSON-able dict that ``forgetless.
continual_metrics`` reads: the steps, per evaluation every task's accuracy (None before the
task starts), each task's start and end step, and the seconds spent.

``every="auto"`` sizes the interval so that evaluating costs about ``AUTO_BUDGET`` of the
training time: after each evaluation the interval becomes the number of training steps whose
measured time is that evaluation's time divided by the budget. The interval then grows as more
tasks are evaluated (each evaluation covers every seen task), and the steps evaluated depend on
the machine's speed; the accuracies at those steps do not. Because the dip after a task switch
is short (online split MNIST, ER, batch 10: task 0 falls from 100% to 70% six steps into task 1
and is back at 99% two steps later), "auto" also evaluates densely after every task start: the
interval is at most half the steps since the switch (steps 1, 2, 3, 5, 8, 12, ... after it)
while evaluating has cost less than ``DENSE_CEILING`` of training. A fixed ``every`` gives
fixed steps.

In a process group every rank must evaluate at the same steps (the accuracy is a collective:
each rank scores its share of the subset), so the timing-dependent choices are made from rank
0's clock, shared at each evaluation and each task start: the next evaluation's step is planned
there (``_plan``), never from a rank's own clock between them.
"""

from __future__ import annotations

import math
import time

import torch

from forgetless import distributed
from forgetless.data.stream import Task
from forgetless.errors import ConfigurationError

#: The share of training time that ``every="auto"`` spends on its evenly spaced evaluations; the
#: dense ones after each switch add to it up to ``DENSE_CEILING``, under the 20% that continual
#: evaluation may cost (measured: tests/test_continual_evaluation.py).
AUTO_BUDGET = 0.08
#: The dense evaluations after a switch are skipped while evaluating has cost more than this
#: share of the training so far.
DENSE_CEILING = 0.15


def check_every(every) -> int | str | None:
    """``every``: None or "off" (no continual evaluation), "auto", or a positive whole number
    of steps."""
    if every is None or every == "off":
        return None
    if every == "auto":
        return "auto"
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigurationError(
            f"the continual-evaluation interval must be a positive whole number of steps, "
            f"'auto' or 'off' (e.g. --eval-every 10), got {every!r}.")
    return every


def check_samples(samples) -> int:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigurationError(
            f"eval samples must be a positive whole number of test samples per task (e.g. "
            f"--eval-samples 100), got {samples!r}.")
    return samples


class ContinualEvaluation:
    """Evaluates the learner's seen tasks every ``every`` steps on fixed test subsets."""

    def __init__(self, every: int | str = "auto", samples: int = 100) -> None:
        self.every = check_every(every) or "auto"
        self.samples = check_samples(samples)
        self.interval = 1 if self.every == "auto" else self.every
        self.subsets: list[Task] = []
        self.record: dict = {}
        self._last_step = 0
        self._switch_step = 0  # the step the current task started at
        self._train_clock: float | None = None  # when the current stretch of training began
        self._train_seconds = 0.0
        self._steps_timed = 0
        self._next_step = self.interval  # the step of the next evaluation (``_plan``)

    def start(self, tasks: list[Task], seed: int, record: dict | None = None,
              step: int = 0) -> None:
        """Draw each task's fixed evaluation subset and begin an empty record, or continue
        ``record`` (a resumed fit's) from global step ``step``."""
        generator = torch.Generator().manual_seed(seed + 7919)  # not the learner's own
        self.subsets = []
        for task in tasks:
            n = task.test_x.shape[0]
            keep = torch.randperm(n, generator=generator)[:self.samples].sort().values
            self.subsets.append(Task(task.task_id, task.train_x[:0], task.train_y[:0],
                                     task.test_x[keep], task.test_y[keep], task.classes,
                                     task.description))
        self.record = {"every": self.every, "eval_samples": min(
            [self.samples] + [t.test_x.shape[0] for t in tasks]),
            "steps": [], "accuracy": [], "task_starts": [], "task_ends": [],
            "seconds": 0.0, "train_seconds": 0.0}
        if record:
            self.record = {**record, **{k: list(v) for k, v in record.items()
                                        if isinstance(v, list)}}
        self._last_step = step
        self._train_seconds = self.record["train_seconds"]
        self._plan()

    # -------------------------------------------------------------- called by the Learner
    def task_started(self, task_id: int, step: int) -> None:
        self.record["task_starts"].append(step)
        self._switch_step = step
        self._plan()

    def task_ended(self, learner, step: int) -> None:
        self.record["task_ends"].append(step)
        if not self.record["steps"] or self.record["steps"][-1] != step:
            self.evaluate(learner, step)

    def training(self, running: bool) -> None:
        """Training starts (True) or pauses (False): the clock the auto interval divides."""
        now = time.perf_counter()
        if running:
            self._train_clock = now
        elif self._train_clock is not None:
            self._train_seconds += now - self._train_clock
            self._train_clock = None

    def after_step(self, learner, step: int) -> None:
        """After global step ``step``: evaluate when the planned step has come."""
        self._steps_timed += 1
        if step >= self._next_step:
            self.training(False)
            self.evaluate(learner, step)
            self.training(True)

    def _plan(self) -> None:
        """The step of the next evaluation: ``interval`` steps after the last one, or (auto,
        while evaluating has cost under ``DENSE_CEILING`` of training) sooner right after a
        switch, where the dip is: at most half the steps since the switch. The cost is rank
        0's in a process group, so every rank plans the same step."""
        dense = self.every == "auto" and distributed.broadcast_object(
            self.record["seconds"] < DENSE_CEILING * self._train_seconds)
        last, step = self._last_step, self._last_step + 1
        while dense and step - last < min(self.interval, max(1, (step - self._switch_step) // 2)):
            step += 1
        self._next_step = step if dense else last + self.interval

    def evaluate(self, learner, step: int) -> None:
        """Every started task's accuracy at ``step``; the others None."""
        start = time.perf_counter()
        started = len(self.record["task_starts"])
        main = learner.objective.scores[0]
        row = [learner.objective.score(learner, subset)[main] if j < started else None
               for j, subset in enumerate(self.subsets)]
        self.record["steps"].append(step)
        self.record["accuracy"].append(row)
        seconds = time.perf_counter() - start
        self.record["seconds"] += seconds
        self._last_step = step
        if self.every == "auto" and self._steps_timed:
            step_seconds = self._train_seconds / self._steps_timed
            self.interval = distributed.broadcast_object(
                max(1, math.ceil(seconds / (AUTO_BUDGET * max(step_seconds, 1e-9)))))
        self._plan()

    def finish(self) -> dict:
        self.training(False)
        self.record["train_seconds"] = self._train_seconds
        return self.record
