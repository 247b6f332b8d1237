"""Pieces the replay strategies share: the masks a teacher saw, distillation on soft targets,
the flat gradient of a memory's loss that the gradient-projection methods (A-GEM, GEM)
compare the current gradient with, and (``ReplayShare``) how a mean over a replayed sample
becomes each rank's share of it in a process group."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from forgetless import distributed
from forgetless.data.stream import Scenario
from forgetless.errors import ConfigurationError
from forgetless.models.heads import apply_mask


def teacher_mask(learner, seen_before: torch.Tensor | None,
                 task_ids: torch.Tensor) -> torch.Tensor | None:
    """The output units a teacher (the model as it was before this task) was trained on, for
    samples of ``task_ids``: in class-incremental runs the units seen before this task
    (``seen_before``), otherwise the training mask of those samples' tasks."""
    if learner.scenario is Scenario.CLASS:
        return seen_before
    return learner.output_mask.for_training(task_ids)


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                     student_mask: torch.Tensor | None, teacher_mask_: torch.Tensor | None,
                     temperature: float) -> torch.Tensor:
    """Cross-entropy from the teacher's softened distribution to the student's, times T^2
    (Hinton et al. 2015). The teacher's masked-out units (classes it never saw) get target
    probability zero, so the student is taught over every unit it may use: the old classes'
    soft targets padded with zeros for the new ones."""
    t = temperature
    target = F.softmax(apply_mask(teacher_logits, teacher_mask_) / t, dim=1)
    log_student = F.log_softmax(apply_mask(student_logits, student_mask) / t, dim=1)
    return -(target * log_student).sum(1).mean() * t * t


def check_strength(value, zero_is: str) -> float:
    """A memory strength (GEM's margin gamma) must be a number >= 0; ``zero_is`` names what 0
    means for the strategy asking."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigurationError(
            f"memory_strength must be a number >= 0 (0 is {zero_is}; e.g. --set "
            f"memory_strength=0.5), got {value!r}.")
    return float(value)


def memory_gradient(learner, params: list[torch.nn.Parameter], x: torch.Tensor,
                    y: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
    """The gradient of the learner's loss on a memory batch, flattened over ``params`` (zeros
    where a parameter does not reach the loss), without touching the parameters' ``.grad``.
    In a process group ``x`` is this rank's part of the memory batch (possibly empty) and the
    result the gradient of the mean over every rank's rows (each rank's weighted by its rows),
    the same on every rank."""
    grads = [None] * len(params)
    if x.shape[0]:
        loss = learner.loss(learner.forward(x, task_ids), y, task_ids)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for p, g in zip(params, grads, strict=True)])
    return distributed.all_reduce_mean_([flat], weight=x.shape[0])[0]


class ReplayShare:
    """Turns a mean over a replayed sample that is not the batch's own rows (DER++'s replay
    terms, generative replay's batch) into this rank's share of it.

    The Learner averages the ranks' gradients weighted by their batch rows ``len(batch)``, so
    a rank's term ``t_r`` counts ``len_r / L`` (``L``: the batch rows over every rank). For the
    sum to be the mean over the whole sample of ``drawn`` rows, of which this rank holds
    ``rows`` (mean ``m_r``), ``t_r = m_r * rows * L / (len_r * drawn)``; in one process the
    factor is exactly 1. Built once per step (one tiny all-reduce, by every rank)."""

    def __init__(self, batch) -> None:
        self.batch_rows = len(batch)
        rows = torch.tensor([float(self.batch_rows)])
        self.run_rows = int(distributed.all_reduce_sum_([rows])[0].item())

    def of(self, mean: torch.Tensor, rows: int, drawn: int) -> torch.Tensor:
        """This rank's share of the mean over ``drawn`` replayed rows, from ``mean``, its own
        ``rows`` rows' mean (rows > 0)."""
        return mean * (rows * self.run_rows / (self.batch_rows * drawn))
