"""What EWC, Online EWC, SI and MAS share: anchors (weights to stay near), importances (how much
each weight mattered), and the quadratic penalty ``sum_i weight_i * (w_i - anchor_i)^2``.

``AnchoredRegularizer`` is their common base: a subclass decides, in ``after_task``, the new
importances and anchor and calls ``self.anchor_to(...)``; the base returns the penalty at every
step, saves and restores the state, and reports the footprint.

In a task-free fit (``learner.task_free``: no task is announced, ``before_task`` and
``after_task`` are never called) the regularisers that can learn without boundaries (SI, Online
EWC) consolidate on their own clock instead: every ``consolidate_every`` optimiser steps
(``consolidation_due``), as if a task had ended there.

The penalty is computed with ``torch._foreach`` kernels and a hand-written gradient
(``2 * weight * (w - anchor)``): it touches each parameter a few times per step instead of the
dozen passes that autograd through ``sub -> pow -> mul -> sum`` takes, which keeps the cost of a
regulariser close to naive's (see benchmarks/regularization.md).
"""

from __future__ import annotations

import torch
from torch import nn

from forgetless.errors import ConfigurationError
from forgetless.strategies.base import (
    ALL_SCENARIOS,
    ANY_OBJECTIVE,
    Footprint,
    Strategy,
    tensor_bytes,
)

Tensors = dict[str, torch.Tensor]

#: Default of ``consolidate_every`` (SI, Online EWC in a task-free fit): shorter than a task of
#: the online benchmarks (80 steps on embedded split MNIST at batch 10), so each task is
#: consolidated before the next one has drifted far, and long enough that a period's measure
#: is more than one batch's noise. Of 10 / 30 / 50 / 100 it gave both the best mean accuracy
#: over the two tasks of a task-free digits stream, or within 0.3 points of it
#: (``benchmarks/task_free_regularization.py``; docs/regularization.md).
CONSOLIDATE_EVERY = 50


def trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The trainable parameters by name, in the model's order."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def snapshot(model: nn.Module) -> Tensors:
    """A detached copy of the trainable parameters (an anchor)."""
    return {n: p.detach().clone() for n, p in trainable(model).items()}


def check_count(name: str, value, allow_none: bool = False):
    """A sample count must be a positive whole number (or None, meaning all, where allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        every = " or None (all samples)" if allow_none else ""
        raise ConfigurationError(f"{name} must be a positive whole number{every}, got "
                                 f"{value!r}.")
    return value


def is_task_free(learner) -> bool:
    """Whether ``learner`` runs a task-free fit (no task boundaries announced)."""
    return bool(getattr(learner, "task_free", False))


def check_strength(name: str, value: float) -> float:
    """A regularisation strength must be a finite number >= 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}.") from None
    if not (value >= 0 and value != float("inf")):
        raise ConfigurationError(f"{name} must be a finite number >= 0, got {value!r}; 0 turns "
                                 "the regulariser off.")
    return value


class _Quadratic(torch.autograd.Function):
    """``sum_i weight_i (w_i - anchor_i)^2 + offset`` over lists of tensors, gradient by hand."""

    @staticmethod
    def forward(ctx, penalty: QuadraticPenalty, *params: torch.Tensor) -> torch.Tensor:
        diff = torch._foreach_sub(params, penalty.anchors)
        gradient = torch._foreach_mul(diff, penalty.twice_weights)  # d value / d w
        value = 0.5 * torch.stack([torch.dot(g.reshape(-1), d.reshape(-1))
                                   for g, d in zip(gradient, diff, strict=True)]).sum()
        ctx.gradient = gradient
        if penalty.keep_gradient:
            penalty.last_gradient = gradient
        return value + penalty.offset

    @staticmethod
    def backward(ctx, upstream: torch.Tensor):
        gradient = ctx.gradient
        if upstream.item() != 1.0:
            gradient = torch._foreach_mul(gradient, upstream)
        return (None, *gradient)


class QuadraticPenalty:
    """``sum_i weights_i * (w_i - anchors_i)^2 + offset`` on a model's trainable parameters.

    ``keep_gradient``: remember the gradient of the last evaluation (SI subtracts it to recover
    the gradient of the task's own loss)."""

    def __init__(self, model: nn.Module, weights: Tensors, anchors: Tensors,
                 offset: float = 0.0, keep_gradient: bool = False) -> None:
        params = trainable(model)
        missing = sorted(set(weights) - set(params))
        if missing:
            raise ConfigurationError(f"the importances name parameters {missing} that the model "
                                     "does not train; restore them into the same model.")
        self.names = [n for n in params if n in weights]
        self.params = [params[n] for n in self.names]
        self.twice_weights = [2 * weights[n] for n in self.names]
        self.anchors = [anchors[n] for n in self.names]
        self.offset = float(offset)
        self.keep_gradient = keep_gradient
        self.last_gradient: list[torch.Tensor] | None = None

    def __call__(self) -> torch.Tensor:
        return _Quadratic.apply(self, *self.params)


