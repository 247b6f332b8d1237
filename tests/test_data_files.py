"""The on-disk loaders read tiny hand-written IDX and CIFAR files exactly, Fashion-MNIST is found
where Debian installs it, parsed IDX arrays are cached until a file changes, and every bad input
fails with a DataError that says what to do."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from forgetless.data import files
from forgetless.data.files import read_idx
from forgetless.data.sources import SOURCES, load_source
from forgetless.errors import ConfigurationError, DataError

N_TRAIN, N_TEST, H, W = 6, 4, 28, 28
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Parsed IDX arrays are cached; each test gets its own cache, outside the user's."""
    monkeypatch.setenv("FORGETLESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file: two zero bytes, type code, ndim, big-endian dims, big-endian data."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + np.asarray(array, dtype).tobytes()


def write(path, data: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def pixels(n: int, offset: int = 0) -> np.ndarray:
    return ((np.arange(n * H * W) + offset) % 256).astype(np.uint8).reshape(n, H, W)


TRAIN_Y = np.array([0, 1, 2, 3, 4, 9], np.uint8)
TEST_Y = np.array([5, 6, 7, 8], np.uint8)


def make_idx_dir(root, gz=False, dotted=False, skip=()):
    """The four MNIST files with known contents; ``dotted`` uses ``train-images.idx3-ubyte``."""
    root.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": pixels(N_TRAIN), "train-labels-idx1-ubyte": TRAIN_Y,
              "t10k-images-idx3-ubyte": pixels(N_TEST, 7), "t10k-labels-idx1-ubyte": TEST_Y}
    for name, array in arrays.items():
        if name in skip:
            continue
        if dotted:
            name = name.replace("-idx", ".idx")
        write(root / (name + (".gz" if gz else "")), idx_bytes(array), gz)
    return root


# ------------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dotted", [False, True])
def test_idx_round_trip(tmp_path, gz, dotted):
    src = files.load_idx(make_idx_dir(tmp_path / "mnist", gz=gz, dotted=dotted))
    assert src.name == "idx" and src.num_classes == 10
    assert src.train_x.shape == (N_TRAIN, 1, H, W) and src.test_x.shape == (N_TEST, 1, H, W)
    assert src.train_x.dtype == torch.float32 and src.train_y.dtype == torch.int64
    assert 0.0 <= float(src.train_x.min()) and float(src.train_x.max()) <= 1.0
    assert torch.equal(src.train_x[:, 0], torch.from_numpy(pixels(N_TRAIN)).float() / 255)
    assert torch.equal(src.test_x[:, 0], torch.from_numpy(pixels(N_TEST, 7)).float() / 255)
    assert src.train_y.tolist() == TRAIN_Y.tolist() and src.test_y.tolist() == TEST_Y.tolist()


def test_num_classes_is_largest_label_plus_one_over_both_splits(tmp_path):
    root = make_idx_dir(tmp_path)
    write(root / "t10k-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 2, 12], np.uint8)))
    assert files.load_idx(root).num_classes == 13


@pytest.mark.parametrize("code", [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E])
def test_read_idx_every_type_code(tmp_path, code):
    values = np.array([[0, 1, 2], [3, 100, 127]])
    out = read_idx(write(tmp_path / "a.idx", idx_bytes(values, code)))
    assert out.shape == (2, 3) and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, values)


def test_fashion_mnist_alias_and_registry(tmp_path):
    root = make_idx_dir(tmp_path / "fmnist", gz=True)
    assert files.load_fashion_mnist(root).name == "fashion-mnist"
    src = load_source("idx", data_dir=str(root))
    assert src.name == "idx" and src.train_x.shape == (N_TRAIN, 1, H, W)
    assert {"idx", "fashion-mnist", "cifar10", "cifar100"} <= set(SOURCES.names())
    assert load_source("fashion-mnist", data_dir=root).num_classes == 10


def test_fashion_mnist_is_found_in_the_shared_datasets_folder(tmp_path, monkeypatch):
    """Without data_dir the loader searches the shared folders in order and takes the first
    that holds all four files; a data_dir given still wins."""
    incomplete = make_idx_dir(tmp_path / "local" / "fashion-mnist",
                              skip=("t10k-labels-idx1-ubyte",))
    make_idx_dir(tmp_path / "share" / "fashion-mnist", gz=True)
    monkeypatch.setattr(files, "shared_dataset_dirs",
                        lambda: [tmp_path / "missing", incomplete.parent, tmp_path / "share"])
    src = load_source("fashion-mnist")
    assert src.name == "fashion-mnist" and src.num_classes == 10
    assert src.train_x.shape == (N_TRAIN, 1, H, W) and src.test_y.tolist() == TEST_Y.tolist()
    other = make_idx_dir(tmp_path / "mine")
    write(other / "t10k-labels-idx1-ubyte", idx_bytes(np.array([1, 1, 1, 1], np.uint8)))
    assert load_source("fashion-mnist", data_dir=other).test_y.tolist() == [1, 1, 1, 1]


def test_fashion_mnist_absent_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "shared_dataset_dirs", lambda: [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(DataError) as error:
        load_source("fashion-mnist")
    message, cli = str(error.value), error.value.for_cli()
    assert f"looked in {tmp_path / 'a' / 'fashion-mnist'}, {tmp_path / 'b' / 'fashion-mnist'}" \
        in message
    assert "sudo apt install dataset-fashion-mnist" in message and "data_dir=" in message
    assert "sudo apt install dataset-fashion-mnist" in cli and "--data-dir DIR" in cli


def test_the_cli_says_how_to_install_fashion_mnist_in_one_line(tmp_path, monkeypatch, capsys):
    from forgetless.cli import main

    monkeypatch.setattr(files, "shared_dataset_dirs", lambda: [tmp_path])
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--source", "fashion-mnist", "--epochs", "1", "--quiet", "--no-store"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: fashion-mnist is not installed")
    assert "sudo apt install dataset-fashion-mnist" in err and "--data-dir DIR" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("xdg, expected", [
    (None, ["/usr/local/share", "/usr/share"]), ("", ["/usr/local/share", "/usr/share"]),
    ("/opt/a:/opt/b/", ["/opt/a", "/opt/b/", "/usr/share"]),
    ("/usr/share/:/opt/a", ["/usr/share/", "/opt/a"]),
])
def test_shared_dataset_dirs_follow_xdg_data_dirs(monkeypatch, xdg, expected):
    if xdg is None:
        monkeypatch.delenv("XDG_DATA_DIRS", raising=False)
    else:
        monkeypatch.setenv("XDG_DATA_DIRS", xdg)
    assert files.shared_dataset_dirs() == [Path(e) / "datasets" for e in expected]


def test_parsed_idx_arrays_are_cached_until_a_file_changes(tmp_path, monkeypatch, private_cache):
    root = make_idx_dir(tmp_path / "mnist", gz=True)
    first = files.load_idx(root)
    assert len(list(private_cache.glob("idx-*.npz"))) == 1
    real_read_idx = files.read_idx

    def refuse(path):
        raise AssertionError(f"{path} parsed again although the cache holds it")

    monkeypatch.setattr(files, "read_idx", refuse)
    again = files.load_idx(root)
    assert torch.equal(again.train_x, first.train_x) and torch.equal(again.test_y, first.test_y)
    monkeypatch.setattr(files, "read_idx", real_read_idx)
    labels = root / "t10k-labels-idx1-ubyte.gz"
    write(labels, idx_bytes(np.array([9, 9, 9, 9], np.uint8)), gz=True)
    later = labels.stat().st_mtime_ns + 10**9  # an edit made a second later
    os.utime(labels, ns=(later, later))
    assert files.load_idx(root).test_y.tolist() == [9, 9, 9, 9]
    for cached in private_cache.glob("idx-*.npz"):
        cached.write_bytes(b"damaged")  # a damaged cache is parsed again, not trusted
    assert files.load_idx(root).test_y.tolist() == [9, 9, 9, 9]


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_the_installed_fashion_mnist_is_full_size():
    src = load_source("fashion-mnist")
    assert src.train_x.shape == (60_000, 1, 28, 28) and src.test_x.shape == (10_000, 1, 28, 28)
    assert src.num_classes == 10
    assert torch.bincount(src.train_y).tolist() == [6_000] * 10
    assert torch.bincount(src.test_y).tolist() == [1_000] * 10


def test_idx_bad_data_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist; pass data_dir"):
        files.load_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="is a file, not a directory"):
        files.load_idx(write(tmp_path / "f", b""))
    with pytest.raises(DataError, match="pass data_dir="):
        files.load_idx()


