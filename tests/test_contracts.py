"""Contracts every registered strategy must keep, tested by looping over the registry: a new
strategy file is tested against every scenario it claims without anyone writing that test.

- it runs on every scenario it claims and refuses the others with a ScenarioError;
- its state survives a safe save/load (``torch.load(weights_only=True)``) mid-stream, and a
  fresh learner that loads it continues exactly like an uninterrupted one;
- its footprint is honest about raw data.
"""

import io

import pytest
import torch

from forgetless.data.stream import Stream
from forgetless.errors import ScenarioError
from forgetless.learner import Learner
from forgetless.strategies import STRATEGIES, Footprint, build_strategy

SCENARIOS = ("task", "domain", "class")


def serves(cls, scenario):
    return scenario in cls.scenarios and (scenario == "task" or not cls.needs_task_id)


def small_stream(streams, scenario, tasks=3):
    full = streams[scenario]
    return Stream(full.tasks[:tasks], scenario, full.num_outputs)


def learner_for(name, stream, seed=0):
    torch.manual_seed(seed)
    from forgetless.models import build_model

    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, build_strategy(name), iterations=4, batch_size=16, seed=seed)
    learner.bind(stream)
    return learner


CASES = [(name, scenario) for name in STRATEGIES.names() for scenario in SCENARIOS]


@pytest.mark.parametrize("name, scenario", CASES)
def test_runs_on_claimed_scenarios_and_refuses_the_rest(digits_streams, name, scenario):
    stream = small_stream(digits_streams, scenario)
    cls = STRATEGIES.get(name)
    if not serves(cls, scenario):
        with pytest.raises(ScenarioError, match=f"'{name}' does not serve"):
            learner_for(name, stream)
        return
    learner = learner_for(name, stream)
    fit = learner.fit(stream)
    assert len(fit.accuracy_matrix) == 3
    assert all(0.0 <= a <= 1.0 for row in fit.accuracy_matrix for a in row)
    footprint = learner.strategy.footprint()
    assert isinstance(footprint, Footprint) and footprint.bytes_held >= 0
    assert footprint.stores_raw_data == cls.stores_raw_data


def _safe_roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_state_restored_mid_stream_continues_identically(digits_streams, name):
    cls = STRATEGIES.get(name)
    scenario = next(s for s in ("class", "task", "domain") if serves(cls, s))
    stream = small_stream(digits_streams, scenario)

    uninterrupted = learner_for(name, stream)
    for task in stream:
        uninterrupted.learn(task)

    first_part = learner_for(name, stream)
    first_part.learn(stream[0])
    first_part.learn(stream[1])
    state = _safe_roundtrip(first_part.state_dict())

    resumed = learner_for(name, stream, seed=123)  # different init: everything must come back
    resumed.load_state_dict(state)
    resumed.learn(stream[2])

    assert resumed.evaluate(stream.tasks) == uninterrupted.evaluate(stream.tasks)
    for (key, a), (_, b) in zip(uninterrupted.model.state_dict().items(),
                                resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), f"{name}: {key} differs after resuming"
