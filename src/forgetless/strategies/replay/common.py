"""Pieces the replay strategies share: the masks a teacher saw, distillation on soft targets,
and the flat gradient of a memory's loss that the gradient-projection methods (A-GEM, GEM)
compare the current gradient with."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
    where a parameter does not reach the loss), without touching the parameters' ``.grad``."""
    loss = learner.loss(learner.forward(x, task_ids), y, task_ids)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for p, g in zip(params, grads, strict=True)])
