"""WiSE-FT: interpolate the fine-tuned weights back toward the weights the stream started from
(Wortsman et al. 2022, "Robust fine-tuning of zero-shot models", CVPR).

The paper fine-tunes a pretrained (zero-shot) model once and uses
``(1 - alpha) * theta_zero_shot + alpha * theta_fine_tuned``: the mixture keeps most of the
fine-tuned accuracy and much of the pretrained model's robustness. Here the starting weights are
those the model has when the first task begins (the pretrained model), and after every task the
model becomes ``(1 - alpha) * start + alpha * fine_tuned`` over its trainable parameters; the
next task fine-tunes that interpolated model. So an update learned at task ``t`` is kept with
weight ``alpha`` at once and ``alpha^k`` after ``k`` more tasks: the model stays within reach of
what it knew at the start (a pretrained LM's prior skills), at the price of learning each task
less. Task-agnostic: one model, no task id at test time. Holds one copy of the trainable
parameters (the start); buffers (BatchNorm statistics) stay as fine-tuning left them.
"""

from __future__ import annotations

import torch

from forgetless.errors import ConfigurationError
from forgetless.strategies import register
from forgetless.strategies.base import ALL_SCENARIOS, Footprint, Strategy, tensor_bytes
from forgetless.strategies.weight_space.task_vectors import (
    Tensors,
    checked_task_vector,
    copied,
    snapshot,
    write_weights,
)


@register("wise-ft")
class WiseFT(Strategy):
    """Weight-space interpolation toward the stream's starting weights after every task
    (Wortsman et al. 2022); task-agnostic."""

    why_not_task_free = ("it pulls the weights back toward those the stream started from when "
                         "each task ends, which a task-free stream does not announce; use si or "
                         "online-ewc, which consolidate every consolidate_every steps.")

    meant_for_pretrained = True


    family = "weight-space"
    scenarios = ALL_SCENARIOS
    needs_task_id = False
    stores_raw_data = False
    anchors_parameters = True  # one start copy per trainable parameter: refuses PNN / HAT
    objectives = frozenset({"classification", "language_modelling"})

    def __init__(self, alpha: float = 0.5) -> None:
        """alpha: weight of the fine-tuned model in the mixture, in [0, 1]; 1 is naive
        fine-tuning, 0 never moves from the start. 0.5 is the fixed mixture the paper reports
        beside the best alpha per setting, and needs no tuning: a stream has no held-out data
        per task to choose alpha on."""
        try:
            alpha = float(alpha)
        except (TypeError, ValueError):
            raise ConfigurationError(f"alpha must be a number in [0, 1], got {alpha!r}.") from None
        if not 0.0 <= alpha <= 1.0:
            raise ConfigurationError(f"alpha must be in [0, 1] (1 is naive fine-tuning), got "
                                     f"{alpha!r}.")
        self.alpha = alpha
        self.start: Tensors | None = None

    def before_task(self, task) -> None:
        if self.start is None:
            self.start = snapshot(self.learner.model)

    def after_task(self, task) -> None:
        moved = checked_task_vector(self.learner.model, self.start, self.name)
        write_weights(self.learner.model, {n: torch.add(self.start[n], tau, alpha=self.alpha)
                                           for n, tau in moved.items()})

    def state_dict(self) -> dict:
        return {"start": copied(self.start)}

    def load_state_dict(self, state: dict) -> None:
        if "start" not in state:
            raise ConfigurationError("wise-ft state lacks its starting weights; it was saved by a "
                                     "different strategy.")
        self.start = copied(state["start"], like=self.learner.model)

    def footprint(self) -> Footprint:
        """Holds one copy of the trainable parameters: the starting weights."""
        return Footprint(tensor_bytes(self.start or {}), stores_raw_data=False)
