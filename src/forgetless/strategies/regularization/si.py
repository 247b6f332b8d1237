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
"""

from __future__ import annotations

import torch

from forgetless.strategies import register
from forgetless.strategies.base import Footprint, tensor_bytes
from forgetless.strategies.regularization.quadratic import (
    AnchoredRegularizer,
    check_strength,
    snapshot,
    trainable,
)


@register("si")
class SI(AnchoredRegularizer):
    """Synaptic Intelligence: importance from each weight's share of the loss decrease."""

    state_attributes = ("importance", "anchor", "task_start", "path")
    keep_gradient = True

    def __init__(self, c: float = 10.0, xi: float = 0.1) -> None:
        """c: strength of the penalty; 0 is naive fine-tuning.
        xi: damping added to the squared displacement (Zenke et al. use 0.1 on MNIST)."""
        self.c = check_strength("c", c)
        self.xi = check_strength("xi", xi)
        self.importance: dict[str, torch.Tensor] | None = None
        self.anchor: dict[str, torch.Tensor] | None = None
        self.task_start: dict[str, torch.Tensor] | None = None
        self.path: dict[str, torch.Tensor] | None = None
        self._grads: list[torch.Tensor] | None = None
        self._before: list[torch.Tensor] | None = None

    def before_task(self, task) -> None:
        self.task_start = snapshot(self.learner.model)
        self.path = {n: torch.zeros_like(p) for n, p in self.task_start.items()}
        self._before = self._grads = None

    def before_step(self) -> None:
        params = self._params()
        if self._before is None:  # buffers reused at every step (no allocation per step)
            self._before = [torch.empty_like(p) for p in params]
            self._grads = [torch.empty_like(p) for p in params]
        torch._foreach_copy_(self._before, [p.detach() for p in params])
        torch._foreach_copy_(self._grads, [torch.zeros_like(p) if p.grad is None else p.grad
                                           for p in params])
        own = None if self.quadratic is None else self.quadratic.last_gradient
        if own is not None:  # the task loss's gradient: minus what SI's own penalty added
            torch._foreach_sub_(self._grads, own)

    def after_step(self) -> None:
        params = [p.detach() for p in self._params()]
        torch._foreach_sub_(self._before, params)  # now minus this step's update
        torch._foreach_addcmul_(list(self.path.values()), self._grads, self._before)
        if self.quadratic is not None:
            self.quadratic.last_gradient = None

    def after_task(self, task) -> None:
        end = snapshot(self.learner.model)
        gained = {n: self.path[n] / ((end[n] - self.task_start[n]).square() + self.xi)
                  for n in end}
        self.importance = self.without_released(
            {n: (gained[n] if self.importance is None else self.importance[n] + gained[n])
             .clamp_min(0) for n in gained})
        self.anchor = end
        self.rebuild()

    def rebuild(self) -> None:
        if self.importance is not None:
            self.anchor_to({n: self.c * v for n, v in self.importance.items()}, self.anchor)

    def footprint(self) -> Footprint:
        return super().footprint() + Footprint(tensor_bytes([self._before, self._grads]))

    def _params(self) -> list[torch.Tensor]:
        return [p for n, p in trainable(self.learner.model).items() if n in self.path]
