"""Divergence is caught whatever the optimiser: a loss or weights that explode stop the run
with the task, the step and the fix; every strategy's tuned defaults train without a false
alarm."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from forgetless.data.stream import Stream
from forgetless.errors import TrainingDivergedError
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import STRATEGIES, Strategy, build_strategy
from strategy_helpers import serves, skip_unless_installed

CASES = [(name, scenario) for name in STRATEGIES.names()
         for scenario in ("task", "domain", "class") if serves(STRATEGIES.get(name), scenario)]


@pytest.mark.parametrize("name, scenario", CASES)
def test_tuned_defaults_of_every_strategy_raise_no_false_alarm(digits_streams, name, scenario):
    """Three tasks of 30 steps with the hyper-parameters tuned for split. EWC's lambda of 1e6
    (domain-incremental) makes the total loss grow over the third task: a guard on the total
    loss at 10x raises a false alarm on ewc and online-ewc here (checked by hand), the
    cross-entropy guard does not (benchmarks/divergence_margins.py measures the margins)."""
    skip_unless_installed(name)
    full = digits_streams[scenario]
    stream = Stream(full.tasks[:3], scenario, full.num_outputs)
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs)
    strategy = build_strategy(name, benchmark="split", scenario=scenario)
    fit = Learner(model, strategy, iterations=30, batch_size=32, progress=False).fit(stream)
    assert len(fit.accuracy_matrix) == 3


@pytest.mark.parametrize("scenario, sign", [
    # domain: the cross-entropy explodes at once
    ("domain", r"the loss grew to [\d.]+e\+1\d at task 0, step 1, over 100x its first value 0\.7"),
    # class: the task's two units separate at any scale, so the loss falls to 0 while the
    # weights explode; the check after the task's last (third) step sees them
    ("class", r"the weights' norm grew to [\d.]+e\+0[6-9] at task 0, step 3, over 100x its "
              r"value [\d.]+ at the start of training"),
])
def test_adam_with_a_huge_learning_rate_stops_with_task_step_and_fix(digits_streams, make_model,
                                                                      scenario, sign):
    stream = digits_streams[scenario]
    # PyTorch's initialisation: at its small scale the class-incremental loss vanishes while the
    # weights explode, so each of the two checks is the one that fires in one of the cases
    learner = Learner(make_model(stream, init="pytorch"), lr=1e6, epochs=1, progress=False)
    with pytest.raises(TrainingDivergedError, match=sign + r".*; training diverged: lower the "
                       r"learning rate \(--lr\) or the strategy's strength, and check the "
                       "inputs' scale."):
        learner.fit(stream)
    assert learner.tasks_learned == []


def test_cli_run_with_a_huge_learning_rate_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "run.json"
    result = subprocess.run(
        [sys.executable, "-m", "forgetless.cli", "run", "--lr", "1e9", "--source", "digits",
         "--epochs", "1", "--init", "pytorch", "--quiet", "--output", str(out)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: the loss grew to") and " at task 0, step 1, " in lines[0]
    assert "training diverged: lower the learning rate (--lr)" in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


class PoisonsGradients(Strategy):
    name = "poisons-gradients"

    def before_step(self):
        if self.learner.step_in_task == 10:
            next(self.learner.model.parameters()).grad[0, 0] = float("inf")


def test_non_finite_gradients_stop_before_the_step(digits_streams, make_model):
    stream = digits_streams["domain"]
    model = make_model(stream)
    with pytest.raises(TrainingDivergedError, match="gradients became NaN or infinite at task 0, "
                                                    "step 10"):
        Learner(model, PoisonsGradients(), iterations=20, progress=False).fit(stream)
    assert all(torch.isfinite(p).all() for p in model.parameters())


class WithIdleWeights(nn.Module):
    """An MLP plus a parameter the loss never sees, so only the weights check can notice it."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.idle = inner, nn.Parameter(torch.ones(100))

    def forward(self, x):
        return self.inner(x)


class InflatesIdleWeights(Strategy):
    name = "inflates-idle-weights"

    def after_step(self):
        if self.learner.step_in_task == 12:
            with torch.no_grad():
                self.learner.model.idle.mul_(1e4)


def test_exploding_weights_stop_at_the_next_check(digits_streams, make_model):
    stream = digits_streams["domain"]
    model = WithIdleWeights(make_model(stream))
    with pytest.raises(TrainingDivergedError,
                       match=r"weights' norm grew to 1e\+05 at task 0, step 20, over 100x"):
        Learner(model, InflatesIdleWeights(), iterations=30, progress=False).fit(stream)
