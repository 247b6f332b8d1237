"""L2: anchoring every weight with the same importance (the "L2" row of Hsu, Liu, Ramasamy &
Kira 2018, "Re-evaluating Continual Learning Scenarios: A Categorization and Case for Strong
Baselines"; also Kirkpatrick et al. 2017's comparison).

After each task the weights are anchored where the task left them, and while later tasks train
the loss gains ``lam * sum_i (w_i - w*_i)^2``: EWC, SI and MAS with the importance estimate
replaced by 1. It costs nothing to estimate, so it tells whether an importance estimate is worth
its cost: a method that does not beat L2 gains nothing from its importances.
"""

from __future__ import annotations

import torch

from forgetless.strategies import register
from forgetless.strategies.regularization.quadratic import (
    AnchoredRegularizer,
    check_strength,
    snapshot,
)


@register("l2")
class L2(AnchoredRegularizer):
    """Uniform-importance anchoring to the latest task's weights (Hsu et al. 2018)."""

    why_not_task_free = ("it anchors the weights where each task ends, which a task-free stream "
                         "does not announce; use si or online-ewc, which consolidate every "
                         "consolidate_every steps.")

    state_attributes = ("importance", "anchor")

    def __init__(self, lam: float = 0.1) -> None:
        """lam: strength of the penalty ``lam * sum (w - w*)^2``; 0 is naive fine-tuning. The
        default was the best of 0.01-10 on split digits in task- and domain-incremental runs
        (``benchmarks/new_baselines.md``)."""
        self.lam = check_strength("lam", lam)
        self.importance: dict[str, torch.Tensor] | None = None
        self.anchor: dict[str, torch.Tensor] | None = None

    def after_task(self, task) -> None:
        self.anchor = snapshot(self.learner.model)
        self.importance = self.without_released(
            {n: torch.ones_like(w) for n, w in self.anchor.items()})
        self.rebuild()

    def rebuild(self) -> None:
        if self.importance is not None:
            self.anchor_to({n: self.lam * v for n, v in self.importance.items()}, self.anchor)
