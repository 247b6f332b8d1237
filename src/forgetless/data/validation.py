"""Checks on user data, run before any training, each failing with a message that names the fix."""

from __future__ import annotations

import numpy as np
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
    if bool(torch.isfinite(x.sum())):  # one reduction instead of a mask as big as x: a NaN or
        return  # an infinity anywhere makes the sum non-finite (an overflow goes on below)
    bad = ~torch.isfinite(x)
    if bad.any():
        n = int(bad.any(dim=tuple(range(1, x.ndim))).sum())
        raise DataError(
            f"{what} holds NaN or infinite values in {n} sample(s); clean or drop them first."
        )


def input_tensor(x, what: str) -> torch.Tensor:
    """A user's inputs as a tensor: a tensor as given, a NumPy array converted; anything else
    (a list of per-sample tensors, say) refused with the fix."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    hint = (" (a list of per-sample tensors: torch.stack(samples))"
            if isinstance(x, (list, tuple)) else "")
    raise DataError(f"{what} must be a torch.Tensor or a NumPy array, got "
                    f"{type(x).__name__}; convert it first{hint}.")


def check_labels(y: torch.Tensor, num_samples: int, num_classes: int | None, what: str) -> None:
    """Labels must be integers in [0, num_classes), one per sample."""
    if not isinstance(y, torch.Tensor):
        raise DataError(f"{what} must be a torch.Tensor, got {type(y).__name__}.")
    _check_one_label_per_sample(y, what)
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


def _check_one_label_per_sample(y: torch.Tensor, what: str) -> None:
    if y.ndim != 1:
        raise DataError(
            f"{what} has shape {tuple(y.shape)}; expected one integer label per sample, "
            "shape (samples,). For one-hot labels use y.argmax(1)."
        )


def label_tensor(labels, what: str) -> torch.Tensor:
    """A user's labels (a tensor, an array, or a sequence of numbers or 0-d tensors) as a long
    tensor of class numbers.

    The one gate for user labels (``Source.from_tensors``, ``Source.from_datasets``,
    ``Stream.from_tasks``), so every path accepts the same: integers, and floats that are whole
    numbers (3.0, as numpy and pandas often store classes). It refuses strings, None, booleans,
    fractional floats (3.7 must not silently become 3) and one-hot rows."""
    if isinstance(labels, (list, tuple)):
        labels = [v.tolist() if isinstance(v, (torch.Tensor, np.ndarray, np.generic)) else v
                  for v in labels]
    try:
        y = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(_first_non_number(labels, what)) from None
    if y.dtype == torch.bool:
        raise DataError(f"{what} are booleans; labels must be integer class numbers: use "
                        "y.long() if False and True are the classes 0 and 1.")
    _check_one_label_per_sample(y, what)
    if y.is_complex():
        raise DataError(f"{what} has dtype {y.dtype}; labels must be integers (y.long()).")
    if torch.is_floating_point(y):
        fractional = ~torch.isfinite(y) | (y != y.round())
        if fractional.any():
            i = int(fractional.nonzero()[0])
            raise DataError(
                f"{what} holds {float(y[i]):g} (sample {i}), not a whole number; labels must "
                "be integers 0, 1, 2... (class numbers), not scores: round or map them first.")
    return y.long()


def _first_non_number(labels, what: str) -> str:
    try:
        items = list(np.asarray(labels, dtype=object).ravel())
    except (TypeError, ValueError):
        items = list(labels) if isinstance(labels, (list, tuple)) else [labels]
    index, bad = next(((i, v) for i, v in enumerate(items)
                       if isinstance(v, bool) or not isinstance(v, (int, float, np.number))),
                      (0, labels))
    return (f"{what}: label {bad!r} (sample {index}) is not a class number; labels must be "
            "integers 0, 1, 2...: give every sample one, mapping class names to numbers "
            "first (e.g. {name: i for i, name in enumerate(sorted(set(names)))}).")


def check_token_ids(x: torch.Tensor, what: str, allow_empty: bool = False) -> None:
    """Text inputs (``forgetless.data.text``): a (samples, length) integer tensor of token ids,
    -1 for padding."""
    if x.ndim != 2:
        raise DataError(f"{what} has shape {tuple(x.shape)}; token ids must be (samples, "
                        "length), padded with -1 (forgetless.data.text.pad_rows).")
    if x.shape[0] == 0 and not allow_empty:
        raise DataError(f"{what} is empty; every task needs at least one sample.")
    if x.numel() and int(x.min()) < -1:
        raise DataError(f"{what} holds token id {int(x.min())}; ids are >= 0, with -1 as "
                        "padding.")


def check_language_targets(y: torch.Tensor, x: torch.Tensor, what: str) -> None:
    """Language-modelling targets: one per input position, token ids or -100 (no loss)."""
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise DataError(f"{what} has shape {shape} for inputs {tuple(x.shape)}; a language "
                        "model's targets are aligned with its inputs (y[:, t] is the token to "
                        "predict at t, -100 where none): forgetless.data.text."
                        "encode_language_modelling builds them.")
    if torch.is_floating_point(y) or (y.numel() and int(y.min()) < -100):
        raise DataError(f"{what} must hold integer token ids, or -100 where no loss is taken.")
