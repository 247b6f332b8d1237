"""The objective interface: the loss of a batch and the scores of a task, plus the few
output-dependent pieces that strategies need (importances, distillation, stored logits)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

if TYPE_CHECKING:  # pragma: no cover
    from forgetless.data.stream import Task
    from forgetless.learner import Learner

#: Registered objective names, in the order ``forgetless list`` shows them.
OBJECTIVES = ("classification", "language_modelling")


class Objective:
    """What the Learner optimises and measures. ``scores`` names what ``score`` returns, the
    first being the one that fills the score matrix R[i][j] (higher is better)."""

    name: ClassVar[str] = ""
    scores: ClassVar[tuple[str, ...]] = ()

    def loss(self, learner: Learner, logits: torch.Tensor, y: torch.Tensor,
             task_ids: torch.Tensor) -> torch.Tensor:
        """The mean loss of a batch (before any strategy's penalty)."""
        raise NotImplementedError

    def score(self, learner: Learner, task: Task) -> dict[str, float]:
        """The task's test scores, keyed by ``scores`` (the first fills R[i][j])."""
        raise NotImplementedError

    def check_outputs(self, output: torch.Tensor, num_outputs: int) -> None:
        """Refuse a model whose outputs cannot serve this objective, saying how to fix it."""

    # ---- what strategies ask of the outputs
    def fisher_diagonal(self, learner: Learner, task: Task, estimator: str,
                        num_samples: int | None, chunk_size: int, mask,
                        generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def output_sensitivity(self, learner: Learner, task: Task, num_samples: int | None,
                           chunk_size: int, mask,
                           generator: torch.Generator) -> dict[str, torch.Tensor]:
        """MAS's importance: the sensitivity of the squared norm of the outputs."""
        raise NotImplementedError

    def distillation(self, student: torch.Tensor, teacher: torch.Tensor, x: torch.Tensor,
                     groups: torch.Tensor | None, temperature: float) -> torch.Tensor:
        """``T^2 * KL(teacher || student)`` at temperature T over the outputs that matter."""
        raise NotImplementedError

    def logit_memory(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """What DER++ stores of a sample's logits."""
        return logits.detach()

    def logit_matching(self, student: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
        """DER++'s distance between the current logits and the stored ones."""
        return torch.nn.functional.mse_loss(student, stored)