class AnchoredRegularizer(Strategy):
    """Base of the quadratic regularisers; see the module docstring."""

    family = "regularization"
    scenarios = ALL_SCENARIOS
    objectives = ANY_OBJECTIVE
    needs_task_id = False
    stores_raw_data = False
    anchors_parameters = True
    #: Names of the attributes (dicts of tensors, lists, numbers) that make up the state.
    state_attributes: tuple[str, ...] = ()
    #: What a state saved before the task-free clock existed stands for (older checkpoints).
    clock_defaults = {"steps_since_consolidation": 0, "period_open": False,
                      "running_fisher": None}

    quadratic: QuadraticPenalty | None = None
    keep_gradient = False
    #: Optimiser steps between consolidations in a task-free fit; None for the regularisers
    #: that need task boundaries (their ``boundary_reason`` says why).
    consolidate_every: int | None = None
    steps_since_consolidation = 0

    def anchor_to(self, weights: Tensors, anchors: Tensors, offset: float = 0.0) -> None:
        """From now on penalise ``sum weights * (w - anchors)^2 + offset``."""
        self.quadratic = QuadraticPenalty(self.learner.model, weights, anchors, offset,
                                          self.keep_gradient)

    def penalty(self, batch, logits):
        return None if self.quadratic is None else self.quadratic()

    def rebuild(self) -> None:
        """Recreate the penalty from the state (after ``load_state_dict``)."""

    def boundary_reason(self) -> str | None:
        if self.consolidate_every is not None:
            return None  # it consolidates every consolidate_every steps when no task ends
        return super().boundary_reason()

    def consolidation_due(self) -> bool:
        """Count one optimiser step of a task-free fit; True every ``consolidate_every`` steps
        (never in a task-based fit, where ``after_task`` consolidates)."""
        if self.consolidate_every is None or not is_task_free(self.learner):
            return False
        self.steps_since_consolidation += 1
        if self.steps_since_consolidation < self.consolidate_every:
            return False
        self.steps_since_consolidation = 0
        return True

    def task_loss_gradients(self, params: list[torch.Tensor], out: list[torch.Tensor]) -> None:
        """Write into ``out`` the gradient of this step's loss without this regulariser's own
        penalty (``.grad`` minus the penalty's gradient, kept with ``keep_gradient``): what
        the weights' importance is measured from, as in Zenke et al.'s code."""
        torch._foreach_copy_(out, [torch.zeros_like(p) if p.grad is None else p.grad
                                   for p in params])
        own = None if self.quadratic is None else self.quadratic.last_gradient
        if own is not None:
            torch._foreach_sub_(out, own)

    def without_released(self, importance: Tensors) -> Tensors:
        """``importance`` with 0 on the weights another part released for later tasks
        (PackNet's pruned weights), so the penalty does not pull freed capacity back."""
        released = self.learner.strategy.released_weights()
        return {n: v.masked_fill(released[n].to(v.device), 0) if n in released else v
                for n, v in importance.items()}

    def importance_generator(self, task) -> torch.Generator:
        """A private RNG for importance estimates, fixed by the run's seed and the task, so that
        estimating importances never shifts the learner's own random stream."""
        return torch.Generator().manual_seed(1_000_003 * self.learner.seed + task.task_id)

    def training_mask(self, task) -> torch.Tensor | None:
        """The output mask that training used on the task's samples."""
        return self.learner.output_mask.for_training(task.task_ids)

    def state_dict(self) -> dict:
        return {key: _clone(getattr(self, key)) for key in self.state_attributes}

    def load_state_dict(self, state: dict) -> None:
        state = {**{k: v for k, v in self.clock_defaults.items() if k in self.state_attributes},
                 **state}
        missing = sorted(set(self.state_attributes) - set(state))
        if missing:
            raise ConfigurationError(f"{self.name} state lacks {missing}; it was saved by a "
                                     "different strategy.")
        for key in self.state_attributes:
            setattr(self, key, _clone(state[key]))
        self.quadratic = None
        self.rebuild()

    def footprint(self) -> Footprint:
        held = [getattr(self, key) for key in self.state_attributes]
        if self.quadratic is not None:
            held += [self.quadratic.twice_weights, self.quadratic.anchors]
        return Footprint(unique_bytes(held), stores_raw_data=False)


def unique_bytes(objects) -> int:
    """Bytes of the distinct tensors in nested lists / dicts (a tensor held twice counts once)."""
    tensors: dict[tuple, torch.Tensor] = {}

    def visit(obj):
        if isinstance(obj, torch.Tensor):
            tensors[(obj.data_ptr(), obj.numel(), obj.dtype)] = obj
        elif isinstance(obj, dict):
            for v in obj.values():
                visit(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                visit(v)

    visit(objects)
    return tensor_bytes(list(tensors.values()))


def _clone(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clone(v) for v in value]
    return value
