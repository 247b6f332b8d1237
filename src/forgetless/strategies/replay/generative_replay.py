"""Generative replay (Shin, Lee, Kim & Kim 2017, "Continual Learning with Deep Generative
Replay"; van de Ven & Tolias 2018/2019, replay through distillation).

No raw data is kept. A generator (``vae``, the default, or ``gan``; see ``generators.py``)
learns the inputs of every task so far: after each task it trains on that task's data mixed
with samples it generates of the earlier tasks from a frozen copy of itself (mixed in
proportion to the number of tasks, so it does not forget them either). While the classifier
learns task t, each step adds a loss on generated samples of tasks 0..t-1 labelled by the
classifier as it was after task t-1:

- ``distill="soft"`` (default): its soft targets at ``temperature``, over every unit the
  current model may use, the new classes' units padded with zero probability (distilling only
  the old units leaves the new ones free to swallow the old classes);
- ``distill="hard"``: its predicted labels, with cross-entropy.

The replay loss is weighted by the number of earlier tasks (van de Ven & Tolias's 1/t : 1-1/t
weighting, scaled so the current task keeps weight 1). The generator usually needs more
steps than the classifier: ``generator_budget`` is its steps per task as a multiple of the
classifier's steps on that task, and ``generator_min_steps`` the fewest it takes whatever the
classifier's budget (a short budget of 3 epochs on 800 samples is 21 classifier steps, too few
for any generator); ``generator_seconds`` records the time it costs. Training the generator is
most of the method's time (``generators.py`` says why the default VAE is small), and
``replay_every=k`` draws and labels a replay batch once per k steps (saving the labeller's
forward and the decoder's on the others; benchmarks/replay.md, "Generative replay at the cost
of replay", has each variant's time and ACC).

The memory cost is the generator's parameters plus the previous classifier (the labeller);
``footprint()`` reports those bytes and ``stores_raw_data=False``.

In a process group every draw (replayed pairs, latent codes) is made for the whole global
batch from the shared generator, each rank decodes and labels only its share of the rows, and
the replay loss is each rank's share of the mean over the whole replay batch
(``ReplayShare``); the generator's own steps are data-parallel too (``generators.py``).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from forgetless import distributed
from forgetless.errors import ConfigurationError, DataError
from forgetless.models.heads import apply_mask
from forgetless.strategies import register
from forgetless.strategies.base import Batch, Footprint, Strategy, frozen_copy, tensor_bytes
from forgetless.strategies.replay.buffer import check_batch_size
from forgetless.strategies.replay.common import ReplayShare, soft_target_loss, teacher_mask
from forgetless.strategies.replay.generators import GENERATORS, build_generator


class GenerativeMemory:
    """``sample(n)`` like a replay buffer: generated inputs of earlier (task, unit) pairs,
    labelled by the previous classifier (``extras["teacher_logits"]`` holds its logits)."""

    def __init__(self, generator, condition, pairs: torch.Tensor, labeller=None,
                 labeller_mask=None) -> None:
        self.generator, self.condition, self.pairs = generator, condition, pairs
        self.labeller, self.labeller_mask = labeller, labeller_mask

    def __len__(self) -> int:
        return 0 if self.pairs is None else len(self.pairs)

    def sample(self, n: int, rng: torch.Generator | None = None,
               rows: slice | None = None) -> Batch:
        """``n`` samples drawn (every draw made for all of them), of which ``rows`` are
        generated and returned; None: this rank's share of the ``n`` (all in one process)."""
        pick = self.pairs[torch.randint(len(self.pairs), (n,), generator=rng)]
        rows = distributed.world().shard(n) if rows is None else rows
        x = self.generator.generate(self.condition(pick[:, 1], pick[:, 0]), rng, rows)
        task_ids, units = pick[rows, 0], pick[rows, 1]
        if self.labeller is None:
            return Batch(x, units, task_ids)
        with torch.no_grad():
            logits = self.labeller(x)
        labels = apply_mask(logits, self.labeller_mask(task_ids)).argmax(1)
        return Batch(x, labels, task_ids, {"teacher_logits": logits})


