"""What the weight-space strategies share: copies of the trainable parameters by name, task
vectors (``theta_task - theta_start``), and writing a combination back into the model.

Only trainable parameters (``p.requires_grad``) are copied and combined: with a frozen backbone
or LoRA adapters only those are touched. Buffers (BatchNorm running statistics) are left as the
fine-tuning ended. Weights are written in place (``Parameter.copy_`` under ``no_grad``), so the
model keeps the same parameter objects: an optimiser built over them (the Learner rebuilds one
per task by default, or keeps it with ``reset_optimizer=False``) stays valid.
"""

from __future__ import annotations

import torch
from torch import nn

from forgetless.errors import ConfigurationError
from forgetless.strategies.regularization.quadratic import Tensors, snapshot, trainable

__all__ = ["Tensors", "checked_task_vector", "copied", "snapshot", "write_weights"]


def checked_task_vector(model: nn.Module, start: Tensors, strategy: str) -> Tensors:
    """``theta - start`` per trainable parameter of ``model``; the trainable parameters must be
    the ones ``start`` was taken of (a part that adds or unfreezes parameters mid-stream leaves
    them without a starting point)."""
    params = trainable(model)
    if sorted(params) != sorted(start):
        added = sorted(set(params) - set(start))
        gone = sorted(set(start) - set(params))
        raise ConfigurationError(
            f"{strategy} keeps the trainable parameters the stream started with, but the model "
            f"now trains {added or 'none'} more and {gone or 'none'} fewer; keep the same "
            "parameters trainable for the whole stream (freeze or wrap the model before it).")
    return {n: p.detach() - start[n] for n, p in params.items()}


@torch.no_grad()
def write_weights(model: nn.Module, weights: Tensors) -> None:
    """Copy ``weights`` into the model's trainable parameters of the same names, in place."""
    params = trainable(model)
    for name, value in weights.items():
        params[name].copy_(value)


def copied(tensors: Tensors | None, like: nn.Module | None = None) -> Tensors | None:
    """A detached copy of ``tensors`` (None stays None); with ``like``, on the device of the
    model's parameter of the same name (a checkpoint may be loaded on another device)."""
    if tensors is None:
        return None
    params = {} if like is None else dict(like.named_parameters())
    return {n: v.detach().clone().to(params[n].device) if n in params else v.detach().clone()
            for n, v in tensors.items()}
