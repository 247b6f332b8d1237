"""Pieces the replay strategies share: the masks a teacher saw, and
distillation on soft targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from forgetless.data.stream import Scenario
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
