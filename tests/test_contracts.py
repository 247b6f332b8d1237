"""Contracts every registered strategy must keep, tested by looping over the registry: a new
strategy file is tested against every scenario it claims without anyone writing that test.

- it runs on every scenario it claims and refuses the others with a ScenarioError;
- its state survives a safe save/load (``torch.load(weights_only=True)``) mid-stream, and a
  fresh learner that loads it continues exactly like an uninterrupted one;
- its footprint is honest about raw data.
"""

import pytest
import torch

from forgetless.errors import ScenarioError
from forgetless.strategies import STRATEGIES, Footprint
from strategy_helpers import (
    assert_same_model,
    first_served_scenario,
    learner_for,
    safe_roundtrip,
    serves,
    skip_unless_installed,
    small_stream,
    state_bytes,
)

SCENARIOS = ("task", "domain", "class")


CASES = [(name, scenario) for name in STRATEGIES.names() for scenario in SCENARIOS]


@pytest.mark.parametrize("name, scenario", CASES)
def test_runs_on_claimed_scenarios_and_refuses_the_rest(digits_streams, name, scenario):
    skip_unless_installed(name)
    stream = small_stream(digits_streams, scenario)
    cls = STRATEGIES.get(name)
    if not serves(cls, scenario):
        with pytest.raises(ScenarioError, match=f"'{name}' does not serve"):
            learner_for(name, stream)
        return
    learner = learner_for(name, stream)
    before = [p.detach().clone() for p in learner.model.parameters()]
    fit = learner.fit(stream)
    assert len(fit.accuracy_matrix) == 3 and learner.tasks_learned == [0, 1, 2]
    after = learner.model.parameters()  # PNN/HAT add parameters: compare the first ones
    changed = any(not torch.equal(a, p) for a, p in zip(before, after, strict=False))
    assert changed == cls.trains_model  # frozen-feature learners leave the model untouched
    footprint = learner.strategy.footprint()
    assert isinstance(footprint, Footprint)
    assert footprint.stores_raw_data == cls.stores_raw_data
    # what it keeps to continue later, it holds (a few bytes of bookkeeping aside); holding
    # nothing is claimed only by a strategy that keeps nothing
    kept = state_bytes(learner.strategy.state_dict())
    assert footprint.bytes_held >= 0.99 * kept
    assert footprint.bytes_held > 0 or (kept == 0 and not cls.stores_raw_data)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_state_restored_mid_stream_continues_identically(digits_streams, name):
    skip_unless_installed(name)
    stream = small_stream(digits_streams, first_served_scenario(name))

    uninterrupted = learner_for(name, stream)
    for task in stream:
        uninterrupted.learn(task)

    first_part = learner_for(name, stream)
    first_part.learn(stream[0])
    first_part.learn(stream[1])
    state = safe_roundtrip(first_part.state_dict())

    resumed = learner_for(name, stream, seed=123)  # different init: everything must come back
    resumed.load_state_dict(state)
    resumed.learn(stream[2])

    assert_same_model(uninterrupted, resumed, stream.tasks, name)