def test_idx_missing_file_lists_expected_and_found(tmp_path):
    root = make_idx_dir(tmp_path, skip=("t10k-labels-idx1-ubyte",))
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte; expected train-images") as e:
        files.load_idx(root)
    assert "found t10k-images-idx3-ubyte, train-images-idx3-ubyte" in str(e.value)


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x07\x01", b"PK\x03\x04zip", b"\x01\x00\x08\x01"])
def test_idx_bad_magic(tmp_path, data):
    with pytest.raises(DataError, match="is not an IDX file"):
        read_idx(write(tmp_path / "x", data))


def test_idx_truncated_and_overlong(tmp_path):
    good = idx_bytes(pixels(2))
    with pytest.raises(DataError, match="is truncated: its IDX header promises"):
        read_idx(write(tmp_path / "a", good[:-1]))
    with pytest.raises(DataError, match="ends inside its 16-byte IDX header"):
        read_idx(write(tmp_path / "b", good[:10]))
    with pytest.raises(DataError, match="has trailing bytes"):
        read_idx(write(tmp_path / "c", good + b"\x00"))
    with pytest.raises(DataError, match="if gzipped, is complete"):
        read_idx(write(tmp_path / "d.gz", gzip.compress(good)[:-10]))


def test_idx_count_mismatch(tmp_path):
    root = make_idx_dir(tmp_path)
    write(root / "train-labels-idx1-ubyte", idx_bytes(TRAIN_Y[:5]))
    with pytest.raises(DataError, match="holds 6 images but .* holds 5 labels; use the image"):
        files.load_idx(root)


