"""Elastic Weight Consolidation (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in
neural networks", PNAS) and Online EWC (Schwarz et al. 2018, "Progress & Compress", ICML).

EWC: after each task t, estimate the diagonal Fisher ``F_t`` at the learned weights ``w*_t``;
while learning later tasks add ``lam/2 * sum_t sum_i F_t,i (w_i - w*_t,i)^2``, one term per old
task. The sum of the terms is the single quadratic ``lam/2 * [S (w - c)^2 + const]`` with
``S = sum_t F_t`` and ``c = sum_t F_t w*_t / S``, so EWC keeps only ``S``, ``c`` and the constant,
merging each new task's term into them (exactly: the constant absorbs the difference): a step
costs the same and the memory is the same whatever the number of tasks (it kept every task's
Fisher and anchor before: 23 MB after 5 tasks of the 784-400-400 MLP; now 3 copies of its
weights, 5.7 MB).

Online EWC: one running Fisher ``F <- gamma * F + F_t`` and one anchor (the latest weights):
``lam/2 * sum_i F_i (w_i - w*_i)^2``; memory stays constant.

Online EWC in a task-free fit (``learner.task_free``: no task ends, so no task's Fisher can be
estimated): the running Fisher of EWC++ (Chaudhry, Dokania, Ajanthan & Torr 2018, "Riemannian
Walk for Incremental Learning", ECCV, eq. 6), updated at every step from that step's batch,
``F <- fisher_alpha * F_step + (1 - fisher_alpha) * F`` (the first step's ``F_step`` starts
it). ``F_step`` is the squared gradient of the batch's mean loss without the penalty (the
``batched`` estimator of ``fisher.py`` on one batch): it costs nothing beyond the step's own
backward pass, and, being the square of a mean rather than a mean of per-sample squares, it is
smaller than the per-sample Fisher of the ``exact`` default, so ``lam`` needs to be larger
task-free. Every ``consolidate_every`` steps the penalty takes the running Fisher as it is and
the anchor moves to the current weights.

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
    CONSOLIDATE_EVERY,
    AnchoredRegularizer,
    check_count,
    check_strength,
    is_task_free,
    snapshot,
    trainable,
)


@register("ewc")
class EWC(AnchoredRegularizer):
    """Elastic Weight Consolidation: one Fisher-weighted quadratic term per old task."""

    why_not_task_free = ("it estimates each task's Fisher information and takes its anchor when "
                         "the task ends, which a task-free stream does not announce; use "
                         "online-ewc, which keeps a running Fisher and moves its anchor every "
                         "consolidate_every steps.")

    state_attributes = ("fishers", "anchors", "offset")

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
        self.offset = 0.0  # sum_t F_t w*_t^2 - S c^2 of the terms merged into (S, c)

    def after_task(self, task) -> None:
        fisher = self.learner.objective.fisher_diagonal(
            self.learner, task, self.fisher_estimator, self.fisher_samples, self.chunk_size,
            self.training_mask(task), self.importance_generator(task))
        self.consolidate(self.without_released(fisher), snapshot(self.learner.model))
        self.rebuild()

    def consolidate(self, fisher: dict, anchor: dict) -> None:
        """Merge the new task's term into the one quadratic of every term so far."""
        self.fishers.append(fisher)
        self.anchors.append(anchor)
        self.fishers, self.anchors, self.offset = self.merged()

    def merged(self) -> tuple[list[dict], list[dict], float]:
        """The terms kept, as one (Fisher sum, centre) pair and the constant. Built term by
        term, without stacking the terms or copying them whole to float64, so merging holds
        about one parameter's worth of temporaries (the stacked float64 copies were, with the
        Fisher's chunks, what raised EWC's peak memory: benchmarks/peers.md)."""
        sums, centres, offset = {}, {}, self.offset
        for name in self.fishers[0]:
            f = [fisher[name] for fisher in self.fishers]
            a = [anchor[name] for anchor in self.anchors]
            total, weighted = f[0].clone(), f[0] * a[0]
            for f_t, a_t in zip(f[1:], a[1:], strict=True):
                total += f_t
                weighted += f_t * a_t
            centre = a[0] if len(a) == 1 else torch.where(
                total > 0, weighted.div_(total.clamp_min(1e-38)), a[-1])
            # sum_t f_t (w - a_t)^2 = total (w - centre)^2 + sum_t f_t a_t^2 - total centre^2
            offset += sum(weighted_square_sum(f_t, a_t) for f_t, a_t in zip(f, a, strict=True))
            offset -= weighted_square_sum(total, centre)
            sums[name], centres[name] = total, centre
        return [sums], [centres], offset

    def load_state_dict(self, state: dict) -> None:
        # Older files kept one term per task and no constant: merged in ``rebuild``.
        super().load_state_dict({"offset": 0.0, **state})

    def rebuild(self) -> None:
        if not self.fishers:
            return
        if len(self.fishers) > 1:
            self.fishers, self.anchors, self.offset = self.merged()
        weights, centres, offset = {}, {}, self.offset
        for name in self.fishers[0]:
            weights[name] = 0.5 * self.lam * self.fishers[0][name]
            centres[name] = self.anchors[0][name]
        self.anchor_to(weights, centres, 0.5 * self.lam * offset)


