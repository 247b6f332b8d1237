"""Output masking for the three scenarios, in one place (after van de Ven & Tolias 2019).

- task-incremental: each sample's logits are restricted to its own task's units, in training and
  at test (the task id is given);
- class-incremental: training restricts logits to the units of the tasks seen so far (so units
  of future classes are not pushed down before they are learned), and so does the test: a
  prediction is one of the classes learned so far (van de Ven & Tolias's "active classes"; what
  a deployed model can answer). Units never trained are never pushed down, so on the whole head
  they could win the argmax. "So far" is the classes of every task whose data has been trained
  (after task i: tasks 0..i; for ``joint``, which trains on all tasks at once, every class).
  Before any training no class is active and the untrained model answers over the whole head.
  A strategy may train over the whole head instead (``Strategy.trains_whole_head``: A-GEM, whose
  projection fails under the seen-classes mask; the evidence is in docs/replay.md);
- domain-incremental: no mask.
"""

from __future__ import annotations

import torch

from forgetless.data.stream import Scenario


class OutputMask:
    """Builds the boolean masks of allowed output units for a stream's scenario."""

    def __init__(self, scenario: Scenario, num_outputs: int, device="cpu",
                 whole_head_training: bool = False) -> None:
        """``device``: the learner's, so that per-sample masks index with the batch's task ids
        where they live (the state travels on the CPU). ``whole_head_training``: class-
        incremental training over every unit, not only the classes seen so far."""
        self.scenario = Scenario.parse(scenario)
        self.num_outputs = num_outputs
        self.whole_head_training = whole_head_training
        self.device = torch.device(device)
        self.task_units = torch.zeros(0, num_outputs, dtype=torch.bool,
                                      device=self.device)  # [tasks, outputs]
        self.seen_units = torch.zeros(num_outputs, dtype=torch.bool, device=self.device)

    def add_task(self, task_id: int, classes) -> None:
        """Record the units a task owns (its ``classes``)."""
        if task_id >= self.task_units.shape[0]:
            grown = torch.zeros(task_id + 1, self.num_outputs, dtype=torch.bool,
                                device=self.device)
            grown[: self.task_units.shape[0]] = self.task_units
            self.task_units = grown
        self.task_units[task_id, list(classes)] = True

    def mark_seen(self, task_ids: torch.Tensor) -> None:
        """Units of these tasks become allowed in class-incremental training."""
        self.seen_units |= self.task_units[task_ids.unique()].any(0)

    def for_training(self, task_ids: torch.Tensor) -> torch.Tensor | None:
        """The mask for a training batch: per sample (task-IL), shared (class-IL) or None."""
        if self.scenario is Scenario.TASK:
            return self.task_units[task_ids]
        if self.scenario is Scenario.CLASS and not self.whole_head_training:
            return self.seen_units
        return None

    def for_test(self, task_id: int | None) -> torch.Tensor | None:
        """The mask at test time; only task-incremental runs are given ``task_id``. Class-
        incremental runs answer over the classes trained so far (the whole head before any)."""
        if self.scenario is Scenario.TASK:
            return self.task_units[task_id]
        if self.scenario is Scenario.CLASS and bool(self.seen_units.any()):
            return self.seen_units
        return None

    def state_dict(self) -> dict:
        return {"task_units": self.task_units.cpu().clone(),
                "seen_units": self.seen_units.cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.task_units = state["task_units"].to(self.device, copy=True)
        self.seen_units = state["seen_units"].to(self.device, copy=True)


def apply_mask(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Push disallowed logits to a very negative finite value.

    Finite (not -inf) so that softmax-based distillation on masked logits stays NaN-free."""
    if mask is None:
        return logits
    return logits.masked_fill(~mask.to(logits.device), torch.finfo(logits.dtype).min / 2)
