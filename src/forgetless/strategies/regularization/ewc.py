"""Elastic Weight Consolidation (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in
neural networks", PNAS) and Online EWC (Schwarz et al. 2018, "Progress & Compress", ICML).

EWC: after each task t, estimate the diagonal Fisher ``F_t`` at the learned weights ``w*_t``;
while learning later tasks add ``lam/2 * sum_t sum_i F_t,i (w_i - w*_t,i)^2``, one term per old
task. It keeps every task's Fisher and anchor (memory grows with the number of tasks). The sum of
the terms is evaluated in one pass as the single quadratic it equals,
``lam/2 * [S (w - c)^2 + const]`` with ``S = sum_t F_t`` and ``c = sum_t F_t w*_t / S``, so a
step costs the same whatever the number of tasks.

Online EWC: one running Fisher ``F <- gamma * F + F_t`` and one anchor (the latest weights):
``lam/2 * sum_i F_i (w_i - w*_i)^2``; memory stays constant.

The Fisher estimator is ``exact`` by default (see ``fisher.py`` for the published variants and
why), on at most ``fisher_samples`` of the task's training samples, under the output mask that
training used (a task-incremental head's own units).
"""

from __future__ import annotations

import torch

from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.regularization.fisher import ESTIMATORS
from forgetless.strategies.regularization.quadratic import (
    AnchoredRegularizer,
    check_count,
    check_strength,
    snapshot,
)


@register("ewc")
class EWC(AnchoredRegularizer):
    """Elastic Weight Consolidation: one Fisher-weighted quadratic term per old task."""

    state_attributes = ("fishers", "anchors")

    def __init__(self, lam: float = 1000.0, fisher_estimator: str = "exact",
                 fisher_samples: int | None = 1000, chunk_size: int = 256) -> None:
        """lam: strength of the penalty (``lam/2 * F * (w - w*)^2``); 0 is naive fine-tuning.
        fisher_estimator: exact | sampled | empirical | batched (see ``fisher.py``).
        fisher_samples: training samples of each task the Fisher is estimated on (None: all).
        chunk_size: per-sample gradients held at once while estimating (memory bound)."""
        self.lam = check_strength("lam", lam)
        if fisher_estimator not in ESTIMATORS:
            raise ConfigurationError(f"fisher_estimator must be one of {', '.join(ESTIMATORS)}, "
                                     f"got {fisher_estimator!r}.")
        self.fisher_estimator = fisher_estimator
        self.fisher_samples = check_count("fisher_samples", fisher_samples, allow_none=True)
        self.chunk_size = check_count("chunk_size", chunk_size)
        self.fishers: list[dict[str, torch.Tensor]] = []
        self.anchors: list[dict[str, torch.Tensor]] = []

    def after_task(self, task) -> None:
        fisher = self.learner.objective.fisher_diagonal(
            self.learner, task, self.fisher_estimator, self.fisher_samples, self.chunk_size,
            self.training_mask(task), self.importance_generator(task))
        self.consolidate(self.without_released(fisher), snapshot(self.learner.model))
        self.rebuild()

    def consolidate(self, fisher: dict, anchor: dict) -> None:
        """EWC keeps one term per task."""
        self.fishers.append(fisher)
        self.anchors.append(anchor)

    def rebuild(self) -> None:
        if not self.fishers:
            return
        weights, centres, offset = {}, {}, 0.0
        for name in self.fishers[0]:
            f = torch.stack([fisher[name] for fisher in self.fishers])
            a = torch.stack([anchor[name] for anchor in self.anchors])
            total = f.sum(0)
            centre = a[0] if len(a) == 1 else torch.where(
                total > 0, (f * a).sum(0) / total.clamp_min(1e-38), a[-1])
            # sum_t f_t (w - a_t)^2 = total (w - centre)^2 + sum_t f_t a_t^2 - total centre^2
            offset += float((f.double() * a.double().square()).sum()
                            - (total.double() * centre.double().square()).sum())
            weights[name], centres[name] = 0.5 * self.lam * total, centre
        self.anchor_to(weights, centres, 0.5 * self.lam * offset)


@register("online-ewc")
class OnlineEWC(EWC):
    """Online EWC: one running Fisher, decayed by gamma at each task, and one anchor."""

    def __init__(self, lam: float = 1000.0, gamma: float = 1.0, fisher_estimator: str = "exact",
                 fisher_samples: int | None = 1000, chunk_size: int = 256) -> None:
        """lam: strength of the penalty; 0 is naive fine-tuning.
        gamma: decay of the running Fisher at each new task, in [0, 1] (1 keeps it all).
        fisher_estimator, fisher_samples, chunk_size: as for ``ewc``."""
        super().__init__(lam, fisher_estimator, fisher_samples, chunk_size)
        gamma = check_strength("gamma", gamma)
        if gamma > 1:
            raise ConfigurationError(f"gamma must be in [0, 1], got {gamma!r}.")
        self.gamma = gamma

    def consolidate(self, fisher: dict, anchor: dict) -> None:
        if self.fishers:
            fisher = {n: self.gamma * old + fisher[n] for n, old in self.fishers[0].items()}
        self.fishers, self.anchors = [fisher], [anchor]
