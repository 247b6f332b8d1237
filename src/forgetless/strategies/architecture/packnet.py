"""PackNet (Mallya & Lazebnik 2018, "PackNet: Adding Multiple Tasks to a Single Network by
Iterative Pruning", CVPR).

One network holds every task. Each weight of the Linear and convolutional layers (the output
head excepted) has an *owner*: the task it belongs to, or nobody (free). Task t trains the free
weights; afterwards PackNet prunes the smallest-magnitude fraction of them (set to zero, free
again), fine-tunes the survivors briefly with the pruned ones held at zero, and freezes them.
At test time task t uses only the weights of tasks <= t, so later tasks cannot change its
answers: backward transfer is exactly zero. Biases and normalisation layers (affine parameters
and running statistics) are not pruned; they are learned on the first task and then fixed, since
sharing them would let later tasks change earlier answers. Each task's rows of the shared output
head are its own and are frozen with it.

Phases are explicit: ``idle`` -> ``training`` (``before_task``) -> ``fine-tuning`` (after the
prune in ``after_task``) -> ``idle``; a hook in the wrong phase is an error. When a layer has no
free weights left for a new task, ``before_task`` raises instead of training nothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from forgetless import distributed
from forgetless.errors import ConfigurationError
from forgetless.strategies import TrainingData, register
from forgetless.strategies.architecture.common import (
    GradientGate,
    expect_next_task,
    finished_units,
    head_row_scales,
)
from forgetless.strategies.base import Footprint, Strategy, tensor_bytes

FREE = torch.iinfo(torch.int16).max  # owner of a pruned weight
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
IDLE, TRAINING, FINETUNING = "idle", "training", "fine-tuning"


@register("packnet")
class PackNet(Strategy):
    """PackNet: after each task prune its weights by magnitude, fine-tune, freeze; task t uses
    only the weights of tasks <= t."""

    why_not_task_free = ("it gives a task the free weights when the task starts and prunes, "
                         "fine-tunes and freezes them when it ends, which a task-free stream "
                         "does not announce; use er(fill=stream), er-ace or derpp, whose "
                         "memories fill from the stream.")

    serves_pretrained = False


    family = "architecture"
    scenarios = frozenset({"task"})
    needs_task_id = True
    stores_raw_data = False

    def __init__(self, prune_ratio: float | None = None, finetune_fraction: float = 0.25) -> None:
        """prune_ratio: fraction of a task's weights freed again after it (the paper uses 0.5
        or 0.75); None shares every layer equally among the stream's tasks (after task t of T
        keep 1/(T - t) of the free weights). finetune_fraction: fine-tuning steps after the
        prune, as a fraction of the task's training steps (0 skips fine-tuning)."""
        if prune_ratio is not None and not 0.0 <= prune_ratio < 1.0:
            raise ConfigurationError(
                f"packnet: prune_ratio must be in [0, 1) (the fraction of a task's weights "
                f"freed for later tasks) or unset for equal shares, got {prune_ratio!r}."
            )
        if not finetune_fraction >= 0.0:
            raise ConfigurationError(
                f"packnet: finetune_fraction must be >= 0 (e.g. 0.25), got {finetune_fraction!r}.")
        self.prune_ratio, self.finetune_fraction = prune_ratio, finetune_fraction
        self.phase, self.tasks_started = IDLE, 0
        self.owners: dict[str, torch.Tensor] = {}
        self._gate: GradientGate | None = None

    def setup(self, learner) -> None:
        super().setup(learner)
        model = learner.model
        layers = [m for m in model.modules() if isinstance(m, PRUNABLE)]
        head = getattr(model, "head", layers[-1] if layers else None)
        self.head = head
        self.owners = {f"{n}.weight": torch.zeros_like(m.weight, dtype=torch.int16)
                       for n, m in model.named_modules()
                       if isinstance(m, PRUNABLE) and m is not head}
        if not self.owners:
            raise ConfigurationError(
                "packnet found no Linear or convolutional layer to prune besides the output "
                "head; use --model mlp or --model convnet.")
        self.norms = [m for m in model.modules() if isinstance(m, NORMS)]

    def _move(self, expected: str, new: str, hook: str) -> None:
        if self.phase != expected:
            raise ConfigurationError(
                f"packnet: {hook} called in phase '{self.phase}', expected '{expected}'; the "
                "Learner calls before_task, trains, then after_task, once per task.")
        self.phase = new

    # ------------------------------------------------------------------ phases
    def before_task(self, task) -> None:
        expect_next_task("packnet", task, self.tasks_started)
        t = task.task_id
        full = [n for n, owner in self.owners.items() if t > 0 and not (owner == FREE).any()]
        if full:
            raise ConfigurationError(
                f"packnet has no free weights left in {', '.join(full)} for task {t}: tasks "
                f"0..{t - 1} hold all of them. Set a prune_ratio (e.g. --set prune_ratio=0.5) so "
                "each task frees more, leave it unset so the stream's tasks share each layer "
                "equally, or use a wider model.")
        self._move(IDLE, TRAINING, "before_task")
        for owner in self.owners.values():
            owner.masked_fill_(owner == FREE, t)
        self.tasks_started, self._gate = t + 1, None

    def after_task(self, task) -> None:
        self._move(TRAINING, FINETUNING, "after_task")
        pruned = self._prune(task.task_id)
        steps = math.ceil(self.finetune_fraction * self.learner.budget(len(task.train_x)))
        if pruned and steps:
            self._gate = None  # the pruned weights are frozen at zero from now on
            data = TrainingData(task.train_x, task.train_y, task.task_ids)
            self.learner.run_steps(data, steps, desc=f"fine-tune task {task.task_id + 1}")
        self._move(FINETUNING, IDLE, "after_task")
        distributed.check_identical(list(self.owners.values()),
                                    f"packnet's masks after task {task.task_id}")

    @torch.no_grad()
    def _prune(self, t: int) -> int:
        """Free the smallest-magnitude weights of task t; returns how many were freed."""
        ratio = self.prune_ratio
        if ratio is None:
            ratio = 1.0 - 1.0 / max(1, len(self.learner.stream_tasks) - t)
        params = dict(self.learner.model.named_parameters())
        freed = 0
        for name, owner in self.owners.items():
            weight, mine = params[name], owner == t
            keep = max(1, round(int(mine.sum()) * (1.0 - ratio)))
            scores = torch.where(mine, weight.abs(), torch.tensor(-1.0, device=weight.device))
            kept = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
            kept[scores.flatten().topk(keep).indices] = True
            prune = mine & ~kept.view_as(mine)
            owner[prune] = FREE
            weight[prune] = 0.0
            freed += int(prune.sum())
        return freed

    # ------------------------------------------------------------------ steps
    def _make_gate(self) -> GradientGate:
        """Trainable: the current task's weights, its head rows, and (first task only) biases and
        normalisation parameters. Everything else is frozen."""
        t = self.tasks_started - 1
        frozen_units = finished_units(self.learner, t)
        head_scales = head_row_scales(self.head, frozen_units)
        head_params = {id(p): k for k, p in self.head.named_parameters()}
        params, scales = [], []
        for name, p in self.learner.model.named_parameters():
            if name in self.owners:
                scales.append((self.owners[name] == t).to(p.dtype))
            elif id(p) in head_params:
                scales.append(head_scales[head_params[id(p)]])
            else:
                scales.append(torch.full_like(p, float(t == 0)))
            params.append(p)
        return GradientGate(params, scales)

    def before_step(self) -> None:
        if self._gate is None:
            self._gate = self._make_gate()
        self._gate.scale_gradients()

    def after_step(self) -> None:
        self._gate.restore()

    # ------------------------------------------------------------------ test time
    def forward(self, x, task_ids):
        model = self.learner.model
        if model.training and self.tasks_started > 1:
            for norm in self.norms:  # running statistics stay those of the first task
                norm.eval()
        newest = self.tasks_started - 1
        if task_ids is None or int(task_ids.min()) >= newest:
            return None  # every weight is visible: the plain model
        logits = None
        for u in task_ids.unique().tolist():
            rows = task_ids == u
            visible = {n: p * (self.owners[n] <= u) if n in self.owners else p
                       for n, p in model.named_parameters()}
            out = functional_call(model, visible, (x[rows],))
            if logits is None:
                logits = out.new_empty(x.shape[0], out.shape[1])
            logits[rows] = out
        return logits

    # ------------------------------------------------------------------ state
    def released_weights(self) -> dict[str, torch.Tensor]:
        """The pruned weights: zero, free for the next task (an anchor must not hold them)."""
        return {n: owner == FREE for n, owner in self.owners.items()}

    def masks(self) -> dict[str, torch.Tensor]:
        """Per prunable layer: a boolean mask per task started, shape (tasks, *weight)."""
        return {n: owner[None] == torch.arange(self.tasks_started, device=owner.device).view(
                    -1, *[1] * owner.ndim) for n, owner in self.owners.items()}

    def state_dict(self) -> dict:
        return {"phase": self.phase, "tasks_started": self.tasks_started,
                "owners": {n: o.clone() for n, o in self.owners.items()}}

    def load_state_dict(self, state: dict) -> None:
        if sorted(state["owners"]) != sorted(self.owners):
            raise ConfigurationError(
                "packnet: the checkpoint's layers differ from this model's; load it into the "
                "same architecture.")
        self.owners = {n: o.clone().to(self.owners[n].device) for n, o in state["owners"].items()}
        self.phase, self.tasks_started = state["phase"], state["tasks_started"]
        self._gate = None

    def footprint(self) -> Footprint:
        held = tensor_bytes(self.owners) + (tensor_bytes(self._gate.tensors()) if self._gate else 0)
        return Footprint(held, stores_raw_data=False)

