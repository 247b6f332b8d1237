"""Memory Aware Synapses (Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars 2018, "Memory
Aware Synapses: Learning what (not) to forget", ECCV).

After each task, a weight's importance is the mean over the task's samples of the absolute
gradient of the squared L2 norm of the model's output, ``|d ||f(x)||^2 / d w_i|``: how sensitive
the learned function is to that weight. It needs no labels. Importances add up over tasks, and
while learning later tasks the loss gains ``lam * sum_i importance_i * (w_i - w*_i)^2`` around
the latest task's weights (the paper's eq. 3). The output is the units training used (a
task-incremental head's own units; the seen classes in class-incremental runs).
"""

from __future__ import annotations

import torch

from forgetless.strategies import register
from forgetless.strategies.regularization.quadratic import (
    AnchoredRegularizer,
    check_count,
    check_strength,
    snapshot,
)


@register("mas")
class MAS(AnchoredRegularizer):
    """Memory Aware Synapses: importance from the output's sensitivity to each weight."""

    why_not_task_free = ("it measures each task's output sensitivity on the task's data when the "
                         "task ends, which a task-free stream does not announce; use si or "
                         "online-ewc, which consolidate every consolidate_every steps.")

    state_attributes = ("importance", "anchor")

    def __init__(self, lam: float = 0.1, importance_samples: int | None = 1000,
                 chunk_size: int = 256) -> None:
        """lam: strength of the penalty; 0 is naive fine-tuning.
        importance_samples: training samples of each task the importance is measured on
            (None: all).
        chunk_size: per-sample gradients held at once while measuring (memory bound)."""
        self.lam = check_strength("lam", lam)
        self.importance_samples = check_count("importance_samples", importance_samples,
                                              allow_none=True)
        self.chunk_size = check_count("chunk_size", chunk_size)
        self.importance: dict[str, torch.Tensor] | None = None
        self.anchor: dict[str, torch.Tensor] | None = None

    def after_task(self, task) -> None:
        gained = self.learner.objective.output_sensitivity(
            self.learner, task, self.importance_samples, self.chunk_size,
            self.training_mask(task), self.importance_generator(task))
        gained = self.without_released(gained)
        self.importance = gained if self.importance is None else {
            n: self.importance[n] + gained[n] for n in gained}
        self.anchor = snapshot(self.learner.model)
        self.rebuild()

    def rebuild(self) -> None:
        if self.importance is not None:
            self.anchor_to({n: self.lam * v for n, v in self.importance.items()}, self.anchor)
