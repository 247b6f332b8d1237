"""The one training loop. Every strategy plugs into it through the hooks in
``strategies/base.py``; none copies it.

``Learner.fit(stream)`` trains on each task in turn and, after each, evaluates on every task of
the stream (future ones included, for forward transfer), filling the accuracy matrix
``R[i][j]`` = accuracy on task j after training task i.
"""

from __future__ import annotations

import bisect
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from forgetless import distributed
from forgetless.compiled_step import CompiledStep
from forgetless.continual_evaluation import ContinualEvaluation, check_every
from forgetless.data.stream import Scenario, Stream, Task
from forgetless.data.task_free import check_blur, task_free_order
from forgetless.divergence import DivergenceGuard
from forgetless.errors import ConfigurationError, DataError, ScenarioError
from forgetless.models.heads import OutputMask, apply_mask
from forgetless.objectives import Objective, build_objective
from forgetless.strategies.base import (
    Batch,
    Strategy,
    TrainingData,
    evaluating,
    modes_restored,
)
from forgetless.strategies.composite import Composite

#: ``adam-fused``: PyTorch's fused Adam (``adam`` below), opt-in because it rounds differently.
OPTIMIZERS = ("adam", "adam-fused", "sgd")


@dataclass
class FitResult:
    """What ``Learner.fit`` measured."""

    accuracy_matrix: list[list[float]]
    untrained_accuracy: list[float]
    train_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    #: The objective's other scores (a language model's perplexity), as matrices like
    #: ``accuracy_matrix``; ``untrained_scores`` the same before any training.
    scores: dict[str, list[list[float]]] = field(default_factory=dict)
    untrained_scores: dict[str, list[float]] = field(default_factory=dict)
    #: Scores on the stream's held-out set (``Stream.held_out``: a language model's general
    #: text), one per row, the untrained model's first: ``{"perplexity": [...]}``.
    held_out: dict[str, list[float]] = field(default_factory=dict)
    #: The continual-evaluation record (``forgetless.continual_evaluation``): every seen task's
    #: accuracy every few steps, empty when continual evaluation is off.
    continual: dict = field(default_factory=dict)


def check_objective(strategy: Strategy, objective: str) -> None:
    """Refuse a strategy that cannot serve the stream's objective (a language model), saying
    why and what serves it."""
    if objective in strategy.objectives:
        return
    from forgetless.strategies import STRATEGIES

    serving = sorted(n for n in STRATEGIES.names()
                     if objective in STRATEGIES.get(n).objectives)
    why = f" {strategy.why_not_objective}" if strategy.why_not_objective else ""
    raise ScenarioError(
        f"strategy '{strategy.name}' does not serve {objective.replace('_', ' ')} streams.{why} "
        f"Strategies that do: {', '.join(serving)}.")


def check_boundary_free(strategy: Strategy) -> None:
    """Refuse, for a task-free stream, a strategy that needs to be told where tasks end."""
    reason = strategy.boundary_reason()
    if reason is None:
        return
    from forgetless.strategies import STRATEGIES, build_strategy

    free = sorted(n for n in STRATEGIES.names() if build_strategy(n, {}).boundary_reason()
                  is None)
    raise ScenarioError(
        f"strategy '{strategy.name}' cannot learn from a task-free stream: {reason} Strategies "
        f"that can: {', '.join(free)} (or use --stream online, which announces boundaries).")


def check_scenario(strategy: Strategy, scenario: Scenario) -> None:
    """Refuse a strategy that cannot serve ``scenario`` meaningfully, saying why."""
    scenario = Scenario.parse(scenario)
    if scenario.value in strategy.scenarios and not (
            strategy.needs_task_id and not scenario.task_id_at_test):
        return
    served = ", ".join(sorted(strategy.scenarios)) or "none"
    why = (" It needs the task id at test time, which only task-incremental runs give; without "
           "it the model cannot know which of its task-specific parts to use."
           if strategy.needs_task_id and not scenario.task_id_at_test else "")
    raise ScenarioError(
        f"strategy '{strategy.name}' does not serve the {scenario.value}-incremental scenario."
        f"{why} It serves: {served}. Choose one of those with --scenario, or another strategy "
        "(`forgetless list` shows what each serves)."
    )