def test_idx_swapped_files(tmp_path):
    root = make_idx_dir(tmp_path)
    write(root / "train-images-idx3-ubyte", idx_bytes(TRAIN_Y))
    with pytest.raises(DataError, match="is it a label file"):
        files.load_idx(root)


# ---------------------------------------------------------------------------------------- CIFAR


def cifar_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def dump(path, obj, protocol=pickle.DEFAULT_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def make_cifar10(root, protocol=pickle.DEFAULT_PROTOCOL):
    """Five train batches of 2 images (labels 0..9 in order) and a test batch of 4."""
    root.mkdir(parents=True)
    for i in range(5):
        batch = {b"batch_label": b"training batch", b"data": cifar_rows(2, i),
                 b"labels": [2 * i, 2 * i + 1]}
        dump(root / f"data_batch_{i + 1}", batch, protocol)
    dump(root / "test_batch", {b"data": cifar_rows(4, 9), b"labels": [3, 1, 4, 1]}, protocol)
    return root


def make_cifar100(root):
    root.mkdir(parents=True)
    dump(root / "train", {b"data": cifar_rows(6, 0), b"fine_labels": [0, 99, 5, 6, 7, 8],
                          b"coarse_labels": [0, 19, 1, 1, 2, 2]})
    dump(root / "test", {b"data": cifar_rows(4, 1), b"fine_labels": [1, 2, 3, 98],
                         b"coarse_labels": [3, 4, 5, 18]})
    return root


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_layout_and_values(tmp_path, protocol):
    src = files.load_cifar10(make_cifar10(tmp_path / "cifar-10-batches-py", protocol))
    assert src.name == "cifar10" and src.num_classes == 10
    assert src.train_x.shape == (10, 3, 32, 32) and src.test_x.shape == (4, 3, 32, 32)
    assert src.train_x.dtype == torch.float32 and src.train_y.dtype == torch.int64
    assert src.train_y.tolist() == list(range(10)) and src.test_y.tolist() == [3, 1, 4, 1]
    row = cifar_rows(2, 1)[1]  # data_batch_2, second image = train index 3
    for channel in range(3):  # 1024 red, then 1024 green, then 1024 blue, each row-major 32x32
        for r, c in [(0, 0), (0, 31), (1, 0), (31, 31), (17, 5)]:
            expected = row[channel * 1024 + r * 32 + c] / 255
            assert src.train_x[3, channel, r, c].item() == pytest.approx(expected)
    assert torch.equal(src.test_x.reshape(4, -1), torch.from_numpy(cifar_rows(4, 9)).float() / 255)


@pytest.mark.parametrize("labels, num_classes, train_y", [
    ("fine", 100, [0, 99, 5, 6, 7, 8]), ("coarse", 20, [0, 19, 1, 1, 2, 2])])
def test_cifar100_fine_and_coarse(tmp_path, labels, num_classes, train_y):
    src = files.load_cifar100(make_cifar100(tmp_path / "cifar-100-python"), labels=labels)
    assert src.num_classes == num_classes and src.train_y.tolist() == train_y
    assert src.train_x.shape == (6, 3, 32, 32)
    assert torch.equal(src.train_x.reshape(6, -1), torch.from_numpy(cifar_rows(6, 0)).float() / 255)


def test_cifar_parent_dir_and_registry(tmp_path):
    make_cifar10(tmp_path / "cifar-10-batches-py")
    make_cifar100(tmp_path / "cifar-100-python")
    assert len(load_source("cifar10", data_dir=tmp_path).train_y) == 10
    assert load_source("cifar100", data_dir=tmp_path, labels="coarse").name == "cifar100-coarse"


def test_cifar_missing_files_and_bad_option(tmp_path):
    root = make_cifar10(tmp_path / "c10")
    (root / "data_batch_3").unlink()
    with pytest.raises(DataError, match="lacks data_batch_3; expected data_batch_1, .* found"):
        files.load_cifar10(root)
    with pytest.raises(DataError, match="does not exist"):
        files.load_cifar100(tmp_path / "missing")
    with pytest.raises(ConfigurationError, match="use labels='fine'"):
        files.load_cifar100(tmp_path, labels="superfine")


@pytest.mark.parametrize("obj, match", [
    ({b"data": cifar_rows(2, 0)}, "not a CIFAR batch: expected a dict with keys b'data' and"),
    ([1, 2, 3], "not a CIFAR batch: .* found list"),
    ({b"data": cifar_rows(2, 0), b"labels": [1]}, "holds 2 images but 1 labels"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, "rows of 3072 pixels"),
    ({b"data": cifar_rows(2, 0), b"labels": [1, 12]}, "outside 0..9"),
])
def test_cifar_bad_batches(tmp_path, obj, match):
    root = make_cifar10(tmp_path / "c10")
    dump(root / "test_batch", obj)
    with pytest.raises(DataError, match=match):
        files.load_cifar10(root)


def test_cifar_not_a_pickle(tmp_path):
    root = make_cifar10(tmp_path / "c10")
    (root / "data_batch_1").write_bytes(b"this is no pickle")
    with pytest.raises(DataError, match="cannot unpickle .* download and extract"):
        files.load_cifar10(root)


class _Evil:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("make", [
    lambda marker: _Evil(os.system, (f"touch {marker}",)),
    lambda marker: _Evil(exec, (f"open({str(marker)!r}, 'w').close()",)),
    lambda marker: _Evil(__import__("codecs").encode, (b"x" * 10, "zlib_codec")),
])
def test_malicious_pickle_is_refused_unrun(tmp_path, make):
    root = make_cifar10(tmp_path / "c10")
    marker = tmp_path / "pwned"
    dump(root / "data_batch_2", {b"data": make(marker), b"labels": [0, 1]}, protocol=2)
    with pytest.raises(DataError, match="never (needs|does); the file is not a genuine CIFAR"):
        files.load_cifar10(root)
    assert not marker.exists()