def weighted_square_sum(weight: torch.Tensor, value: torch.Tensor,
                        slice_size: int = 1 << 16) -> float:
    """``sum(weight * value^2)`` in float64, a slice at a time: the constant of a merged
    quadratic is a difference of such sums, which float32 would cancel away."""
    weight, value = weight.reshape(-1), value.reshape(-1)
    return sum(float(torch.dot(weight[s:s + slice_size].double(),
                               value[s:s + slice_size].double().square()))
               for s in range(0, weight.numel(), slice_size))


#: Default weight of a step in the task-free running Fisher: it averages about the last 100
#: steps, more than a task of the online benchmarks (80 steps on embedded split MNIST at batch
#: 10), so the Fisher of the task just left still counts while the next one starts. On the
#: task-free digits stream (lam 1e4, consolidate_every 50) it kept 0.907 of task 0 against
#: 0.1's 0.847 with 150 steps per task, 0.968 against 0.977 with 80 (docs/regularization.md).
DEFAULT_FISHER_ALPHA = 0.01


@register("online-ewc")
class OnlineEWC(EWC):
    """Online EWC: one running Fisher, decayed by gamma at each task, and one anchor; task-free,
    the running Fisher of EWC++ (Chaudhry et al. 2018)."""

    state_attributes = ("fishers", "anchors", "running_fisher", "steps_since_consolidation")
    keep_gradient = True  # task-free, the running Fisher is of the loss without the penalty

    def __init__(self, lam: float = 1000.0, gamma: float = 1.0, fisher_estimator: str = "exact",
                 fisher_samples: int | None = 1000, chunk_size: int = 256,
                 consolidate_every: int = CONSOLIDATE_EVERY,
                 fisher_alpha: float = DEFAULT_FISHER_ALPHA) -> None:
        """lam: strength of the penalty; 0 is naive fine-tuning.
        gamma: decay of the running Fisher at each new task, in [0, 1] (1 keeps it all).
        fisher_estimator, fisher_samples, chunk_size: as for ``ewc``.
        consolidate_every: in a task-free fit only, optimiser steps between two moves of the
            anchor (and of the Fisher the penalty uses).
        fisher_alpha: in a task-free fit only, the weight of each step's squared gradient in
            the running Fisher, in (0, 1] (EWC++'s alpha; see the module docstring)."""
        super().__init__(lam, fisher_estimator, fisher_samples, chunk_size)
        gamma = check_strength("gamma", gamma)
        if gamma > 1:
            raise ConfigurationError(f"gamma must be in [0, 1], got {gamma!r}.")
        self.gamma = gamma
        self.consolidate_every = check_count("consolidate_every", consolidate_every)
        fisher_alpha = check_strength("fisher_alpha", fisher_alpha)
        if not 0 < fisher_alpha <= 1:
            raise ConfigurationError(f"fisher_alpha must be in (0, 1], got {fisher_alpha!r}; "
                                     "e.g. --set fisher_alpha=0.01.")
        self.fisher_alpha = fisher_alpha
        self.running_fisher: dict[str, torch.Tensor] | None = None  # task-free fits only
        self._grads: list[torch.Tensor] | None = None

    def consolidate(self, fisher: dict, anchor: dict) -> None:
        if self.fishers and not is_task_free(self.learner):
            fisher = {n: self.gamma * old + fisher[n] for n, old in self.fishers[0].items()}
        self.fishers, self.anchors = [fisher], [anchor]

    def before_step(self) -> None:
        if not is_task_free(self.learner):
            return
        first = self.running_fisher is None  # the first step's F_step starts the average
        if first:
            self.running_fisher = {n: torch.zeros_like(p)
                                   for n, p in trainable(self.learner.model).items()}
        params = self._params()
        if self._grads is None or len(self._grads) != len(params):
            self._grads = [torch.empty_like(p) for p in params]
        self.task_loss_gradients(params, self._grads)
        running = list(self.running_fisher.values())
        torch._foreach_mul_(running, 0.0 if first else 1.0 - self.fisher_alpha)
        torch._foreach_addcmul_(running, self._grads, self._grads,
                                value=1.0 if first else self.fisher_alpha)

    def after_step(self) -> None:
        if self.quadratic is not None:
            self.quadratic.last_gradient = None
        if self.consolidation_due():
            fisher = {n: f.clone() for n, f in self.running_fisher.items()}
            self.consolidate(self.without_released(fisher), snapshot(self.learner.model))
            self.rebuild()

    def _params(self) -> list[torch.Tensor]:
        return [p for n, p in trainable(self.learner.model).items() if n in self.running_fisher]