def generator_batch_rows(size: int, n_old: int) -> tuple[slice, slice, slice]:
    """This rank's contiguous share ``rows`` of a generator batch of ``size`` rows, the task's
    ``size - n_old`` samples first and then ``n_old`` replayed ones: the share's rows of the
    task's part and of the replayed part (all of each in one process)."""
    rows, n_new = distributed.world().shard(size), size - n_old
    return (slice(min(rows.start, n_new), min(rows.stop, n_new)),
            slice(max(rows.start, n_new) - n_new, max(rows.stop, n_new) - n_new), rows)


@register("generative-replay")
class GenerativeReplay(Strategy):
    """Replay of generated samples labelled by the previous model (Shin et al. 2017)."""

    why_not_task_free = ("it trains its generator on a task's data and freezes the classifier as "
                         "the labeller of generated samples when the task ends, which a "
                         "task-free stream does not announce; use er(fill=stream) or derpp, "
                         "which replay stored samples filled from the stream.")

    serves_pretrained = False


    family = "replay"
    stores_raw_data = False

    def __init__(self, generator: str = "vae", generator_budget: float | None = None,
                 distill: str = "soft", temperature: float = 2.0,
                 replay_batch_size: int | None = None, replay_weight: float | None = None,
                 latent: int | None = None,
                 generator_hidden: tuple[int, ...] | list[int] | None = None,
                 generator_lr: float | None = None, replay_every: int = 1,
                 generator_batch_size: int | None = None,
                 generator_min_steps: int | None = None):
        """generator: ``vae`` (default) or ``gan``.
        generator_budget: generator steps per task, as a multiple of the classifier's steps;
            None: the generator's ``default_budget`` (VAE 2, GAN 5).
        distill: ``soft`` (previous model's soft targets) or ``hard`` (its predicted labels).
        temperature: distillation temperature (van de Ven & Tolias use 2).
        replay_batch_size: generated samples per step; None uses the learner's batch size.
        replay_weight: weight of the replay loss; None uses the number of earlier tasks.
        latent: size of the generator's latent code; None: VAE 32, GAN 100.
        generator_hidden: hidden layer widths of the generator's networks; None: VAE (100,),
            GAN (400, 400).
        generator_lr: the generator's Adam learning rate; None: VAE 3e-3, GAN 2e-4.
        replay_every: generate (and label) a replay batch once per this many classifier steps
            and rehearse it on each of them; 1 draws a new batch every step.
        generator_batch_size: samples per generator step; None: twice the learner's batch.
        generator_min_steps: the fewest generator steps per task, whatever the budget gives;
            None: the generator's ``default_min_steps`` (VAE 100, GAN 0)."""
        if generator not in GENERATORS:
            raise ConfigurationError(f"unknown generator '{generator}'; choose "
                                     f"{' or '.join(GENERATORS)} (e.g. --set generator=gan).")
        if distill not in ("soft", "hard"):
            raise ConfigurationError(f"distill must be 'soft' or 'hard', got {distill!r}.")
        if generator_budget is None:
            generator_budget = GENERATORS[generator].default_budget
        if generator_min_steps is None:
            generator_min_steps = GENERATORS[generator].default_min_steps
        if not isinstance(generator_min_steps, int) or generator_min_steps < 0:
            raise ConfigurationError(f"generator_min_steps must be a whole number of steps >= 0, "
                                     f"got {generator_min_steps!r} (e.g. --set "
                                     f"generator_min_steps=100).")
        self.generator_min_steps = generator_min_steps
        for name, value in (("generator_budget", generator_budget),
                            ("temperature", temperature), ("latent", latent)):
            if value is not None and not value > 0:
                raise ConfigurationError(f"{name} must be positive, got {value!r}.")
        check_batch_size(replay_batch_size, "replay_batch_size")
        check_batch_size(generator_batch_size, "generator_batch_size")
        if not isinstance(replay_every, int) or replay_every < 1:
            raise ConfigurationError(f"replay_every must be a whole number of steps >= 1, got "
                                     f"{replay_every!r} (e.g. --set replay_every=4).")
        self.replay_every, self.generator_batch_size = replay_every, generator_batch_size
        self.kind, self.generator_budget = generator, float(generator_budget)
        self.distill, self.temperature = distill, float(temperature)
        self.replay_batch_size, self.replay_weight = replay_batch_size, replay_weight
        self.options = {} if latent is None else {"latent": int(latent)}
        if generator_hidden is not None:
            if not generator_hidden or any(int(h) < 1 for h in generator_hidden):
                raise ConfigurationError(
                    f"generator_hidden must list positive layer widths, got "
                    f"{generator_hidden!r} (e.g. --set generator_hidden=[400,400]).")
            self.options["hidden"] = tuple(int(h) for h in generator_hidden)
        if generator_lr is not None:
            self.options["lr"] = float(generator_lr)
        self.generator = None
        self.sizes: tuple[int, int] | None = None  # (units, tasks) of the condition
        self.labeller = None
        self.seen_before: torch.Tensor | None = None
        self._replay: GenerativeMemory | None = None
        self._replay_batch: Batch | None = None  # the batch rehearsed until it is redrawn
        self.steps_in_task = 0
        self.generator_seconds: list[float] = []

    # ------------------------------------------------------------------ conditions
    def condition(self, units: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        n_units, n_tasks = self.sizes
        return torch.cat([F.one_hot(units, n_units), F.one_hot(task_ids, n_tasks)], 1).float()

    def old_pairs(self, before: int) -> torch.Tensor:
        """(task, unit) of every unit of tasks 0..before-1."""
        return self.learner.output_mask.task_units[:before].nonzero()

    def memory(self, tasks: int, labelled: bool) -> GenerativeMemory:
        mask = (lambda t: teacher_mask(self.learner, self.seen_before, t)) if labelled else None
        return GenerativeMemory(self.generator, self.condition, self.old_pairs(tasks),
                                self.labeller if labelled else None, mask)

    def _build(self, task) -> None:
        x = task.train_x
        if x.min() < 0 or x.max() > 1:
            raise DataError("generative replay models inputs in [0, 1] (pixel intensities); "
                            "scale the inputs into that range first.")
        self.sizes = (self.learner.output_mask.num_outputs, len(self.learner.stream_tasks))
        self.generator = build_generator(self.kind, tuple(x.shape[1:]), sum(self.sizes),
                                         **self.options).to(self.learner.device)
        distributed.broadcast_(list(self.generator.state_dict().values()))  # rank 0's weights

    # ------------------------------------------------------------------ hooks
    def before_task(self, task) -> None:
        if self.generator is None:
            self._build(task)
        units, tasks = self.sizes
        if task.task_id >= tasks:  # a task beyond the stream the generator was built for
            self.generator.grow_condition(task.task_id + 1 - tasks)
            self.sizes = (units, task.task_id + 1)
        self.steps_in_task = 0
        self._replay = self._replay_batch = None  # what the classifier rehearses this task
        if self.learner.tasks_learned:
            self.labeller = frozen_copy(self.learner.model)
            self.seen_before = self.learner.output_mask.seen_units.clone()
            self._replay = self.memory(len(self.learner.tasks_learned), labelled=True)

    def penalty(self, batch, logits):
        learner = self.learner
        if self._replay is None:
            return None
        done = len(learner.tasks_learned)
        drawn = self.replay_batch_size or learner.batch_size
        if self._replay_batch is None or self.steps_in_task % self.replay_every == 0:
            self._replay_batch = self._replay.sample(drawn, learner.generator)
        replay, share = self._replay_batch, ReplayShare(batch)
        if not len(replay):  # fewer replayed rows than ranks: none is this rank's
            return None
        student = learner.forward(replay.x, replay.task_ids)
        if self.distill == "soft":
            loss = soft_target_loss(student, replay.extras["teacher_logits"],
                                    learner.output_mask.for_training(replay.task_ids),
                                    teacher_mask(learner, self.seen_before, replay.task_ids),
                                    self.temperature)
        else:
            loss = learner.loss(student, replay.y, replay.task_ids)
        loss = share.of(loss, len(replay), drawn)
        return (self.replay_weight if self.replay_weight is not None else done) * loss

    def after_step(self) -> None:
        self.steps_in_task += 1

    def generator_steps(self, classifier_steps: int) -> int:
        """The generator's steps after a task the classifier took ``classifier_steps`` on:
        ``generator_budget`` times those, and at least ``generator_min_steps``."""
        return max(math.ceil(self.generator_budget * max(1, classifier_steps)),
                   self.generator_min_steps)

    def after_task(self, task) -> None:
        """Train the generator on this task's data and on its own replay of earlier tasks."""
        start = time.perf_counter()
        learner, rng = self.learner, self.learner.generator
        earlier = len(learner.tasks_learned)  # this task is not counted yet
        old = self.memory(earlier, labelled=False)
        self.generator.reset_optimizer()  # before the copy: the frozen one needs no Adam state
        if earlier:
            old.generator = frozen_copy(self.generator)
        x, y = task.train_x.to(learner.device), task.train_y.to(learner.device)
        size = self.generator_batch_size or 2 * learner.batch_size
        n_old = round(size * earlier / (earlier + 1))
        new_rows, old_rows, rows = generator_batch_rows(size, n_old)
        self.generator.train()
        for _ in range(self.generator_steps(self.steps_in_task)):
            index = torch.randint(x.shape[0], (size - n_old,), generator=rng).to(x.device)
            index = index[new_rows]  # the task's part of this rank's rows
            ids = torch.full((len(index),), task.task_id, dtype=torch.long, device=x.device)
            batch = Batch(x[index], y[index], ids)
            if n_old:
                batch = batch.concat(old.sample(n_old, rng, old_rows))
            self.generator.train_step(batch.x, self.condition(batch.y, batch.task_ids), rng,
                                      rows, size)
        self.generator.eval()
        distributed.check_identical(list(self.generator.state_dict().values()),
                                    f"the generator's weights after task {task.task_id}")
        self.generator_seconds.append(time.perf_counter() - start)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"sizes": self.sizes, "input_shape": None if self.generator is None
                else self.generator.input_shape,
                "generator": None if self.generator is None else self.generator.state_dict(),
                "labeller": None if self.labeller is None else self.labeller.state_dict(),
                "seen_before": self.seen_before, "steps_in_task": self.steps_in_task,
                "generator_seconds": list(self.generator_seconds)}

    def load_state_dict(self, state: dict) -> None:
        self.generator = self.labeller = None
        self.sizes = None if state["sizes"] is None else tuple(state["sizes"])
        if state["generator"] is not None:
            self.generator = build_generator(self.kind, state["input_shape"], sum(self.sizes),
                                             **self.options).to(self.learner.device)
            self.generator.load_state_dict(state["generator"])
            self.generator.eval()
        if state["labeller"] is not None:
            self.labeller = frozen_copy(self.learner.model)
            self.labeller.load_state_dict(state["labeller"])
        self.seen_before = state["seen_before"]
        self.steps_in_task = int(state["steps_in_task"])
        self.generator_seconds = list(state["generator_seconds"])

    def footprint(self) -> Footprint:
        """The generator's parameters and the previous classifier: no raw data."""
        return Footprint(tensor_bytes(self.generator, self.labeller), stores_raw_data=False)
