"""Pieces the architecture strategies share: the layers of an MLP, the one-task-at-a-time rule,
and ``GradientGate``, which scales gradients per entry and keeps frozen entries bit-identical."""

from __future__ import annotations

import torch
from torch import nn

from forgetless.errors import ConfigurationError, ScenarioError


def mlp_layers(model: nn.Module, strategy: str) -> list[nn.Linear]:
    """The Linear layers of a forgetless MLP, hidden layers first and the output head last."""
    from forgetless.models.networks import MLP

    if not isinstance(model, MLP):
        problem = (f"{strategy} builds on the layers of an MLP but the model is a "
                   f"{type(model).__name__}")
        raise ConfigurationError(f"{problem}; build it with build_model('mlp', ...).",
                                 cli=f"{problem}; use --model mlp.")
    return [m for m in model.body if isinstance(m, nn.Linear)] + [model.head]


def expect_next_task(strategy: str, task, tasks_started: int) -> None:
    """These strategies give each task its own parameters and freeze them when the next task
    starts, so tasks must arrive once each, in order."""
    if task.task_id != tasks_started:
        raise ScenarioError(
            f"{strategy} learns each task once, in order: the next task must have id "
            f"{tasks_started}, got {task.task_id}. The parameters of a finished task are frozen; "
            "to train a task again start a new learner."
        )


def finished_units(learner, task_id: int) -> torch.Tensor:
    """Output units that belong to tasks before ``task_id`` (their head rows are frozen)."""
    units = learner.output_mask.task_units[:task_id]
    return units.any(0) if units.shape[0] else torch.zeros(units.shape[1], dtype=torch.bool)


def head_row_scales(head: nn.Linear, frozen_units: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradient scales (1 trainable, 0 frozen) for the head's weight and bias, by name: a
    finished task's output units keep their rows."""
    rows = (~frozen_units).to(head.weight.device, head.weight.dtype)
    scales = {"weight": rows[:, None].expand_as(head.weight).clone()}
    if head.bias is not None:
        scales["bias"] = rows.clone()
    return scales


class GradientGate:
    """Multiplies each parameter's gradient by a fixed tensor of scales and keeps the entries
    whose scale is 0 exactly as they were.

    Zeroing a gradient is not enough to freeze a weight: Adam moves a weight whose gradient is
    zero while its moment estimates are not (optimiser state kept across tasks), and weight decay
    moves every weight. So ``restore`` writes the frozen entries back after each step from a
    snapshot taken when the gate was made (before the first step it guards)."""

    def __init__(self, params: list[nn.Parameter], scales: list[torch.Tensor]) -> None:
        self.params = list(params)
        self.scales = [s.detach().to(p.device, p.dtype) for p, s in zip(params, scales,
                                                                          strict=True)]
        self.keep = [(s != 0).to(s.dtype) for s in self.scales]
        # The frozen entries' values, zero where trainable: restore is p * keep + frozen.
        self.frozen = [p.detach() * (1 - k) for p, k in zip(self.params, self.keep, strict=True)]

    @torch.no_grad()
    def scale_gradients(self) -> None:
        pairs = [(p.grad, s) for p, s in zip(self.params, self.scales, strict=True)
                 if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [s for _, s in pairs])

    @torch.no_grad()
    def restore(self) -> None:
        torch._foreach_mul_(self.params, self.keep)
        torch._foreach_add_(self.params, self.frozen)

    def tensors(self) -> list[torch.Tensor]:
        """What the gate holds (for footprints)."""
        return self.scales + self.keep + self.frozen
