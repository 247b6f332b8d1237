"""Strategies on a task-free stream: which ones can learn without being told where tasks change
(``Strategy.boundary_reason``), and SI and Online EWC consolidating on their own clock.

The task-free learner is made by hand: a bound ``Learner`` with ``task_free = True`` trained by
``run_steps`` on each task's data in turn, with no ``before_task``/``after_task`` (the loop the
task-free fit uses)."""

from __future__ import annotations

import re
import statistics

import pytest
import torch

from forgetless.data.stream import Stream
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import STRATEGIES, Strategy, TrainingData, build_strategy
from forgetless.strategies.regularization.ewc import OnlineEWC
from forgetless.strategies.regularization.quadratic import trainable
from forgetless.strategies.regularization.si import SI

BOUNDARY_FREE = [("naive", {}), ("er", {"fill": "stream"}), ("er-ace", {}), ("derpp", {}),
                 ("si", {}), ("online-ewc", {})]


# ------------------------------------------------------------------ which strategies
def named_ways_forward(advice: str) -> list[tuple[str, dict]]:
    """The registered strategies the advice names, with the settings written beside them:
    ``er(fill=stream)`` -> ("er", {"fill": "stream"})."""
    found = []
    for match in re.finditer(r"(?<![\w-])([a-z][a-z0-9-]*)(?:\(([^)]*)\))?(?![\w-])", advice):
        name, args = match.group(1), match.group(2)
        if name in STRATEGIES.names():
            settings = dict(a.strip().split("=") for a in args.split(",")) if args else {}
            found.append((name, settings))
    return found


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_says_whether_it_needs_boundaries_and_what_to_do_instead(name):
    """None, or one sentence that says what the strategy does at a boundary and then a way
    forward that works: a --set that frees this strategy, or boundary-free strategies by
    name (for a learner that never trains, a task-based run)."""
    strategy = build_strategy(name)
    reason = strategy.boundary_reason()
    if reason is None:
        return
    assert reason.endswith(".") and reason.count(". ") == 0, reason
    assert "act at task boundaries" not in reason and "acts at task boundaries" not in reason, (
        f"{name} gives the generic reason; state why_not_task_free on its class")
    _, _, advice = reason.rpartition("; ")
    assert advice.startswith(("use ", "run it task-based")), reason
    if advice.startswith("run it task-based"):
        assert not strategy.trains_model
        return
    settings = dict(re.findall(r"--set (\w+)=(\w+)", advice))
    if settings:
        assert build_strategy(name, settings).boundary_reason() is None, reason
        return
    named = named_ways_forward(advice)
    assert named, f"{name}'s reason names no strategy to use instead: {reason}"
    for other, other_settings in named:
        assert build_strategy(other, other_settings).boundary_reason() is None, (other, reason)


@pytest.mark.parametrize("name, settings", BOUNDARY_FREE)
def test_the_boundary_free_strategies(name, settings):
    assert build_strategy(name, settings).boundary_reason() is None


def test_ewc_and_er_filled_at_task_ends_need_boundaries_and_a_composition_names_its_part():
    assert "online-ewc" in build_strategy("ewc").boundary_reason()
    assert "fill=stream" in build_strategy("er").boundary_reason()
    assert build_strategy("er-ace", {"fill": "task_end"}).boundary_reason() is not None
    assert build_strategy("si+er-ace").boundary_reason() is None
    assert build_strategy("si+ewc").boundary_reason().startswith("its part 'ewc': ")


# ------------------------------------------------------------------ a hand-made task-free fit
class NoBoundarySI(SI):
    """SI that fails if anything asks it to act at a task boundary."""

    def before_task(self, task):
        raise AssertionError("before_task called in a task-free fit")

    def after_task(self, task):
        raise AssertionError("after_task called in a task-free fit")


class NoBoundaryOnlineEWC(OnlineEWC):
    """Online EWC that fails if anything asks it to act at a task boundary."""

    def after_task(self, task):
        raise AssertionError("after_task called in a task-free fit")


class AnchorWatch(Strategy):
    """Records, after every step, the step number whenever the regulariser's penalty object
    changed (a consolidation builds a new one) and the weights at that step."""

    def __init__(self, regulariser):
        self.regulariser = regulariser
        self.step = 0
        self.penalty_seen = None
        self.changes: list[int] = []
        self.weights_at_change: list[dict] = []

    def after_step(self):
        self.step += 1
        if self.regulariser.quadratic is not self.penalty_seen:
            self.penalty_seen = self.regulariser.quadratic
            self.changes.append(self.step)
            self.weights_at_change.append({n: p.detach().clone() for n, p in
                                           trainable(self.learner.model).items()})


def two_tasks(digits_streams, scenario="domain"):
    full = digits_streams[scenario]
    return Stream(full.tasks[:2], scenario, full.num_outputs)


def task_free_learner(stream, strategy, seed=0, hidden=(32,), batch_size=10):
    torch.manual_seed(seed)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=hidden)
    learner = Learner(model, strategy, batch_size=batch_size, seed=seed, progress=False)
    learner.bind(stream)
    learner.task_free = True
    learner.rebuild_optimizer()
    return learner


def train_stream(learner, stream, steps_per_task):
    for task in stream.tasks:
        learner.run_steps(TrainingData(task.train_x, task.train_y, task.task_ids),
                          steps_per_task)


@pytest.mark.parametrize("regulariser", [
    lambda: NoBoundarySI(c=10.0, consolidate_every=7),
    lambda: NoBoundaryOnlineEWC(lam=1e4, consolidate_every=7)], ids=["si", "online-ewc"])
