"""Online and task-free streams and continual evaluation: the blurred order's mixing, a
boundary-free strategy that is never told a boundary, the record continual evaluation writes,
that evaluating never changes training, and what it costs."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import tiny_model

from forgetless.config import RunConfig, run_id
from forgetless.data.task_free import TaskFreeOrder, task_free_order
from forgetless.errors import ConfigurationError, ScenarioError
from forgetless.experiments.runner import prepare, run
from forgetless.learner import Learner
from forgetless.strategies import build_strategy
from forgetless.strategies.base import Strategy


def share_of_second_task(plan: TaskFreeOrder, sizes, low: float, high: float) -> float:
    inside = (plan.positions >= low) & (plan.positions < high)
    second = plan.order[inside] >= sizes[0]
    return second.double().mean().item()


def test_a_blurred_transition_mixes_the_two_tasks_linearly_over_the_window():
    sizes = [20_000, 20_000]
    plan = task_free_order(sizes, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(plan.order.sort().values, torch.arange(sum(sizes)))  # each sample once
    # Outside the window [0.9, 1.1] the stream holds one task; inside, the share of task 1
    # rises linearly: 1/8, 3/8, 5/8, 7/8 in its four quarters.
    assert share_of_second_task(plan, sizes, 0.0, 0.9) == 0.0
    assert share_of_second_task(plan, sizes, 1.1, 2.1) == 1.0
    for quarter, expected in enumerate((0.125, 0.375, 0.625, 0.875)):
        low = 0.9 + 0.05 * quarter
        assert share_of_second_task(plan, sizes, low, low + 0.05) == pytest.approx(
            expected, abs=0.03)
    # The row of task 0 is measured where the stream passes position 1: half-way through.
    assert plan.task_ends[0] == pytest.approx(sizes[0], rel=0.01)
    assert plan.task_ends[-1] == sum(sizes)


def test_a_sharp_task_free_stream_presents_the_tasks_one_after_another():
    sizes = [30, 50, 20]
    plan = task_free_order(sizes, 0.0, torch.Generator().manual_seed(1))
    task_of = torch.bucketize(plan.order, torch.tensor([30, 80]), right=True)
    assert task_of.tolist() == [0] * 30 + [1] * 50 + [2] * 20
    assert plan.task_ends == (30, 80, 100)
    assert plan.order[:30].tolist() != list(range(30))  # shuffled within the task


class BoundarySpy(Strategy):
    """Records the batches it is given; its boundary hooks fail the test if ever called."""

    name = "spy"

    def __init__(self):
        self.batches = []

    def boundary_reason(self):
        return None

    def before_task(self, task):
        raise AssertionError("a task-free learner told the strategy a task starts")

    def after_task(self, task):
        raise AssertionError("a task-free learner told the strategy a task ended")

    def training_data(self, task):
        raise AssertionError("a task-free learner asked for a task's training data")

    def extend_batch(self, batch):
        self.batches.append((batch.task_ids.clone(), self.learner.current_task))
        return batch


def test_a_boundary_free_strategy_is_never_told_a_boundary_and_sees_every_sample_once(
        digits_streams):
    stream = digits_streams["class"]
    spy = BoundarySpy()
    learner = Learner(tiny_model(stream), spy, batch_size=10, task_free=True, blur=0.5,
                      progress=False)
    result = learner.fit(stream)
    seen = torch.cat([ids for ids, _ in spy.batches])
    sizes = [t.train_x.shape[0] for t in stream.tasks]
    assert seen.shape[0] == sum(sizes)
    assert torch.bincount(seen).tolist() == sizes
    assert all(task is None for _, task in spy.batches)
    assert any(len(set(ids.tolist())) > 1 for ids, _ in spy.batches)  # blurred batches
    assert len(result.accuracy_matrix) == len(stream.tasks)
    assert sum(result.steps) == len(spy.batches)
    with pytest.raises(ConfigurationError, match="whole stream"):
        learner.learn(stream.tasks[0])


def test_a_strategy_that_needs_boundaries_is_refused_for_a_task_free_stream_saying_why(
        digits_streams):
    stream = digits_streams["class"]
    learner = Learner(tiny_model(stream), build_strategy("ewc"), task_free=True,
                      progress=False)
    with pytest.raises(ScenarioError, match="cannot learn from a task-free stream: .*task ends"):
        learner.fit(stream)
    er = Learner(tiny_model(stream), build_strategy("er"), task_free=True, progress=False)
    with pytest.raises(ScenarioError, match="fill=stream"):
        er.bind(stream)
    Learner(tiny_model(stream), build_strategy("er", {"fill": "stream"}), task_free=True,
            progress=False).bind(stream)


def test_continual_evaluation_records_every_seen_task_without_changing_training(
        digits_streams):
    stream = digits_streams["class"]
    plain = Learner(tiny_model(stream), build_strategy("er", {"fill": "stream"}), epochs=1,
                    batch_size=10, progress=False)
    reference = plain.fit(stream)
    watched = Learner(tiny_model(stream), build_strategy("er", {"fill": "stream"}), epochs=1,
                      batch_size=10, eval_every=3, eval_samples=20, progress=False)
    result = watched.fit(stream)
    # Evaluating draws nothing from the learner's generator and leaves the model as it was.
    assert result.accuracy_matrix == reference.accuracy_matrix
    for a, b in zip(plain.model.parameters(), watched.model.parameters(), strict=True):
        assert torch.equal(a, b)
    record = result.continual
    ends = list(torch.tensor(result.steps).cumsum(0).tolist())
    assert record["task_ends"] == ends and record["task_starts"] == [0] + ends[:-1]
    steps = record["steps"]
    assert steps[0] == 0 and steps == sorted(set(steps)) and steps[-1] == ends[-1]
    assert set(ends) <= set(steps)  # every task end, and every 3 steps in between
    assert all(b - a == 3 or b in ends for a, b in zip(steps, steps[1:], strict=False))
    assert all(b - a <= 3 for a, b in zip(steps, steps[1:], strict=False))
    for step, row in zip(steps, record["accuracy"], strict=True):
        started = sum(start <= step for start in record["task_starts"][1:]) + 1
        if step in record["task_starts"][1:]:
            started -= 1  # the evaluation at a task end comes before the next task starts
        assert all(a is not None for a in row[:started]) and all(a is None
                                                               for a in row[started:])
    assert record["eval_samples"] == 20
    # At a task end the subset's accuracy agrees with the full test set's within sampling
    # noise (20 of ~36 samples), and the last row's first entry is task 0 after all training.
    last = record["accuracy"][-1]
    assert all(abs(a - b) <= 0.35 for a, b in zip(last, result.accuracy_matrix[-1],
                                                  strict=True))


def test_online_split_mnist_shows_the_dip_and_auto_evaluation_costs_under_a_fifth():
    """ER on online split MNIST (batch 10): task 0's accuracy dips early in task 1 and recovers
    (the stability gap); the automatic interval keeps evaluation under 20% of training."""
    torch.set_num_threads(1)
    result = run(RunConfig(strategy="er", stream="online", epochs=1, batch_size=10, seed=0,
                           strategy_params={"buffer_size": 1000, "fill": "stream"}),
                 progress=False)
    record = result.continual
    assert record["seconds"] <= 0.2 * record["train_seconds"]
    switch, end = record["task_starts"][1], record["task_ends"][1]
    task0 = [(s, row[0]) for s, row in zip(record["steps"], record["accuracy"], strict=True)]
    before = [a for s, a in task0 if s <= switch][-1]
    during = [(s, a) for s, a in task0 if switch < s <= end]
    low_step, low = min(during, key=lambda sa: sa[1])
    assert before - low >= 0.10 and low_step - switch <= 20  # an early dip of 10+ points
    assert during[-1][1] >= low + 0.10  # and it recovers
    assert record["metrics"]["min_acc"] is not None


def test_stream_options_resolve_and_wrong_ones_say_how_to_fix_them():
    from forgetless.commands.options import config_from_options

    online = config_from_options(stream="online")
    assert (online.epochs, online.batch_size, online.stream) == (1, 10, "online")
    assert config_from_options(stream="task-free", batch_size=32).batch_size == 32
    assert config_from_options(eval_every="12").eval_every == 12
    # Runs recorded before these options existed keep their ids.
    plain = RunConfig().to_dict()
    older = {k: v for k, v in plain.items()
             if k not in ("stream", "blur", "eval_every", "eval_samples")}
    assert run_id(plain) == run_id(older)
    assert run_id(RunConfig(stream="online", epochs=1).to_dict()) != run_id(plain)
    with pytest.raises(ConfigurationError, match="passes over each task once"):
        prepare(RunConfig(stream="online", epochs=3))
    with pytest.raises(ConfigurationError, match="task-free"):
        prepare(RunConfig(blur=0.2))
    with pytest.raises(ConfigurationError, match="between 0"):
        prepare(RunConfig(stream="task-free", epochs=1, blur=1.5))
    with pytest.raises(ConfigurationError, match="unknown stream"):
        RunConfig(stream="offline")


def test_a_task_free_run_resumes_to_the_uninterrupted_matrix(tmp_path):
    from tests.test_checkpoint import Crash, CrashAfter

    config = RunConfig(strategy="er-ace", stream="task-free", blur=0.3, epochs=1,
                       batch_size=16, source="digits", model_options={"hidden": [32]})
    reference = run(config, progress=False)
    with pytest.raises(Crash):
        run(config, progress=False, checkpoint_dir=tmp_path, loggers=[CrashAfter(2)])
    resumed = run(config, progress=False, checkpoint_dir=tmp_path, resume=True)
    assert resumed.accuracy_matrix == reference.accuracy_matrix
    assert resumed.continual["task_ends"] == reference.continual["task_ends"]
    assert resumed.continual["task_starts"] == reference.continual["task_starts"]


def test_the_command_line_runs_a_task_free_stream_and_refuses_a_boundary_strategy(tmp_path):
    from tests.test_cli import forgetless

    done = forgetless("run", "--stream", "task-free", "--blur", "0.2", "--strategy", "er-ace",
                      "--source", "digits", "--quiet", "--no-store", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "min-ACC (worst on old tasks)" in done.stdout and "new task  old task" in done.stdout
    refused = forgetless("run", "--stream", "task-free", "--strategy", "lwf", "--source",
                         "digits", "--quiet", "--no-store", cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "cannot learn from a task-free stream" in refused.stderr and "use derpp" in \
        refused.stderr
