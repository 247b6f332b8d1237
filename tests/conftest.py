"""Shared fixtures: small, fast streams from sklearn's 8x8 digits, a tiny MLP, and the devices
that device-sensitive tests run on."""

from __future__ import annotations

import pytest
import torch

from forgetless.data.benchmarks import build_stream
from forgetless.models import build_model


@pytest.fixture(scope="session")
def digits_streams():
    """Split digits (5 tasks of 2 classes) for each scenario, built once per session."""
    return {s: build_stream("split", s, tasks=5, source="digits", seed=0)
            for s in ("task", "domain", "class")}


def tiny_model(stream, hidden=(64,), seed=0, **options):
    torch.manual_seed(seed)
    return build_model("mlp", stream.input_shape, stream.num_outputs, hidden=hidden, **options)


@pytest.fixture
def make_model():
    return tiny_model


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """Each device a tensor path can take: ``cpu`` always, ``cuda`` when a GPU is present (so
    the GPU path is exercised on any machine that has one, and skipped, saying so, elsewhere)."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    return torch.device(request.param)
