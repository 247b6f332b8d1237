"""Embedded sources and the checks on a user's data."""

import subprocess
import sys

import pytest
import torch

from forgetless.data.sources import Source, load_source
from forgetless.errors import ConfigurationError, DataError


def test_embedded_mnist_second_load_is_fast(tmp_path):
    code = ("import time, os; from forgetless.data.sources import load_source; "
            "load_source('mnist'); t = time.perf_counter(); s = load_source('mnist'); "
            "print(time.perf_counter() - t, s.train_x.shape[0], float(s.train_x.max()))")
    env = {"FORGETLESS_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    assert (tmp_path / "mnist5k-v1.npz").exists()
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env,
                         capture_output=True, text=True).stdout.split()
    assert float(out[0]) < 0.5 and out[1] == "4000" and float(out[2]) == 1.0


def test_digits_source():
    digits = load_source("digits")
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.train_x.shape[0] + digits.test_x.shape[0] == 1797
    assert 0.0 <= float(digits.train_x.min()) and float(digits.train_x.max()) <= 1.0


def test_options_a_source_does_not_take_are_refused():
    with pytest.raises(ConfigurationError, match="does not take"):
        load_source("mnist", data_dir="/tmp")


@pytest.mark.parametrize("x, y, message", [
    (torch.rand(4, 3), torch.tensor([0, 1, 2]), "4 inputs"),
    (torch.rand(4, 3), torch.tensor([0, 1, -1, 0]), "negative label"),
    (torch.rand(4, 3), torch.tensor([0.0, 1.5, 0.0, 1.0]), "1.5 .sample 1., not a whole number"),
    (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), torch.tensor([0, 1]), "NaN or infinite"),
    (torch.rand(0, 3), torch.tensor([], dtype=torch.long), "empty"),
    (torch.rand(4), torch.tensor([0, 1, 0, 1]), "at least 2 dimensions"),
    (torch.randint(0, 255, (4, 3)), torch.tensor([0, 1, 0, 1]), "float"),
])
def test_bad_user_tensors_get_a_clear_error(x, y, message):
    with pytest.raises(DataError, match=message):
        Source.from_tensors(x, y, x, y)


def test_finite_inputs_whose_sum_overflows_are_accepted_and_one_infinity_is_not():
    """The finiteness check sums the inputs first (one pass); a sum that overflows on finite
    values must fall through to the exact check, not refuse the data."""
    huge = torch.full((4, 3), 3e38)  # finite, but the float32 sum is inf
    y = torch.tensor([0, 1, 0, 1])
    assert Source.from_tensors(huge, y, huge, y).train_x.shape == (4, 3)
    huge[2, 1] = float("inf")
    with pytest.raises(DataError, match="NaN or infinite values in 1 sample"):
        Source.from_tensors(huge, y, huge, y)


def test_labels_outside_the_head_are_refused():
    x = torch.rand(4, 3)
    with pytest.raises(DataError, match="outside the head's 2 outputs"):
        Source.from_tensors(x, torch.tensor([0, 1, 2, 0]), x, torch.tensor([0, 1, 0, 1]),
                            num_classes=2)
