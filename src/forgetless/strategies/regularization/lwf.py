"""Learning without Forgetting (Li & Hoiem 2017, "Learning without Forgetting", TPAMI).

After each task a frozen copy of the model is kept. While learning the next task, the current
model is asked to give, on the current inputs, the same answers as that copy on the old tasks'
outputs: ``alpha * T^2 * KL(softmax(old / T) || softmax(new / T))``, with temperature ``T``
(Hinton et al. 2015's scaling by ``T^2`` keeps the gradient's size independent of ``T``). Which
outputs are "the old tasks'" follows the scenario: every old task's own units, one softmax per
task (task-incremental, Li & Hoiem's multi-head setting); the units of all classes seen so far
(class-incremental); the shared units (domain-incremental). No data is stored: only the copy.
"""

from __future__ import annotations

import torch

from forgetless.data.stream import Scenario
from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.base import (
    ALL_SCENARIOS,
    ANY_OBJECTIVE,
    Footprint,
    Strategy,
    frozen_copy,
    tensor_bytes,
)
from forgetless.strategies.regularization.quadratic import check_strength


@register("lwf")
class LwF(Strategy):
    """Learning without Forgetting: distil the previous model's answers on the new inputs."""

    why_not_task_free = ("it takes a frozen copy of the model as its teacher when each task "
                         "ends, which a task-free stream does not announce; use derpp, which "
                         "distils the logits stored with each replayed sample instead.")

    family = "regularization"
    scenarios = ALL_SCENARIOS
    objectives = ANY_OBJECTIVE
    needs_task_id = False
    stores_raw_data = False

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0) -> None:
        """alpha: weight of the distillation term; 0 is naive fine-tuning.
        temperature: softens both distributions (Li & Hoiem use 2)."""
        self.alpha = check_strength("alpha", alpha)
        self.temperature = check_strength("temperature", temperature)
        if self.temperature == 0:
            raise ConfigurationError("temperature must be positive (Li & Hoiem use 2).")
        self.teacher: torch.nn.Module | None = None
        self.groups: torch.Tensor | None = None  # (K, outputs): the units of each softmax

    def after_task(self, task) -> None:
        self.teacher = frozen_copy(self.learner.model)
        mask = self.learner.output_mask
        if self.learner.objective.name != "classification":
            self.groups = None  # the objective distils over its own outputs (every token)
        elif mask.scenario is Scenario.TASK:
            self.groups = mask.task_units[self.learner.tasks_learned + [task.task_id]].clone()
        elif mask.scenario is Scenario.CLASS:
            self.groups = mask.seen_units[None].clone()
        else:
            self.groups = torch.ones(1, mask.num_outputs, dtype=torch.bool)

    def penalty(self, batch, logits):
        if self.teacher is None:
            return None
        with torch.no_grad():
            old = self.teacher(batch.x)
        groups = None if self.groups is None else self.groups.to(logits.device)
        return self.alpha * self.learner.objective.distillation(
            logits, old, batch.x, groups, self.temperature)

    def state_dict(self) -> dict:
        if self.teacher is None:
            return {"teacher": None, "groups": None}
        return {"teacher": {k: v.clone() for k, v in self.teacher.state_dict().items()},
                "groups": None if self.groups is None else self.groups.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["teacher"] is None:
            self.teacher = None
            self.groups = None
            return
        self.teacher = frozen_copy(self.learner.model)
        self.teacher.load_state_dict(state["teacher"])
        self.groups = None if state["groups"] is None else state["groups"].clone()

    def footprint(self) -> Footprint:
        return Footprint(tensor_bytes(self.teacher, self.groups), stores_raw_data=False)
