"""Datasets a user already has on disk: MNIST-style IDX files and CIFAR's "python version" batches.

Nothing is downloaded. The CIFAR batches are pickles, so they are read with an unpickler that can
rebuild numpy arrays and nothing else: a doctored batch file fails with a ``DataError`` instead of
running code.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import os
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch

from forgetless.data.sources import SOURCES, Source, cached_arrays
from forgetless.errors import ConfigurationError, DataError

PathLike = str | os.PathLike

# --------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)
# --------------------------------------------------------------------------------------------

#: IDX type codes (third magic byte) -> big-endian numpy dtypes.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

#: The four MNIST-layout files, as (split prefix, kind) -> canonical file name.
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("t10k", "images"): "t10k-images-idx3-ubyte",
    ("t10k", "labels"): "t10k-labels-idx1-ubyte",
}
#: The split prefixes in IDX_FILES: train, then test.
IDX_SPLITS = ("train", "t10k")


def read_idx(path: PathLike) -> np.ndarray:
    """Parse one IDX file (raw or gzip-compressed) into a native-endian numpy array.

    The header is checked against the file size, so a truncated download fails here with a clear
    message rather than as a reshape error deep inside numpy."""
    path = Path(path)
    raw = _read_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(
            f"{path} is not an IDX file (it starts with bytes {raw[:4].hex(' ') or 'nothing'}, "
            "not 00 00 <type> <ndim>); point data_dir at the extracted MNIST-format files."
        )
    dtype, ndim = np.dtype(IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path} is truncated: it ends inside its {header}-byte IDX header; "
            "download or extract it again."
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=object)) * dtype.itemsize
    if len(raw) != expected:
        problem = "is truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(
            f"{path} {problem}: its IDX header promises {expected} bytes for an array of shape "
            f"{dims} ({dtype.name}) but the file holds {len(raw)}; download or extract it again."
        )
    # astype copies into native byte order, which also makes the array writable for torch.
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(
        dtype.newbyteorder("="))


def _read_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip (judged by content, not by suffix)."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"cannot read {path} ({exc}); check the file exists and, if gzipped, is complete."
        ) from None
    return raw


def _idx_candidates(canonical: str) -> list[str]:
    """Accepted spellings: ``train-images-idx3-ubyte`` or ``train-images.idx3-ubyte``, each
    optionally ``.gz``."""
    head, _, tail = canonical.rpartition("-idx")
    names = [canonical, f"{head}.idx{tail}"]
    return names + [n + ".gz" for n in names]


def _find_idx_file(root: Path, canonical: str) -> Path | None:
    for candidate in _idx_candidates(canonical):
        if (root / candidate).is_file():
            return root / candidate
    return None


def _idx_split(files: dict[tuple[str, str], Path], prefix: str, name: str):
    """One split's uint8 images (N, H, W) and int64 labels, with their counts checked."""
    img_path, lbl_path = files[prefix, "images"], files[prefix, "labels"]
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{name}: {img_path} holds a {images.dtype} array of shape {images.shape}; expected "
            "unsigned bytes of shape (images, height, width) - is it a label file?"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{name}: {lbl_path} holds a {labels.dtype} array of shape {labels.shape}; expected "
            "integer labels of shape (labels,) - is it an image file?"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{name}: {img_path.name} holds {len(images)} images but {lbl_path.name} holds "
            f"{len(labels)} labels; use the image and label files of the same download."
        )
    return images, labels.astype(np.int64)


def _files_identity(paths) -> str:
    """A digest of the files' resolved paths, sizes and modification times: it changes when a
    file is replaced or edited, so it keys the parsed-array cache (as ``make`` judges staleness)
    without reading the files."""
    h = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        h.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _images(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).float().div_(255).unsqueeze(1)


@SOURCES.register("idx")
def load_idx(data_dir: PathLike | None = None, name: str = "idx") -> Source:
    """MNIST-format data (MNIST, Fashion-MNIST, KMNIST...) from the four standard IDX files in
    ``data_dir``; ``num_classes`` is the largest label + 1 over both splits. The parsed arrays
    are cached (``cached_arrays``), keyed by the files' identity, so only the first load of a
    folder pays for the decompression."""
    root = _check_dir(data_dir, name, "the folder holding train-images-idx3-ubyte and friends")
    files = {key: _find_idx_file(root, canonical) for key, canonical in IDX_FILES.items()}
    missing = [IDX_FILES[key] for key, path in files.items() if path is None]
    if missing:
        raise _missing_files(name, root, list(IDX_FILES.values()), missing,
                             "each may end in .gz or read '.idx' for '-idx'")

    def parse() -> dict[str, np.ndarray]:
        (train_x, train_y), (test_x, test_y) = (_idx_split(files, p, name) for p in IDX_SPLITS)
        return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}

    arrays = cached_arrays(f"idx-v1-{_files_identity(files.values())}.npz", parse)
    labels = [y for y in (arrays["train_y"], arrays["test_y"]) if y.size]
    num_classes = max((int(y.max()) for y in labels), default=-1) + 1
    return Source(name, _images(arrays["train_x"]), torch.from_numpy(arrays["train_y"]),
                  _images(arrays["test_x"]), torch.from_numpy(arrays["test_y"]), num_classes)


