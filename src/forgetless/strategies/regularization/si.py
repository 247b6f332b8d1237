"""Synaptic Intelligence (Zenke, Poole & Ganguli 2017, "Continual Learning Through Synaptic
Intelligence", ICML).

While a task trains, each weight accumulates its path integral ``omega_i = -sum_steps g_i *
delta_i``: how much its movement lowered the loss (``g`` the gradient of the loss without SI's
own penalty, as in the authors' code; ``delta`` the update the optimiser made). At the task's
end the contribution ``omega_i / (Delta_i^2 + xi)`` is added to the importance, with ``Delta``
the weight's total displacement over the task and ``xi`` a damping that keeps the ratio finite.
The penalty is ``c * sum_i importance_i * (w_i - w*_i)^2`` around the latest task's weights.

A negative path integral (the loss rose along the weight's path, which Adam's momentum and
mini-batch noise allow) can make a contribution negative. As in the authors' code
(ganguli-lab/pathint), the running importance is clipped after each task's contribution is added,
``importance <- relu(importance + contribution)``: a negative contribution lowers what earlier
tasks accumulated, and the importance never goes below 0, so the penalty stays a bowl.

SI needs no task boundary to measure its importances: the path integral is a sum over steps.
In a task-free fit (``learner.task_free``) it consolidates every ``consolidate_every`` steps
instead of at a task's end (the first period starts at the first step): the contribution of
the period is added and the anchor moves to the weights of that step. Where the damping
``xi`` dominates the squared displacement (``Delta^2`` of a few hundred Adam steps at lr 1e-3
is well below 0.1), ``omega / (Delta^2 + xi)`` is close to ``omega / xi``, which adds up over
periods: the importance a stream accumulates hardly depends on ``consolidate_every``, which
mostly sets how far the weights may drift from the anchor before it follows them.
"""

from __future__ import annotations

import torch

from forgetless.strategies import register
from forgetless.strategies.base import Footprint, tensor_bytes
from forgetless.strategies.regularization.quadratic import (
    CONSOLIDATE_EVERY,
    AnchoredRegularizer,
    check_count,
    check_strength,
    snapshot,
    trainable,
)


@register("si")
class SI(AnchoredRegularizer):
    """Synaptic Intelligence: importance from each weight's share of the loss decrease."""

    state_attributes = ("importance", "anchor", "task_start", "path", "period_open",
                        "steps_since_consolidation")
    keep_gradient = True

    def __init__(self, c: float = 10.0, xi: float = 0.1,
                 consolidate_every: int = CONSOLIDATE_EVERY) -> None:
        """c: strength of the penalty; 0 is naive fine-tuning.
        xi: damping added to the squared displacement (Zenke et al. use 0.1 on MNIST).
        consolidate_every: in a task-free fit only, optimiser steps between consolidations
            (see the module docstring); a task-based fit consolidates when each task ends."""
        self.c = check_strength("c", c)
        self.xi = check_strength("xi", xi)
        self.consolidate_every = check_count("consolidate_every", consolidate_every)
        self.importance: dict[str, torch.Tensor] | None = None
        self.anchor: dict[str, torch.Tensor] | None = None
        self.task_start: dict[str, torch.Tensor] | None = None
        self.path: dict[str, torch.Tensor] | None = None
        self.period_open = False  # a path integral is running (from task_start)
        self._grads: list[torch.Tensor] | None = None
        self._before: list[torch.Tensor] | None = None

    def before_task(self, task) -> None:
        self.start_period()

    def start_period(self) -> None:
        """Start a path integral at the current weights (a task's, or a task-free period's)."""
        self.task_start = snapshot(self.learner.model)
        self.path = {n: torch.zeros_like(p) for n, p in self.task_start.items()}
        self.period_open = True
        self._before = self._grads = None

    def before_step(self) -> None:
        if not self.period_open:  # task-free: no before_task started this period
            self.start_period()
        params = self._params()
        if self._before is None:  # buffers reused at every step (no allocation per step)
            self._before = [torch.empty_like(p) for p in params]
            self._grads = [torch.empty_like(p) for p in params]
        torch._foreach_copy_(self._before, [p.detach() for p in params])
        self.task_loss_gradients(params, self._grads)

    def after_step(self) -> None:
        params = [p.detach() for p in self._params()]
        torch._foreach_sub_(self._before, params)  # now minus this step's update
        torch._foreach_addcmul_(list(self.path.values()), self._grads, self._before)
        if self.quadratic is not None:
            self.quadratic.last_gradient = None
        if self.consolidation_due():
            self.consolidate()
            self.start_period()

    def after_task(self, task) -> None:
        self.consolidate()

    def consolidate(self) -> None:
        """Add the period's contribution to the importance and anchor at the current weights."""
        end = snapshot(self.learner.model)
        gained = {n: self.path[n] / ((end[n] - self.task_start[n]).square() + self.xi)
                  for n in end}
        self.importance = self.without_released(
            {n: (gained[n] if self.importance is None else self.importance[n] + gained[n])
             .clamp_min(0) for n in gained})
        self.anchor = end
        self.period_open = False
        self.rebuild()

    def rebuild(self) -> None:
        if self.importance is not None:
            self.anchor_to({n: self.c * v for n, v in self.importance.items()}, self.anchor)

    def footprint(self) -> Footprint:
        return super().footprint() + Footprint(tensor_bytes([self._before, self._grads]))

    def _params(self) -> list[torch.Tensor]:
        return [p for n, p in trainable(self.learner.model).items() if n in self.path]
