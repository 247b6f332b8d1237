"""O-LoRA (Wang et al. 2023, "Orthogonal Subspace Learning for Language Model Continual
Learning", Findings of EMNLP).

Each task gets a fresh LoRA adapter; the earlier tasks' adapters are frozen and still applied
(the paper keeps them as fixed low-rank updates of the base weights), so the model is the base
plus every task's update and needs no task id at test time: task-agnostic, every scenario. The
new adapter's ``A`` (r x in: the input directions it reads) is pushed orthogonal to every earlier
task's ``A`` in the same layer, so the new update leaves the old tasks' subspaces alone::

    penalty = lambda_orth * sum_layers sum_{s < t} sum_{j,k} |(A_t A_s^T)_{jk}|
              + lambda_l2 * sum_{new tensors P} ||P||_2

Both terms as in the authors' code (cmnlp/O-LoRA, ``uie_trainer_lora.py``): the sum of absolute
entries (an L1 on the overlap matrix) and the unsquared L2 norm of each of the new adapter's
tensors; defaults as in their released scripts (``--lamda_1 0.5 --lamda_2 0``). With
``train_head`` the head trains too (a classifier's head is shared by every task, which O-LoRA's
generative models do not have; it can still forget through it in class-incremental runs).
"""

from __future__ import annotations

import torch

from forgetless.strategies import register
from forgetless.strategies.base import Footprint
from forgetless.strategies.peft.adapters import (
    PerTaskLora,
    adapters_footprint,
    lora_layers,
    lora_parameters,
)
from forgetless.strategies.regularization.quadratic import check_strength


def orthogonality(new: list[torch.Tensor], old: list[torch.Tensor]) -> torch.Tensor:
    """``sum_layers sum |A_new A_old^T|``: per layer, the new ``A`` against the rows of every
    earlier ``A`` of that layer stacked into one matrix (0 when they are orthogonal)."""
    return torch.stack([(a @ b.T).abs().sum() for a, b in zip(new, old, strict=True)]).sum()


@register("olora")
class OLoRA(PerTaskLora):
    """O-LoRA: a LoRA adapter per task, kept orthogonal to the earlier ones; all applied."""

    def __init__(self, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                 target_modules: list[str] | str | None = None, train_head: bool = True,
                 lambda_orth: float = 0.5, lambda_l2: float = 0.0) -> None:
        """r, alpha, dropout, target_modules, train_head: each task's adapter, as for ``lora``.
        lambda_orth: strength of the orthogonality penalty (the paper's lambda_1; 0 turns it
        off, leaving frozen per-task adapters that are all applied).
        lambda_l2: strength of the L2 norm of the new adapter (the paper's lambda_2)."""
        self.configure(r, alpha, dropout, target_modules, train_head)
        self.lambda_orth = check_strength("lambda_orth", lambda_orth)
        self.lambda_l2 = check_strength("lambda_l2", lambda_l2)
        self._old: list[torch.Tensor] | None = None

    def applied_in_training(self) -> list[str]:
        return list(self.adapters)

    def before_task(self, task) -> None:
        super().before_task(task)
        self._old = None  # stacked from the earlier adapters' values at the first penalty

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._old = None

    def a_matrices(self, adapter: str) -> list[torch.Tensor]:
        """``adapter``'s ``A`` in every LoRA layer, in the model's order."""
        return [layer.lora_A[adapter].weight for layer in lora_layers(self.learner.model)]

    def earlier_a(self) -> list[torch.Tensor]:
        """Per LoRA layer, the earlier adapters' ``A`` rows stacked (detached: frozen)."""
        per_adapter = [self.a_matrices(a) for a in self.adapters[:-1]]
        return [torch.cat([a.detach() for a in layer]) for layer in zip(*per_adapter,
                                                                        strict=True)]

    def penalty(self, batch, logits):
        total = None
        if self.lambda_orth > 0 and len(self.adapters) > 1:
            if self._old is None:
                self._old = self.earlier_a()
            total = self.lambda_orth * orthogonality(self.a_matrices(self.adapters[-1]),
                                                     self._old)
        if self.lambda_l2 > 0 and self.adapters:
            params = lora_parameters(self.learner.model, self.adapters[-1]).values()
            l2 = self.lambda_l2 * torch.stack([p.norm() for p in params]).sum()
            total = l2 if total is None else total + l2
        return total

    def footprint(self) -> Footprint:
        return adapters_footprint(self.learner.model, self.adapters, self._old or [])
