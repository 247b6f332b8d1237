"""Checks on user data, run before any training, each failing with a message that names the fix."""

from __future__ import annotations

import torch

from forgetless.errors import DataError


def check_inputs(x: torch.Tensor, what: str) -> None:
    """Inputs must be a non-empty floating tensor of finite values."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{what} must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim < 2:
        raise DataError(
            f"{what} has shape {tuple(x.shape)}; expected (samples, features...) with at least "
            "2 dimensions. Add a feature dimension, e.g. x.unsqueeze(1)."
        )
    if x.shape[0] == 0:
        raise DataError(f"{what} is empty; every task needs at least one sample.")
    if not torch.is_floating_point(x):
        raise DataError(
            f"{what} has dtype {x.dtype}; convert it to float, e.g. x.float() / 255 for pixels."
        )
    bad = ~torch.isfinite(x)
    if bad.any():
        n = int(bad.any(dim=tuple(range(1, x.ndim))).sum())
        raise DataError(
            f"{what} holds NaN or infinite values in {n} sample(s); clean or drop them first."
        )


def check_labels(y: torch.Tensor, num_samples: int, num_classes: int | None, what: str) -> None:
    """Labels must be integers in [0, num_classes), one per sample."""
    if not isinstance(y, torch.Tensor):
        raise DataError(f"{what} must be a torch.Tensor, got {type(y).__name__}.")
    if y.ndim != 1:
        raise DataError(
            f"{what} has shape {tuple(y.shape)}; expected one integer label per sample, "
            "shape (samples,). For one-hot labels use y.argmax(1)."
        )
    if y.shape[0] != num_samples:
        raise DataError(
            f"{what} holds {y.shape[0]} labels for {num_samples} inputs; give one label per input."
        )
    if torch.is_floating_point(y) or y.dtype == torch.bool:
        raise DataError(f"{what} has dtype {y.dtype}; labels must be integers (y.long()).")
    if y.numel() and int(y.min()) < 0:
        raise DataError(f"{what} contains negative label {int(y.min())}; labels start at 0.")
    if num_classes is not None and y.numel() and int(y.max()) >= num_classes:
        raise DataError(
            f"{what} contains label {int(y.max())}, outside the head's {num_classes} outputs "
            f"(valid labels are 0..{num_classes - 1}); remap the labels or enlarge the head."
        )