class Learner:
    """Trains one model on a stream of tasks with a strategy.

    Budget per task: ``epochs`` passes over the task's training data, or exactly ``iterations``
    optimiser steps when given; none for a strategy that does not train the model
    (``trains_model = False``: frozen-feature learners). The optimiser (``adam`` or ``sgd``) is
    rebuilt at every task unless ``reset_optimizer=False``, and always when the set of trainable
    parameters changes.
    One ``seed`` fixes the order of batches and every sampler a strategy draws from
    ``learner.generator``.

    ``task_free``: ``fit`` trains on the stream as one pass over every task's data, task after
    task, transitions blurred over ``blur`` of a task (``forgetless.data.task_free``), and the
    strategy is never told where a task ends (its ``before_task`` / ``after_task`` are not
    called; strategies that need them are refused with ``Strategy.boundary_reason``). The
    accuracy matrix is still measured where each task ends. An online stream with announced
    boundaries is the ordinary fit with ``epochs=1`` and a small batch.
    ``eval_every``: continual evaluation (``forgetless.continual_evaluation``) every that many
    steps, or ``"auto"`` (sized to cost under 20% of training time), on ``eval_samples`` test
    samples per task; None: only at task ends.
    ``compile``: the step's forward pass and loss (and with them the backward) run through
    ``torch.compile`` (``forgetless.compiled_step``) when no strategy replaces the forward;
    where ``torch.compile`` cannot run here, the eager step, with a warning.

    In a process group (``forgetless.distributed``: ``torchrun``, ``forgetless run --nproc``)
    the learner is one rank of a data-parallel run: every rank draws the same global batches
    (``batch_size`` is the global batch), trains on its share of each, and the gradients are
    averaged before each step; the model starts and stays the same on every rank (broadcast
    from rank 0 at each task's start, checked at its end), and so does ``generator``: every
    rank makes the same draws, so a run gives the matrix of one process, whatever the ranks.
    """

    def __init__(self, model: nn.Module, strategy: Strategy | None = None, *, epochs: int = 1,
                 iterations: int | None = None, batch_size: int = 128, lr: float = 1e-3,
                 optimizer: str = "adam", momentum: float = 0.0, weight_decay: float = 0.0,
                 reset_optimizer: bool = True, seed: int = 0, device: str | torch.device = "cpu",
                 eval_batch_size: int = 1000, progress: bool | None = None,
                 objective: Objective | str | None = None, task_free: bool = False,
                 blur: float = 0.0, eval_every: int | str | None = None,
                 eval_samples: int = 100, compile: bool = False) -> None:
        if optimizer not in OPTIMIZERS:
            raise ConfigurationError(f"unknown optimizer '{optimizer}'; choose adam, adam-fused or "
                                     "sgd.")
        if iterations is None and (not isinstance(epochs, int) or epochs < 1):
            raise ConfigurationError(f"epochs must be a positive whole number, got {epochs!r}.")
        if iterations is not None and (not isinstance(iterations, int) or iterations < 1):
            raise ConfigurationError(
                f"iterations must be a positive whole number, got {iterations!r}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"batch size must be a positive whole number, got "
                                     f"{batch_size!r}.")
        if not lr > 0:
            raise ConfigurationError(f"learning rate must be positive, got {lr!r}.")
        self.blur = check_blur(blur)
        if self.blur and not task_free:
            raise ConfigurationError(
                "blurred transitions (blur > 0) are for task-free streams; add task_free=True "
                "(--stream task-free) or set the blur to 0.")
        self.task_free = bool(task_free)
        every = check_every(eval_every)
        #: The continual evaluation of ``fit`` (None: only the end-of-task evaluations).
        self.monitor = None if every is None else ContinualEvaluation(every, eval_samples)
        #: Optimiser steps since the learner was built, over every task and phase.
        self.global_step = 0
        self.world = distributed.world()
        if batch_size < self.world.size:
            raise ConfigurationError(
                f"the batch size ({batch_size}) is the global batch, split over "
                f"{self.world.size} processes; give at least one sample per process "
                f"(--batch-size {self.world.size} or more, twice that for a model with "
                "BatchNorm).")
        self.device = distributed.rank_device(_resolve_device(device))
        self.model = model.to(self.device)
        if strategy is None:
            from forgetless.strategies.bounds import Naive

            strategy = Naive()
        self.strategy = strategy if isinstance(strategy, Composite) else Composite(strategy)
        self.epochs, self.iterations, self.batch_size = epochs, iterations, batch_size
        self.lr, self.optimizer_name, self.momentum = lr, optimizer, momentum
        self.weight_decay, self.reset_optimizer = weight_decay, reset_optimizer
        self.seed, self.eval_batch_size = seed, eval_batch_size
        self.progress = (sys.stderr.isatty() if progress is None else progress) and \
            self.world.is_main
        # None: the objective the stream names, adopted in ``bind``.
        self.objective: Objective | None = (build_objective(objective)
                                            if isinstance(objective, str) else objective)
        # The same on every rank of a process group: every draw from it must be made by every
        # rank with the same arguments (``forgetless.distributed``), so the ranks stay in step.
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer: torch.optim.Optimizer | None = None
        self._trainable: tuple[int, ...] = ()
        # What the learner knows of the stream (grows with ``learn`` on new tasks).
        self.scenario: Scenario | None = None
        self.stream_tasks: list[Task] = []
        self.tasks_learned: list[int] = []
        self.output_mask: OutputMask | None = None
        self.current_task: Task | None = None
        self.step_in_task = 0
        self.batches_per_epoch = 1  # of the data being trained now (per-epoch schedules read it)
        self.divergence = DivergenceGuard()
        self._logits_hook = None  # set when the model's output holds its logits (``.logits``)
        self.compiled = CompiledStep(self) if compile else None
        # Which samples of the current batch (as the loop drew it) this task trains on for the
        # first time: replay offers each sample to its buffer once (``run_steps``).
        self.first_visit: torch.Tensor | None = None
        self._visited: torch.Tensor | None = None
        # How the model was built (``build_model`` records it), so a checkpoint can rebuild it.
        self.model_spec: dict | None = getattr(model, "build_spec", None)
        # The rows of the current (or last) fit, kept in checkpoints so a resumed fit returns
        # the whole accuracy matrix; ``_loaded_fit`` is the history the next fit continues.
        self.fit_history: FitResult | None = None
        self._loaded_fit: FitResult | None = None
        self.strategy.setup(self)

    # ------------------------------------------------------------------ the stream
    def bind(self, stream: Stream) -> None:
        """Adopt a stream's scenario, head and tasks, checking that they fit this learner."""
        if self.objective is None:
            self.objective = build_objective(stream.objective)
        elif self.objective.name != stream.objective:
            raise ConfigurationError(
                f"this learner optimises {self.objective.name.replace('_', ' ')}; a "
                f"{stream.objective.replace('_', ' ')} stream cannot continue it.")
        check_objective(self.strategy, self.objective.name)
        check_scenario(self.strategy, stream.scenario)
        if self.task_free:
            check_boundary_free(self.strategy)
        if self.scenario is not None and self.scenario is not stream.scenario:
            raise ScenarioError(
                f"this learner runs the {self.scenario.value}-incremental scenario; a "
                f"{stream.scenario.value}-incremental stream cannot continue it."
            )
        self._check_model(stream)
        if self.scenario is None:  # the first stream: every rank starts from rank 0's model
            self._synchronise_model()
        self.scenario = stream.scenario
        if self.output_mask is None:
            self.output_mask = OutputMask(stream.scenario, stream.num_outputs, self.device,
                                          self.strategy.trains_whole_head)
        for task in stream.tasks:
            self._know(task)

    def _know(self, task: Task) -> None:
        if task.task_id < len(self.stream_tasks):
            self.stream_tasks[task.task_id] = task
        elif task.task_id == len(self.stream_tasks):
            self.stream_tasks.append(task)
        else:
            raise DataError(
                f"task {task.task_id} arrives after {len(self.stream_tasks)} known tasks; "
                f"the next task's id must be {len(self.stream_tasks)}."
            )
        self.output_mask.add_task(task.task_id, task.classes)

    def _check_model(self, stream: Stream) -> None:
        sample = stream.tasks[0].test_x[:1].to(self.device)
        try:
            with torch.no_grad(), evaluating(self.model):
                output = self.model(sample)
        except RuntimeError as error:
            raise DataError(
                f"the model cannot take inputs of per-sample shape {stream.input_shape} "
                f"({str(error).splitlines()[0]}); build the model for the stream's input shape."
            ) from None
        out = model_logits(output)
        if out is not output and self._logits_hook is None:
            # The model is made to return the tensor itself, so that every caller (the loop,
            # Fisher estimators, distillation teachers, PackNet's functional calls) gets it.
            self._logits_hook = self.model.register_forward_hook(_logits_only)
        self.objective.check_outputs(out, stream.num_outputs)

    # ------------------------------------------------------------------ training
    def fit(self, stream: Stream, after_task=None) -> FitResult:
        """Train on every task of ``stream`` in order; evaluate on all tasks after each.

        ``after_task(learner)``, when given, is called after each task's evaluation (the
        checkpoints of ``forgetless run --checkpoint-dir`` and the experiment loggers use it).
        A learner restored from a state saved during a fit of this stream continues that fit:
        the tasks already trained are skipped and their rows kept. The model is left in the
        train/eval mode it had (every module's flag), also when training stops on an error."""
        self.bind(stream)
        with modes_restored(self.model):
            result = self._continued_fit(stream)
            if result is None:
                untrained = self.evaluate_scores(stream.tasks)
                result = FitResult([], untrained.pop(self.objective.scores[0]),
                                   scores={k: [] for k in untrained}, untrained_scores=untrained)
                self._score_held_out(stream, result)
            self.fit_history = result
            if self.monitor is not None:
                self.monitor.start(stream.tasks, self.seed, result.continual or None,
                                   self.global_step)
                if not result.continual:
                    self.monitor.task_started(0, self.global_step)
                    self.monitor.evaluate(self, self.global_step)
            if self.task_free:
                self._fit_task_free(stream, result, after_task)
            else:
                for task in stream.tasks[len(result.accuracy_matrix):]:
                    if self.monitor is not None and task.task_id:
                        self.monitor.task_started(task.task_id, self.global_step)
                    start = time.perf_counter()
                    steps = self.learn(task)
                    self._row_done(stream, result, start, steps, after_task)
        return result

    def _row_done(self, stream: Stream, result: FitResult, start: float, steps: int,
                  after_task) -> None:
        """A task has been trained: time it, evaluate every task (a row of the matrix)."""
        result.train_seconds.append(time.perf_counter() - start)
        result.steps.append(steps)
        if self.monitor is not None:
            self.monitor.task_ended(self, self.global_step)
            result.continual = self.monitor.finish()
        start = time.perf_counter()
        scores = self.evaluate_scores(stream.tasks)
        result.accuracy_matrix.append(scores.pop(self.objective.scores[0]))
        for name, row in scores.items():
            result.scores.setdefault(name, []).append(row)
        self._score_held_out(stream, result)
        result.eval_seconds.append(time.perf_counter() - start)
        if after_task is not None:
            after_task(self)

    def _fit_task_free(self, stream: Stream, result: FitResult, after_task) -> None:
        """One pass over every task's data in the task-free order, in batches; the matrix's
        row i is measured when the stream passes task i's end (``data.task_free``), and the
        strategy is told nothing. The order depends on the seed alone, so a resumed fit
        continues it where the last finished row left it."""
        tasks = stream.tasks
        plan = task_free_order([t.train_x.shape[0] for t in tasks], self.blur,
                               torch.Generator().manual_seed(self.seed))
        x, y, task_ids = (torch.cat(parts)[plan.order].to(self.device) for parts in (
            [t.train_x for t in tasks], [t.train_y for t in tasks], [t.task_ids for t in tasks]))
        n, size = x.shape[0], self.batch_size
        starts = list(range(0, n, size))
        if size > 1 and len(starts) > 1 and n - starts[-1] == 1:
            starts.pop()  # a one-sample tail joins the batch before it
        bounds = starts[1:] + [n]
        # the step after which each task's row is measured: the one holding its last sample
        row_steps = [bisect.bisect_left(bounds, end) + 1 if end else 0 for end in plan.task_ends]
        # the newest task each batch reaches: the output mask grows when it does
        newest = torch.cummax(task_ids.cpu(), 0).values[torch.tensor(bounds) - 1].tolist()
        self.current_task, self._visited = None, torch.zeros(n, dtype=torch.bool,
                                                              device=self.device)
        self.batches_per_epoch = len(bounds)
        done = len(result.accuracy_matrix)
        if self.optimizer is None or not done:  # one optimiser: no boundary to reset it at
            self._prepare_optimizer()
        for t in range(done, len(tasks)):
            first = row_steps[t - 1] if t else 0
            if self.monitor is not None and t:
                self.monitor.task_started(t, self.global_step)
            start = time.perf_counter()
            steps = row_steps[t] - first
            batches = [torch.arange(starts[s], bounds[s], device=self.device)
                       for s in range(first, row_steps[t])]

            def mark_seen(i, first=first):  # class-IL: the classes of every task met so far
                step = first + i
                if step == 0 or newest[step] > newest[step - 1]:
                    self.output_mask.mark_seen(torch.arange(newest[step] + 1, device=self.device))

            self._train_batches(x, y, task_ids, batches, steps,
                                f"stream {t + 1}/{len(tasks)}", before_batch=mark_seen)
            self.tasks_learned.append(t)
            self._row_done(stream, result, start, steps, after_task)

    def _continued_fit(self, stream: Stream) -> FitResult | None:
        history, self._loaded_fit = self._loaded_fit, None
        if history is None:
            return None
        done = len(history.accuracy_matrix)
        if len(history.untrained_accuracy) != len(stream.tasks) or \
                self.tasks_learned != list(range(done)):
            raise ConfigurationError(
                f"this learner was restored in the middle of a fit of a "
                f"{len(history.untrained_accuracy)}-task stream after {done} tasks; give fit the "
                "same stream to continue it, or call learn(task) to teach it new tasks.")
        return history

    def learn(self, task: Task) -> int:
        """Train on one task (a new one may arrive at any time); returns the steps taken. The
        model is left in the train/eval mode it had, also on an error."""
        if self.output_mask is None:
            raise ConfigurationError(
                "the learner knows no stream yet; call fit(stream) or bind(stream) first.")
        if self.task_free:
            raise ConfigurationError(
                "a task-free learner is not told where tasks start, so it cannot learn one "
                "task; give it the whole stream with fit(stream).")
        known = task.task_id < len(self.stream_tasks) and self.stream_tasks[task.task_id] is task
        if not known:  # a bound stream validated its own tasks when it was built
            task.validate(self.output_mask.num_outputs, self.objective.name)
        with modes_restored(self.model):
            return self._learn(task)

    def _learn(self, task: Task) -> int:
        self._know(task)
        self.current_task = task
        data = self.strategy.training_data(task) or TrainingData(
            task.train_x, task.train_y, task.task_ids)
        self.strategy.before_task(task)
        self._synchronise_model()  # a strategy may have grown the model (PNN's column)
        self._visited = None  # a new task: every sample is new again
        self.output_mask.mark_seen(torch.cat([data.task_ids, task.task_ids[:1]]))
        self._prepare_optimizer()
        steps = self.budget(len(data.x)) if self.strategy.trains_model else 0
        self.run_steps(data, steps, desc=f"task {task.task_id + 1}/{len(self.stream_tasks)}")
        self.strategy.after_task(task)
        distributed.check_identical(list(self.model.state_dict().values()),
                                    f"the model's weights after task {task.task_id}")
        self.tasks_learned.append(task.task_id)
        return steps

    def budget(self, num_samples: int) -> int:
        """Optimiser steps for a task of ``num_samples`` training samples."""
        if num_samples == 0:
            return 0
        if self.iterations is not None:
            return self.iterations
        return self.epochs * batches_per_epoch(num_samples, self.batch_size)

    def run_steps(self, data: TrainingData, steps: int, desc: str = "training") -> None:
        """``steps`` optimiser steps on shuffled mini-batches of ``data``, calling the hooks.

        An epoch's one-sample tail joins the batch before it (BatchNorm cannot train on one
        sample), so that batch holds ``batch_size + 1`` samples and an epoch one step fewer
        (``batches_per_epoch``; an epochs budget counts the same). Strategies may call this for
        extra phases (PackNet's fine-tuning after pruning); a sample counts as visited
        (``first_visit``) once per task, whatever the phase."""
        if steps == 0:
            return
        x, y, task_ids = (t.to(self.device) for t in (data.x, data.y, data.task_ids))
        n = x.shape[0]
        if self._visited is None or self._visited.shape[0] != n:
            self._visited = torch.zeros(n, dtype=torch.bool, device=self.device)
        self.batches_per_epoch = batches_per_epoch(n, self.batch_size)
        self._train_batches(x, y, task_ids, self._shuffled_batches(n, steps), steps, desc)

    def _shuffled_batches(self, n: int, steps: int):
        """``steps`` batches of indices into ``n`` samples, epoch after epoch in a fresh order
        drawn from ``self.generator`` (lazily: each order is drawn when its epoch begins)."""
        order, position = None, n
        for _ in range(steps):
            if position >= n:
                order, position = torch.randperm(n, generator=self.generator), 0
                order = order.to(self.device)
            end = position + self.batch_size
            if self.batch_size > 1 and n - end == 1:  # a one-sample tail joins this batch
                end = n
            yield order[position:end]
            position = end

    def _train_batches(self, x: torch.Tensor, y: torch.Tensor, task_ids: torch.Tensor,
                       batches, steps: int, desc: str, before_batch=None) -> None:
        """One optimiser step per batch of indices (``steps`` of them), with the progress bar,
        the divergence guard and the continual evaluation; ``before_batch(i)`` before the
        i-th."""
        bar = _progress_bar(steps, desc, self.progress)
        self.divergence.start(f"task {self.current_task.task_id}" if self.current_task else desc)
        self.model.train()
        monitor = self.monitor
        if monitor is not None:
            monitor.training(True)
        world = self.world
        for step, index in enumerate(batches):
            if before_batch is not None:
                before_batch(step)
            # this rank's share of the global batch; the whole batch counts as visited, so a
            # sample's first visit is the run's whichever rank trains on it (replay offers it)
            share = index[world.shard(index.numel())] if world.distributed else index
            self.step_in_task = step
            self.first_visit = ~self._visited[share]
            self._visited[index] = True
            self.train_step(Batch(x[share], y[share], task_ids[share]))
            self.global_step += 1
            if monitor is not None:
                monitor.after_step(self, self.global_step)
            if bar is not None and self.divergence.due(step):  # the loss read at the check
                bar.update(step + 1 - bar.n)
                bar.set_postfix_str(f"loss {self.divergence.last_loss:.4f}", refresh=False)
        if monitor is not None:
            monitor.training(False)
        self.first_visit = None
        if world.distributed:  # BatchNorm's statistics: each rank saw its share of the data
            distributed.all_reduce_mean_([b for b in self.model.buffers()
                                          if b.is_floating_point()])
        try:
            self.divergence.check_parameters(steps, self.trainable_parameters(), gradients=False)
        finally:
            if bar is not None:
                bar.update(steps - bar.n)
                if self.divergence.last_loss is not None:
                    bar.set_postfix_str(f"loss {self.divergence.last_loss:.4f}")
                bar.close()

    def train_step(self, batch: Batch) -> torch.Tensor:
        """One optimiser step on ``batch`` with every hook; returns the loss (a detached
        0-dim tensor: reading it is a host sync, which the loop makes only every
        ``divergence.CHECK_EVERY`` steps)."""
        strategy = self.strategy
        if strategy.uses("extend_batch"):
            batch = strategy.extend_batch(batch)
        step, guard = self.step_in_task, self.divergence
        if len(batch):
            loss = self._backward(batch)
        else:  # a rank whose share of a short last batch is empty: it adds nothing to the
            # averaged gradient (0 rows) but takes the step with the others
            self.optimizer.zero_grad(set_to_none=True)
            loss = torch.zeros(())
        if self.world.distributed:
            distributed.average_gradients(self.optimizer_parameters(), len(batch))
        if strategy.uses("before_step"):
            strategy.before_step()
        if guard.due(step):
            guard.check_parameters(step, self.trainable_parameters())
        self.optimizer.step()
        if strategy.uses("after_step"):
            strategy.after_step()
        return loss

    def _backward(self, batch: Batch) -> torch.Tensor:
        """The batch's loss with the strategy's penalty, its gradients in ``.grad``."""
        strategy = self.strategy
        if not self.model.training:  # a hook may have evaluated the model (cheap check)
            self.model.train()
        try:
            logits, data_loss = self._logits_and_loss(batch)
        except ValueError as error:
            if "more than 1 value per channel" not in str(error):
                raise
            raise ConfigurationError(
                f"the model has BatchNorm, which cannot train on a batch of {len(batch)} sample "
                f"(task {self.current_task.task_id if self.current_task else '?'}); use a batch "
                "size of at least 2 and tasks of at least 2 training samples.") from None
        loss = data_loss
        if strategy.uses("penalty"):
            term = strategy.penalty(batch, logits)
            if term is not None:
                loss = loss + term
        # The guard watches the cross-entropy apart from penalties; read at its next check.
        self.divergence.record_loss(self.step_in_task, loss, data_loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach()

    def _logits_and_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's logits and its loss: compiled when asked and possible, else eager."""
        if self.compiled is not None and not self.strategy.uses("forward"):
            result = self.compiled(batch.x, batch.y, batch.task_ids)
            if result is not None:
                return result
        logits = self.forward(batch.x, batch.task_ids)
        return logits, self.loss(logits, batch.y, batch.task_ids)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """The objective's loss of a batch (classification: cross-entropy over the output units
        the scenario lets these samples train)."""
        return self.objective.loss(self, logits, y, task_ids)

    def forward(self, x: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor:
        """Logits for ``x``: the strategy's own forward when it has one, else the model's."""
        if self.strategy.uses("forward"):
            logits = self.strategy.forward(x, task_ids)
            if logits is not None:
                return logits
        return self.model(x)

    # ------------------------------------------------------------------ optimiser
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def optimizer_parameters(self) -> list[nn.Parameter]:
        """What the optimiser steps (the trainable parameters when it was built)."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _synchronise_model(self) -> None:
        """Every rank's weights and buffers set to rank 0's (no-op in one process)."""
        if self.world.distributed:
            distributed.broadcast_(list(self.model.state_dict().values()))

    def rebuild_optimizer(self) -> None:
        params = self.trainable_parameters()
        if self.optimizer_name.startswith("adam"):
            self.optimizer = adam(params, self.lr, self.weight_decay, self.device,
                                  fused=self.optimizer_name == "adam-fused")
        else:
            self.optimizer = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                                             weight_decay=self.weight_decay)
        self._trainable = tuple(id(p) for p in params)

    def _prepare_optimizer(self) -> None:
        current = tuple(id(p) for p in self.trainable_parameters())
        if self.optimizer is None or self.reset_optimizer or current != self._trainable:
            self.rebuild_optimizer()

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Predicted labels. ``task_id`` is used only in task-incremental runs; in the others
        the task id never reaches the prediction."""
        if not self.scenario or not self.scenario.task_id_at_test:
            task_id = None
        elif task_id is None:
            raise ConfigurationError("task-incremental prediction needs the task id.")
        with evaluating(self.model):
            x = x.to(self.device)
            if self.strategy.uses("predict"):
                labels = self.strategy.predict(x, task_id)
                if labels is not None:
                    return labels
            task_ids = None if task_id is None else torch.full(
                (x.shape[0],), task_id, dtype=torch.long, device=self.device)
            logits = self.forward(x, task_ids)
            return apply_mask(logits, self.output_mask.for_test(task_id)).argmax(1)

    def evaluate(self, tasks) -> list[float]:
        """The objective's main test score on each task, in order (accuracy; a language
        model's exact match)."""
        return self.evaluate_scores(tasks)[self.objective.scores[0]]

    def _score_held_out(self, stream: Stream, result: FitResult) -> None:
        if stream.held_out is not None:
            for name, value in self.objective.score(self, stream.held_out).items():
                result.held_out.setdefault(name, []).append(value)

    def evaluate_scores(self, tasks) -> dict[str, list[float]]:
        """Every score of the objective on each task: ``{score name: [per task]}``."""
        per_task = [self.objective.score(self, task) for task in tasks]
        return {name: [scores[name] for scores in per_task] for name in self.objective.scores}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything needed to continue exactly where the learner is (checkpoints)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "strategy": self.strategy.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "output_mask": None if self.output_mask is None else self.output_mask.state_dict(),
            "tasks_learned": list(self.tasks_learned),
            "fit_history": None if self.fit_history is None else asdict(self.fit_history),
            # the divergence guard's reference weight norm, fixed for the learner's life
            "divergence_norm": self.divergence.first_norm,
            "objective": None if self.objective is None else self.objective.name,
            "global_step": self.global_step,
        }

    def load_state_dict(self, state: dict) -> None:
        # The strategy first: it may grow the model (PNN columns) before the weights load.
        self.strategy.load_state_dict(state["strategy"])
        self.model.load_state_dict(state["model"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state["output_mask"] is not None:
            if self.output_mask is None:
                raise ConfigurationError("bind the learner to its stream before loading state.")
            self.output_mask.load_state_dict(state["output_mask"])
        self.tasks_learned = list(state["tasks_learned"])
        self.global_step = state.get("global_step", 0)  # older files: counted afresh
        if self.objective is None:  # older files: classification, the only objective then
            self.objective = build_objective(state.get("objective") or "classification")
        self.divergence.first_norm = state.get("divergence_norm")  # older files: measured anew
        history = state.get("fit_history")
        self._loaded_fit = None if history is None else _fit_result(history)
        self.fit_history = self._loaded_fit
        self.rebuild_optimizer()
        if state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])

    def save(self, path, **meta) -> Path:
        """Write a checkpoint that ``Learner.load(path)`` continues from (atomic; see
        ``forgetless.checkpoint``). ``meta``: JSON-able notes stored with it."""
        from forgetless.checkpoint import save_learner

        return save_learner(self, path, **meta)

    @classmethod
    def load(cls, path, *, stream: Stream | None = None, model: nn.Module | None = None,
             strategy: Strategy | str | None = None, device: str | torch.device = "cpu",
             progress: bool | None = None) -> Learner:
        """A learner restored from ``learner.save(path)``, ready to ``learn`` new tasks.

        The model and strategy are rebuilt from the registries unless given (``model`` for a
        model not built by ``build_model``); ``stream`` binds the old tasks' data (strategies
        that train on past data need it). The file is read safely (no code runs from it)."""
        from forgetless.checkpoint import load_learner

        return load_learner(cls, path, stream=stream, model=model, strategy=strategy,
                            device=device, progress=progress)


def _fit_result(history: dict) -> FitResult:
    """A FitResult from its ``asdict`` form (lists copied; older files lack the scores)."""
    copied = {}
    for key, value in history.items():
        if key == "accuracy_matrix":
            copied[key] = [list(row) for row in value]
        elif key == "scores":
            copied[key] = {n: [list(row) for row in rows] for n, rows in value.items()}
        elif key == "continual":
            copied[key] = dict(value)
        elif key in ("untrained_scores", "held_out"):
            copied[key] = {n: list(row) for n, row in value.items()}
        else:
            copied[key] = list(value)
    return FitResult(**copied)


def model_logits(output) -> torch.Tensor:
    """The logits in a model's output: the tensor itself, or the ``logits`` of a Hugging
    Face-style output object or of a dict; anything else is refused, saying what is expected."""
    if isinstance(output, torch.Tensor):
        return output
    logits = (output.get("logits") if isinstance(output, Mapping)
              else getattr(output, "logits", None))
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Mapping):
        kind = f"a dict with keys {sorted(map(str, output))} and no 'logits'"
    elif isinstance(output, (tuple, list)):
        kind = f"a {type(output).__name__} of {len(output)} values"
    else:
        kind = f"a {type(output).__name__}"
    raise DataError(
        f"the model's forward returns {kind}; the learner needs the logits: one tensor of shape "
        "(batch, outputs), an output object with a .logits tensor, or a dict with a 'logits' "
        "tensor. Make forward return the logits (e.g. wrap the model in a module that returns "
        "output[0]).")


