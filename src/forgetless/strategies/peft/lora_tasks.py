"""Per-task LoRA adapters: the dynamic-architecture answer for transformers (the idea of PNN's
columns, Rusu et al. 2016, at the cost of one low-rank adapter per task instead of a copy of
the network).

Each task gets a fresh adapter on the frozen base model; when the next task starts the earlier
adapters are frozen, and the head rows of finished tasks are frozen too (``GradientGate``, which
also undoes what Adam's moments or weight decay would move). At test time the task id picks the
adapter, so old tasks' predictions stay bit-identical: no forgetting, by construction, and no
use without the task id (task-incremental only). A batch that mixes tasks (replay) is split by
task id, each part answered with its task's adapter; a task not trained yet (evaluated for
forward transfer) is answered by the newest adapter (``task0``, untrained, before any
task: the model's own function, since a fresh adapter's ``B`` is zero).
"""

from __future__ import annotations

import torch

from forgetless.strategies import register
from forgetless.strategies.architecture.common import (
    GradientGate,
    finished_units,
    head_row_scales,
)
from forgetless.strategies.peft.adapters import (
    PerTaskLora,
    adapters_footprint,
    apply_adapters,
    classification_head,
)


@register("lora-tasks")
class TaskLoRA(PerTaskLora):
    """A LoRA adapter per task on a frozen model, chosen by task id at test time."""

    scenarios = frozenset({"task"})
    needs_task_id = True

    def __init__(self, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                 target_modules: list[str] | str | None = None, train_head: bool = True) -> None:
        """r, alpha, dropout, target_modules: each task's adapter, as for ``lora``.
        train_head: train the head rows of the current task's classes (finished tasks' rows
        stay frozen)."""
        self.configure(r, alpha, dropout, target_modules, train_head)
        self._gate: GradientGate | None = None

    def before_task(self, task) -> None:
        super().before_task(task)
        head = classification_head(self.learner.model)
        self._gate = None
        if self.train_head and head is not None:
            scales = head_row_scales(head, finished_units(self.learner, task.task_id))
            self._gate = GradientGate([head.weight, head.bias], [scales["weight"],
                                                                 scales["bias"]])

    def before_step(self) -> None:
        if self._gate is not None:
            self._gate.scale_gradients()

    def after_step(self) -> None:
        if self._gate is not None:
            self._gate.restore()

    def forward(self, x, task_ids):
        if task_ids is None:
            return None  # not in task-incremental runs (refused): the newest adapter applies
        model = self.learner.model
        choice = task_ids.clamp(max=len(self.adapters) - 1)
        groups = choice.unique().tolist()
        try:
            if len(groups) == 1:
                apply_adapters(model, [self.adapters[groups[0]]])
                return model(x)
            order, outputs = [], []
            for group in groups:
                index = (choice == group).nonzero().squeeze(1)
                apply_adapters(model, [self.adapters[group]])
                order.append(index)
                outputs.append(model(x[index]))
            return torch.cat(outputs)[torch.cat(order).argsort()]
        finally:
            apply_adapters(model, self.applied_in_training())

    def footprint(self):
        return adapters_footprint(self.learner.model, self.adapters,
                                  self._gate.tensors() if self._gate else [])
