"""Divergence: stop a run whose training has blown up, naming the task, the step and the fix.

A learning rate far too high trains to the end without a NaN under Adam (its steps are bounded
by the learning rate, so the weights grow to ~1e7 and the loss to ~1e14 while staying finite),
and reports a chance-level accuracy as if it were a result. Three signs are checked, each cheap:

- the loss is NaN or infinite (every step's value is checked);
- the *data* loss (the Learner's cross-entropy, strategies' penalties left out) exceeds
  ``LOSS_GROWTH`` times its value at the first step of the run of steps (floored at 1, so a
  task that starts already learned is not held to a tiny reference). The penalties are left
  out because they legitimately start at zero on a new task and grow: under the tuned EWC
  lambda of 1e6 the total loss reaches 66x its first value while the cross-entropy stays
  within 2.2x (online EWC, split MNIST, domain-incremental: ``python
  benchmarks/divergence_margins.py --source mnist --epochs 2 --batch-size 128``);
- every ``CHECK_EVERY`` steps, before the optimiser step, and after each run's last step: the
  gradients and the weights are finite and the weights' total norm stays under
  ``NORM_GROWTH`` times its value at the learner's first check (one fused norm per tensor list).

The steps' losses stay on the device until that check, which reads them and the norms in one
host sync (every ``CHECK_EVERY`` steps, not every step: on a GPU a sync stalls the queue of
kernels). A diverged loss is then reported up to ``CHECK_EVERY - 1`` steps after it happened,
with the step where it happened.
"""

from __future__ import annotations

import math

import torch

from forgetless.errors import TrainingDivergedError

LOSS_GROWTH = 100.0
NORM_GROWTH = 100.0
CHECK_EVERY = 10
FIX = ("lower the learning rate (--lr) or the strategy's strength, and check the inputs' "
       "scale.")


def total_norm(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """The 2-norm of all ``tensors`` together, one fused op per list (as ``clip_grad_norm_``)."""
    if not tensors:
        return torch.zeros((), device=device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


class DivergenceGuard:
    """Watches a learner's optimiser steps. The loss is compared with the first step of the
    current run of steps (a task, or a strategy's extra phase: the cross-entropy at a task's
    start legitimately differs between tasks); the weights with the first check of the learner's
    life, so weights that blew up in one task cannot become the next task's reference."""

    def __init__(self) -> None:
        self.where = "training"  # e.g. "task 2", for the message
        self.first_loss: float | None = None
        self.first_norm: float | None = None
        #: The total loss of the latest step read at a check (the progress bar shows it).
        self.last_loss: float | None = None
        self._pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def start(self, where: str) -> None:
        """A new run of steps begins; its first loss becomes the reference."""
        self.where, self.first_loss, self._pending = where, None, []

    def _stop(self, what: str, step: int, why: str = "") -> TrainingDivergedError:
        return TrainingDivergedError(f"{what} at {self.where}, step {step}{why}; training "
                                     f"diverged: {FIX}")

    def record_loss(self, step: int, loss: torch.Tensor, data_loss: torch.Tensor) -> None:
        """Before backward: the step's total loss and its data (cross-entropy) part, kept on
        the device (no sync) until the next ``check_parameters`` reads them."""
        self._pending.append((step, loss.detach(), data_loss.detach()))

    def check_loss(self, step: int, loss: float, data_loss: float) -> None:
        """The step's total loss and its data part, as numbers."""
        if not math.isfinite(loss):
            raise self._stop(f"the loss became {loss}", step)
        if self.first_loss is None:
            self.first_loss = data_loss
        elif data_loss > LOSS_GROWTH * max(self.first_loss, 1.0):
            raise self._stop(f"the loss grew to {data_loss:.3g}", step,
                             f", over {LOSS_GROWTH:g}x its first value {self.first_loss:.3g}")

    def due(self, step: int) -> bool:
        return step % CHECK_EVERY == 0

    def check_parameters(self, step: int, parameters: list[torch.nn.Parameter],
                         gradients: bool = True) -> None:
        """The losses recorded since the last check, in step order, then finite gradients,
        finite weights, and a weights' norm that has not exploded; one host sync for all.
        Called after backward, before the optimiser step, and (``gradients=False``: they were
        applied already) after a run's last step, so a task shorter than ``CHECK_EVERY`` steps
        is checked too."""
        pending, self._pending = self._pending, []
        device = parameters[0].device if parameters else (
            pending[0][1].device if pending else torch.device("cpu"))
        grads = [p.grad.detach() for p in parameters if p.grad is not None] if gradients else []
        norms = [total_norm([p.detach() for p in parameters], device), total_norm(grads, device)]
        losses = [t.reshape(()).to(device, torch.float32) for _, *pair in pending for t in pair]
        *values, weights, grad = torch.stack(losses + norms).tolist()
        for index, (loss_step, _, _) in enumerate(pending):
            self.check_loss(loss_step, values[2 * index], values[2 * index + 1])
            self.last_loss = values[2 * index]
        if not parameters:
            return
        if not math.isfinite(grad):
            raise self._stop("the gradients became NaN or infinite", step)
        if not math.isfinite(weights):
            raise self._stop("the weights became NaN or infinite", step)
        if self.first_norm is None:
            self.first_norm = weights
        elif weights > NORM_GROWTH * max(self.first_norm, 1.0):
            raise self._stop(f"the weights' norm grew to {weights:.3g}", step,
                             f", over {NORM_GROWTH:g}x its value {self.first_norm:.3g} at the "
                             "start of training")
