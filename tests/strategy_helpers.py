"""Helpers the registry-wide tests share: which scenario a strategy serves, a small stream and
learner, a safe state round trip, and the checks that a continued learner equals an
uninterrupted one."""

from __future__ import annotations

import io

import pytest
import torch

from forgetless.data.stream import Stream
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import STRATEGIES, build_strategy


def skip_unless_installed(name: str) -> None:
    """Skip a test of a strategy whose optional packages (``requires_packages``, e.g. peft for
    the LoRA strategies, from the ``[llm]`` extra) are not installed."""
    for package in getattr(STRATEGIES.get(name), "requires_packages", ()):
        pytest.importorskip(package)


def serves(cls, scenario: str) -> bool:
    return scenario in cls.scenarios and (scenario == "task" or not cls.needs_task_id)


def first_served_scenario(name: str) -> str:
    """class, else task, else domain: the first scenario the strategy serves."""
    cls = STRATEGIES.get(name)
    return next(s for s in ("class", "task", "domain") if serves(cls, s))


def small_stream(streams, scenario: str, tasks: int = 3) -> Stream:
    full = streams[scenario]
    return Stream(full.tasks[:tasks], scenario, full.num_outputs)


def learner_for(name: str, stream: Stream, seed: int = 0) -> Learner:
    """A tiny MLP learner (4 steps per task) bound to ``stream``."""
    torch.manual_seed(seed)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, build_strategy(name), iterations=4, batch_size=16, seed=seed)
    learner.bind(stream)
    return learner


def state_bytes(state) -> int:
    """Bytes of every tensor in a (nested) strategy state."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(v) for v in state)
    return 0


def safe_roundtrip(state):
    """``state`` through torch.save and a ``weights_only`` load, as a checkpoint takes it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_same_model(expected: Learner, actual: Learner, tasks, name: str) -> None:
    """Same accuracies on ``tasks`` and bit-identical model weights."""
    assert actual.evaluate(tasks) == expected.evaluate(tasks)
    for (key, a), (_, b) in zip(expected.model.state_dict().items(),
                                actual.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), f"{name}: {key} differs"


def recorded_terms(ewc) -> list[tuple[dict, dict]]:
    """Every (Fisher, anchor) term ``ewc`` consolidates from now on, as it was given (EWC keeps
    only their merged quadratic)."""
    terms = []
    merge = ewc.consolidate

    def recording(fisher, anchor):
        terms.append(({n: v.clone() for n, v in fisher.items()},
                      {n: v.clone() for n, v in anchor.items()}))
        merge(fisher, anchor)

    ewc.consolidate = recording
    return terms
