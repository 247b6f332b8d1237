"""The objective interface: the loss of a batch and the scores of a task, plus the few
output-dependent pieces that strategies need (importances, distillation, stored logits)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

from forgetless.strategies.base import evaluating

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


def per_sample_importance(learner: Learner, task: Task, num_samples: int | None,
                          generator: torch.Generator, reduce, objective,
                          per_batch: bool = False) -> dict[str, torch.Tensor]:
    """Mean over samples (or over batches, ``per_batch``) of ``reduce(gradient)`` of
    ``objective(logits, y, generator)`` per trainable parameter, one backward per sample, in
    eval mode; ``.grad`` is left untouched. The path for models ``torch.func`` cannot
    vectorise over samples (transformers: their attention masks branch on the data)."""
    model = learner.model
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    x, y = task.train_x, task.train_y
    if num_samples is not None and num_samples < x.shape[0]:
        chosen = torch.randperm(x.shape[0], generator=generator)[:num_samples]
        x, y = x[chosen], y[chosen]
    step = learner.batch_size if per_batch else 1
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    with evaluating(model):
        for start in range(0, x.shape[0], step):
            xb = x[start:start + step].to(learner.device)
            yb = y[start:start + step].to(learner.device)
            value = objective(learner.forward(xb, None), yb, generator)
            if value is None:
                continue
            grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
            for (name, _), g in zip(params.items(), grads, strict=True):
                if g is not None:
                    total[name] += reduce(g)
            count += 1
    return {n: v / max(1, count) for n, v in total.items()}