def test_consolidates_every_consolidate_every_steps_without_boundaries(digits_streams,
                                                                       regulariser):
    stream = two_tasks(digits_streams)
    regulariser = regulariser()
    watch = AnchorWatch(regulariser)
    learner = task_free_learner(stream, regulariser + watch)
    train_stream(learner, stream, steps_per_task=12)
    assert watch.changes == [7, 14, 21]
    anchor = regulariser.anchor if hasattr(regulariser, "path") else regulariser.anchors[0]
    for n, w in watch.weights_at_change[-1].items():  # the anchor is the weights of step 21
        assert torch.equal(anchor[n], w)
    assert regulariser.steps_since_consolidation == 24 - 21


@pytest.mark.parametrize("name, settings", [("si", {"c": 10.0}), ("online-ewc", {"lam": 1e4})])
def test_consolidated_importance_is_not_zero_and_the_penalty_pulls_toward_the_anchor(
        digits_streams, name, settings):
    stream = two_tasks(digits_streams)
    regulariser = build_strategy(name, {**settings, "consolidate_every": 10})
    learner = task_free_learner(stream, regulariser)
    train_stream(learner, stream, steps_per_task=10)
    importance = (regulariser.importance if name == "si" else regulariser.fishers[0])
    assert sum(float(v.sum()) for v in importance.values()) > 0
    anchor = regulariser.anchor if name == "si" else regulariser.anchors[0]
    params = trainable(learner.model)
    assert float(regulariser.penalty(None, None).detach()) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():  # step 20 consolidated: move away from the anchor
        for p in params.values():
            p.add_(0.05 * torch.randn_like(p))
    value = regulariser.penalty(None, None)
    grads = torch.autograd.grad(value, list(params.values()))
    assert float(value.detach()) > 0
    toward = sum(float((g * (p.detach() - anchor[n])).sum())
                 for (n, p), g in zip(params.items(), grads, strict=True))
    assert toward > 0  # the penalty's descent direction points back to the anchor


def test_task_based_fits_never_consolidate_on_the_clock(digits_streams):
    stream = two_tasks(digits_streams)
    si = build_strategy("si", {"consolidate_every": 3})
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, si, iterations=10, batch_size=10, seed=0, progress=False)
    learner.fit(stream)
    assert si.steps_since_consolidation == 0


def test_the_clock_and_the_running_fisher_are_saved_with_the_state(digits_streams):
    stream = two_tasks(digits_streams)
    online = build_strategy("online-ewc", {"lam": 1e4, "consolidate_every": 10})
    learner = task_free_learner(stream, online)
    train_stream(learner, stream, steps_per_task=7)
    state = online.state_dict()
    assert state["steps_since_consolidation"] == 4
    restored = build_strategy("online-ewc", {"lam": 1e4, "consolidate_every": 10})
    restored.setup(learner)
    restored.load_state_dict(state)
    assert restored.steps_since_consolidation == 4
    for n, f in online.running_fisher.items():
        assert torch.equal(restored.running_fisher[n], f)


# ------------------------------------------------------------------ what it keeps
def task0_accuracy(stream, spec, settings, seed):
    learner = task_free_learner(stream, build_strategy(spec, settings), seed=seed,
                                hidden=(100,))
    train_stream(learner, stream, steps_per_task=80)
    return learner.evaluate(stream.tasks)


@pytest.mark.parametrize("name, settings", [("si", {"c": 300.0}),
                                            ("online-ewc", {"lam": 1e4})])
def test_task_free_regulariser_keeps_more_of_task_0_than_naive(digits_streams, name, settings):
    """Two tasks of split digits, domain-incremental, 80 steps of batch 10 each, boundaries
    never announced: over two seeds the regulariser keeps task 0 at least 5 points better
    than naive and still learns task 1 (see docs/streams.md for the sweep)."""
    stream = two_tasks(digits_streams)
    naive = [task0_accuracy(stream, "naive", {}, seed) for seed in (0, 1)]
    kept = [task0_accuracy(stream, name, settings, seed) for seed in (0, 1)]
    assert statistics.mean(r[0] for r in kept) >= statistics.mean(r[0] for r in naive) + 0.05
    assert statistics.mean(r[1] for r in kept) >= 0.9


def test_si_continued_task_free_after_a_task_starts_a_fresh_period(digits_streams):
    """After a task-based task, the first task-free step opens a new path integral at the
    weights the task ended with; the finished task's path is not counted again."""
    stream = two_tasks(digits_streams)
    si = build_strategy("si", {"c": 10.0, "consolidate_every": 5})
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, si, iterations=10, batch_size=10, seed=0, progress=False)
    learner.bind(stream)
    learner.learn(stream.tasks[0])
    ended_at = {n: v.clone() for n, v in si.anchor.items()}
    learner.task_free = True
    task = stream.tasks[1]
    learner.run_steps(TrainingData(task.train_x, task.train_y, task.task_ids), 3)
    for n, w in ended_at.items():
        assert torch.equal(si.task_start[n], w)


@pytest.mark.parametrize("name", ["si", "online-ewc"])
def test_a_state_saved_before_the_clock_existed_still_loads(digits_streams, name):
    stream = two_tasks(digits_streams)
    strategy = build_strategy(name)
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, strategy, iterations=5, batch_size=10, seed=0, progress=False)
    learner.fit(stream)
    state = {k: v for k, v in strategy.state_dict().items()
             if k not in ("steps_since_consolidation", "period_open", "running_fisher")}
    strategy.load_state_dict(state)
    assert strategy.steps_since_consolidation == 0