def _logits_only(module: nn.Module, args, output) -> torch.Tensor:
    """Forward hook: a Hugging Face-style output replaced by its logits."""
    return model_logits(output)


def batches_per_epoch(num_samples: int, batch_size: int) -> int:
    """Batches in one pass over ``num_samples``: a one-sample tail joins the batch before it."""
    merged_tail = num_samples > 1 and num_samples % batch_size == 1
    return math.ceil(num_samples / batch_size) - merged_tail


#: Devices whose parameters take PyTorch's fused Adam (one kernel per parameter instead of a
#: dozen element-wise ops; benchmarks/loop_speed.md measures the gain). It rounds some updates
#: differently in the last bits (its own order of operations), and training amplifies that:
#: the online ER run of ``tests/test_streams.py`` loses its measured
#: stability-gap dip under it. So it is opt-in (``optimizer="adam-fused"``), never the default:
#: the default reproduces every recorded result bit for bit.
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def adam(params: list[nn.Parameter], lr: float, weight_decay: float, device: torch.device,
         fused: bool = False) -> torch.optim.Adam:
    """The Learner's Adam: PyTorch's default, or (``fused``) the fused kernel where the device
    has it (elsewhere the default)."""
    fused = fused and bool(params) and device.type in FUSED_ADAM_DEVICES and all(
        p.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16) for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def _resolve_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError("device 'cuda' was asked for but no CUDA GPU is available; "
                                 "use --device cpu.")
    return device


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.2)