def shared_dataset_dirs() -> list[Path]:
    """The system's shared dataset folders: ``datasets`` under each ``$XDG_DATA_DIRS`` entry
    (default ``/usr/local/share:/usr/share``), with ``/usr/share`` always searched, since that
    is where Debian's ``dataset-*`` packages install (``/usr/share/datasets/fashion-mnist``)."""
    entries = [e for e in os.environ.get("XDG_DATA_DIRS", "").split(":") if e]
    entries = entries or ["/usr/local/share", "/usr/share"]
    if "/usr/share" not in [e.rstrip("/") for e in entries]:
        entries.append("/usr/share")
    return [Path(e) / "datasets" for e in entries]


def _installed_idx_dir(name: str) -> Path:
    """The first ``<shared dataset folder>/name`` holding all four IDX files."""
    searched = [folder / name for folder in shared_dataset_dirs()]
    for root in searched:
        if root.is_dir() and all(_find_idx_file(root, f) for f in IDX_FILES.values()):
            return root
    looked = ", ".join(str(r) for r in searched)
    fix = f"install it with `sudo apt install dataset-{name}` (Debian, Ubuntu)"
    raise DataError(
        f"{name} is not installed on this system (looked in {looked}); {fix} or pass "
        "data_dir=... naming a folder with its four IDX files.",
        cli=f"{name} is not installed on this system (looked in {looked}); {fix} or give "
            "--data-dir DIR naming a folder with its four IDX files.")


@SOURCES.register("fashion-mnist")
def load_fashion_mnist(data_dir: PathLike | None = None) -> Source:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; 60,000 train / 10,000 test 28x28 images of
    10 kinds of clothing) in MNIST's IDX layout: from ``data_dir``, else from the system's
    shared dataset folders, where Debian's package ``dataset-fashion-mnist`` installs it."""
    return load_idx(data_dir or _installed_idx_dir("fashion-mnist"), name="fashion-mnist")


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 ("python version")
# --------------------------------------------------------------------------------------------

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
CIFAR100_LABELS = {"fine": (b"fine_labels", 100), "coarse": (b"coarse_labels", 20)}


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``codecs.encode`` as pickles of bytes use it; other codecs (zlib, bz2...) are refused so
    a batch cannot smuggle a decompression bomb through the codec registry."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise DataError(
            f"the pickle calls codecs.encode with {encoding!r}, which a CIFAR batch never does; "
            "the file is not a genuine CIFAR batch - download it again."
        )
    return codecs.encode(text, encoding)


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The only globals a pickled numpy array needs, under their numpy 1 and numpy 2 names."""
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
        from numpy.core.numeric import _frombuffer
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,  # how bytes are pickled at protocol < 3
        ("codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[f"{package}.multiarray", "_reconstruct"] = _reconstruct  # protocol <= 4
        allowed[f"{package}.numeric", "_frombuffer"] = _frombuffer  # protocol 5
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, bytes and numpy arrays; refuses every other global, so a batch
    file cannot make the unpickler call arbitrary functions (os.system and the like)."""

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[module, name]
        except KeyError:
            raise DataError(
                f"the pickle asks to load {module}.{name}, which a CIFAR batch never needs; the "
                "file is not a genuine CIFAR batch - it was refused unread, download it again."
            ) from None


def _unpickle(path: Path) -> object:
    try:
        with path.open("rb") as f:
            return _ArrayUnpickler(f, encoding="bytes").load()
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError,
            AttributeError, IndexError, KeyError) as exc:
        raise DataError(
            f"cannot unpickle {path} ({type(exc).__name__}: {exc}); it is not a CIFAR "
            "python-version batch - download and extract the archive again."
        ) from None


def _cifar_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as uint8 images (N, 3, 32, 32) and int64 labels, its keys checked."""
    batch = _unpickle(path)
    if isinstance(batch, dict):  # files written under Python 3 may use str keys
        batch = {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        found = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(
            f"{path} is not a CIFAR batch: expected a dict with keys b'data' and {label_key!r}, "
            f"found {found}; point data_dir at the extracted python version of the dataset."
        )
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise DataError(
            f"{path}: b'data' is a {data.dtype} array of shape {data.shape}; a CIFAR batch holds "
            "uint8 rows of 3072 pixels - use the python version of the dataset."
        )
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise DataError(
            f"{path}: {label_key!r} has dtype {labels.dtype} and shape {labels.shape}; expected "
            "one integer label per image - use the python version of the dataset."
        )
    if len(data) != len(labels):
        raise DataError(
            f"{path} holds {len(data)} images but {len(labels)} labels; the file is damaged, "
            "extract it again."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{path}: {label_key!r} has labels in {labels.min()}..{labels.max()}, outside "
            f"0..{num_classes - 1}; is this a batch of the other CIFAR dataset?"
        )
    # Each row is 1024 red, then 1024 green, then 1024 blue values, each plane row-major 32x32.
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar_split(root: Path, files, label_key: bytes, num_classes: int):
    """Concatenated batches as float images in [0, 1] and int64 labels."""
    parts = [_cifar_batch(root / f, label_key, num_classes) for f in files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(x).float().div_(255), torch.from_numpy(y)


def _cifar_root(data_dir, name: str, subdir: str, required: list[str]) -> Path:
    """``data_dir`` itself, or its ``subdir`` child when that is where the batches are."""
    root = _check_dir(data_dir, name, f"the extracted {subdir} folder or its parent")
    if not all((root / f).is_file() for f in required) and (root / subdir).is_dir():
        root = root / subdir
    missing = [f for f in required if not (root / f).is_file()]
    if missing:
        raise _missing_files(name, root, required, missing,
                             f"extract the python version archive, which creates {subdir}/")
    return root


@SOURCES.register("cifar10")
def load_cifar10(data_dir: PathLike | None = None) -> Source:
    """CIFAR-10 from ``cifar-10-batches-py`` (data_batch_1..5 train, test_batch test)."""
    required = [*CIFAR10_TRAIN, CIFAR10_TEST]
    root = _cifar_root(data_dir, "cifar10", "cifar-10-batches-py", required)
    train = _cifar_split(root, CIFAR10_TRAIN, b"labels", 10)
    test = _cifar_split(root, [CIFAR10_TEST], b"labels", 10)
    return Source("cifar10", *train, *test, 10)


@SOURCES.register("cifar100")
def load_cifar100(data_dir: PathLike | None = None, labels: str = "fine") -> Source:
    """CIFAR-100 from ``cifar-100-python`` (train, test); ``labels="coarse"`` gives the 20
    superclasses instead of the 100 fine classes."""
    if labels not in CIFAR100_LABELS:
        raise ConfigurationError(
            f"cifar100: labels={labels!r} is not an option; use labels='fine' (100 classes) or "
            "labels='coarse' (20 superclasses)."
        )
    label_key, num_classes = CIFAR100_LABELS[labels]
    name = "cifar100" if labels == "fine" else "cifar100-coarse"
    root = _cifar_root(data_dir, name, "cifar-100-python", ["train", "test"])
    train = _cifar_split(root, ["train"], label_key, num_classes)
    test = _cifar_split(root, ["test"], label_key, num_classes)
    return Source(name, *train, *test, num_classes)


# --------------------------------------------------------------------------------------------
# Shared checks
# --------------------------------------------------------------------------------------------


def _check_dir(data_dir, name: str, what: str) -> Path:
    if data_dir is None:
        raise DataError(f"{name} reads files from disk; pass data_dir=... naming {what}.",
                        cli=f"{name} reads files from disk; give --data-dir DIR naming {what}.")
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DataError(
            f"{name}: data_dir {root} does not exist; pass data_dir=... naming {what}.",
            cli=f"{name}: --data-dir {root} does not exist; give --data-dir DIR naming {what}.")
    if not root.is_dir():
        raise DataError(
            f"{name}: data_dir {root} is a file, not a directory; pass the folder that holds it."
        )
    return root


def _missing_files(name: str, root: Path, expected: list[str], missing: list[str],
                   hint: str) -> DataError:
    found = sorted(p.name for p in root.iterdir())
    shown = ", ".join(found[:20]) + (f" (+{len(found) - 20} more)" if len(found) > 20 else "")
    return DataError(
        f"{name}: {root} lacks {', '.join(missing)}; expected {', '.join(expected)} ({hint}) "
        f"but found {shown or 'nothing'}."
    )
