"""The training loop: forgetting made visible, determinism, hook order, budgets, errors."""

import pytest
import torch

from forgetless import RunConfig, run
from forgetless.data.stream import Stream, Task
from forgetless.errors import DataError, ScenarioError, TrainingDivergedError
from forgetless.learner import Learner
from forgetless.strategies import Strategy, build_strategy
from forgetless.strategies.composite import Composite


def test_naive_forgets_split_mnist_and_joint_does_not():
    naive = run(RunConfig(strategy="naive", epochs=5, seed=0), progress=False)
    r = naive.accuracy_matrix
    assert r[0][0] >= 0.95, "the first task is learned"
    assert r[-1][0] <= 0.20, "and forgotten after the last task"
    assert all(r[i][i] >= 0.9 for i in range(5))
    assert naive.metrics["acc"] <= 0.25
    joint = run(RunConfig(strategy="joint", epochs=5, seed=0), progress=False)
    assert joint.metrics["acc"] >= 0.90


def test_same_seed_and_config_give_the_same_accuracy_matrix():
    config = RunConfig(source="digits", scenario="domain", epochs=2, seed=7,
                       model_options={"hidden": [32]})
    first, second = run(config, progress=False), run(config, progress=False)
    assert first.accuracy_matrix == second.accuracy_matrix
    assert first.run_id == second.run_id
    other = run(config.updated(seed=8), progress=False)
    assert other.run_id != first.run_id
    assert other.accuracy_matrix != first.accuracy_matrix


class Recorder(Strategy):
    """Records each hook call as (label, hook, task id)."""

    def __init__(self, label, log):
        self.label, self.log = label, log

    def _rec(self, hook, task=None):
        self.log.append((self.label, hook, None if task is None else task.task_id))

    def before_task(self, task):
        self._rec("before_task", task)

    def extend_batch(self, batch):
        self._rec("extend_batch")
        return batch

    def penalty(self, batch, logits):
        self._rec("penalty")
        return None

    def before_step(self):
        self._rec("before_step")

    def after_step(self):
        self._rec("after_step")

    def after_task(self, task):
        self._rec("after_task", task)


def _two_task_stream(streams):
    class_stream = streams["class"]
    return Stream(class_stream.tasks[:2], "class", class_stream.num_outputs)


def test_hooks_of_a_composition_run_in_order(digits_streams, make_model):
    log = []
    a, b = Recorder("a", log), Recorder("b", log)
    a.name, b.name = "a", "b"
    stream = _two_task_stream(digits_streams)
    Learner(make_model(stream), a + b, iterations=2, batch_size=8).fit(stream)
    step = [("a", "extend_batch", None), ("b", "extend_batch", None), ("a", "penalty", None),
            ("b", "penalty", None), ("a", "before_step", None), ("b", "before_step", None),
            ("a", "after_step", None), ("b", "after_step", None)]
    expected = []
    for t in (0, 1):
        expected += [("a", "before_task", t), ("b", "before_task", t)] + step * 2
        expected += [("a", "after_task", t), ("b", "after_task", t)]
    assert log == expected


def test_extend_batch_chains_and_penalties_add():
    class Adds(Strategy):
        def __init__(self, value):
            self.value = value

        def extend_batch(self, batch):
            return batch.concat(batch)

        def penalty(self, batch, logits):
            return torch.tensor(self.value)

    a, b = Adds(1.0), Adds(2.5)
    a.name, b.name = "a", "b"
    both = Composite(a, b)
    from forgetless.strategies import Batch

    batch = Batch(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), torch.zeros(3).long())
    assert len(both.extend_batch(batch)) == 12
    assert float(both.penalty(batch, None)) == 3.5


def test_budget_in_iterations_and_epochs(digits_streams, make_model):
    stream = digits_streams["class"]
    n = stream[0].train_x.shape[0]
    fit = Learner(make_model(stream), iterations=3, batch_size=16).fit(stream)
    assert fit.steps == [3] * 5
    fit = Learner(make_model(stream), epochs=2, batch_size=100).fit(stream)
    assert fit.steps[0] == 2 * -(-n // 100)


class TaskIdSpy(Strategy):
    """Records the task ids the model is called with at test time."""

    def __init__(self):
        self.seen_at_test = []

    def forward(self, x, task_ids):
        if not self.learner.model.training:
            self.seen_at_test.append(task_ids)
        return None


@pytest.mark.parametrize("scenario", ["domain", "class"])
def test_the_task_id_never_reaches_prediction_without_task_il(digits_streams, make_model,
                                                              scenario):
    spy = TaskIdSpy()
    stream = digits_streams[scenario]
    Learner(make_model(stream), spy, iterations=1).fit(stream)
    assert spy.seen_at_test and all(t is None for t in spy.seen_at_test)


def test_task_il_prediction_gets_the_task_id(digits_streams, make_model):
    spy = TaskIdSpy()
    stream = digits_streams["task"]
    Learner(make_model(stream), spy, iterations=1).fit(stream)
    assert {int(t[0]) for t in spy.seen_at_test} == {0, 1, 2, 3, 4}


def test_a_strategy_that_cannot_serve_the_scenario_is_refused(digits_streams, make_model):
    class NeedsTaskId(Strategy):
        name = "needs-id"
        scenarios = frozenset({"task"})
        needs_task_id = True

    stream = digits_streams["class"]
    with pytest.raises(ScenarioError, match="needs the task id at test time.*--scenario"):
        Learner(make_model(stream), NeedsTaskId()).fit(stream)


def test_a_diverging_loss_stops_with_task_and_step(digits_streams, make_model):
    class Explodes(Strategy):
        name = "explodes"

        def penalty(self, batch, logits):
            if self.learner.current_task.task_id == 1 and self.learner.step_in_task == 2:
                return torch.tensor(float("nan"))
            return None

    stream = digits_streams["class"]
    model = make_model(stream)
    with pytest.raises(TrainingDivergedError, match="task 1, step 2.*lower the learning rate"):
        Learner(model, Explodes(), iterations=5).fit(stream)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_model_and_stream_mismatch_is_explained(digits_streams, make_model):
    stream = digits_streams["domain"]  # 2 outputs
    wrong_head = make_model(digits_streams["class"])  # 10 outputs
    with pytest.raises(DataError, match="need 2 output units.*num_outputs=2"):
        Learner(wrong_head).fit(stream)
    from forgetless.models import build_model

    wrong_input = build_model("mlp", (1, 28, 28), 2)
    with pytest.raises(DataError, match=r"cannot take inputs of per-sample shape \(1, 8, 8\)"):
        Learner(wrong_input).fit(stream)


def _task(task_id, n=8, x=None, y=None, classes=(0, 1)):
    x = torch.rand(n, 4) if x is None else x
    y = torch.arange(n) % 2 if y is None else y
    return Task(task_id, x, y, x, y, classes)


@pytest.mark.parametrize("task, message", [
    (_task(0, x=torch.rand(0, 4), y=torch.zeros(0, dtype=torch.long)), "empty"),
    (_task(0, x=torch.full((8, 4), float("inf"))), "NaN or infinite"),
    (_task(0, y=torch.arange(8) % 3), r"outside the head's 2 outputs"),
    (_task(0, y=torch.arange(8) % 2, classes=(0,)), r"labels \[1\] are not among"),
    (_task(1), "task ids must be 0, 1, 2"),
])
def test_bad_tasks_are_refused_before_training(task, message):
    with pytest.raises(DataError, match=message):
        Stream([task], "domain", 2)


def test_inputs_of_different_shapes_are_refused():
    with pytest.raises(DataError, match="different input shapes"):
        Stream([_task(0), _task(1, x=torch.rand(8, 5))], "domain", 2)


def test_learning_a_new_task_later(digits_streams, make_model):
    stream = digits_streams["task"]
    first = Stream(stream.tasks[:3], "task", stream.num_outputs)
    learner = Learner(make_model(stream), iterations=5)
    learner.fit(first)
    learner.learn(stream[3])
    assert learner.tasks_learned == [0, 1, 2, 3]
    assert len(learner.evaluate(learner.stream_tasks)) == 4
    with pytest.raises(DataError, match="next task's id must be 4"):
        learner.learn(Task(6, *(stream[4].train_x, stream[4].train_y) * 2, stream[4].classes))


def test_the_optimizer_is_rebuilt_when_parameters_are_added(digits_streams, make_model):
    class Grows(Strategy):
        name = "grows"

        def before_task(self, task):
            self.learner.model.register_parameter(
                f"extra{task.task_id}", torch.nn.Parameter(torch.zeros(1)))

    stream = Stream(digits_streams["class"].tasks[:2], "class", 10)
    learner = Learner(make_model(stream), Grows(), iterations=1, reset_optimizer=False)
    learner.fit(stream)
    in_optimizer = {id(p) for g in learner.optimizer.param_groups for p in g["params"]}
    assert id(learner.model.extra1) in in_optimizer


def test_unknown_strategy_suggests_the_nearest():
    from forgetless.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="Did you mean 'naive'"):
        build_strategy("naiv")
    with pytest.raises(ConfigurationError, match="has no hyper-parameter 'lam'"):
        build_strategy("naive", {"lam": 1})


def test_progress_bar_shows_task_and_loss(digits_streams, make_model, capsys):
    stream = Stream(digits_streams["class"].tasks[:2], "class", 10)
    Learner(make_model(stream), iterations=12, progress=True).fit(stream)
    err = capsys.readouterr().err
    assert "task 2/2" in err and "loss" in err


# ---------------------------------------------------------------- class-incremental evaluation
def test_class_il_answers_over_the_classes_learned_so_far(digits_streams, make_model):
    """After task 1 of split digits, the whole head would send some test samples to units no
    task has trained (they were never pushed down); the learner answers over classes 0-1 only,
    so tasks not yet learned score exactly 0 and the untrained model's row uses the whole head."""
    stream = digits_streams["class"]
    learner = Learner(make_model(stream, hidden=(16,), seed=1), build_strategy("naive"),
                      iterations=15, batch_size=32, seed=0)
    learner.bind(stream)
    untrained = learner.predict(torch.cat([t.test_x for t in stream.tasks]))
    learner.learn(stream.tasks[0])
    later = torch.cat([t.test_x for t in stream.tasks[1:]])
    with torch.no_grad():
        whole_head = learner.model(later).argmax(1)
    untrained_units = (whole_head >= 2).float().mean()
    assert untrained_units > 0.05, "the case this test is about: whole-head testing differs"
    assert set(learner.predict(later).unique().tolist()) <= {0, 1}
    assert learner.evaluate(stream.tasks)[1:] == [0.0] * 4
    assert (untrained >= 2).any()  # before any training the whole head answers
    learner.learn(stream.tasks[1])
    assert set(learner.predict(later).unique().tolist()) <= {0, 1, 2, 3}


def test_task_il_training_leaves_other_tasks_head_rows_bit_identical(digits_streams,
                                                                    make_model):
    """Masking a shared head is separate heads: Adam (reset per task) never moves the output
    rows of a task other than the one being trained, so task 1's head survives task 2."""
    stream = digits_streams["task"]
    learner = Learner(make_model(stream), build_strategy("naive"), iterations=20,
                      batch_size=32, seed=0)
    learner.bind(stream)
    learner.learn(stream.tasks[0])
    head = learner.model.head
    before = head.weight.detach().clone(), head.bias.detach().clone()
    learner.learn(stream.tasks[1])
    for after, old in zip((head.weight, head.bias), before, strict=True):
        assert torch.equal(after[[0, 1]], old[[0, 1]])  # task 1's units
        assert torch.equal(after[4:], old[4:])  # units of tasks not trained yet
        assert not torch.equal(after[[2, 3]], old[[2, 3]])  # task 2's units trained


def test_first_visit_marks_each_training_sample_once_per_task(digits_streams, make_model):
    stream = digits_streams["class"]
    seen = []

    class Spy(Strategy):
        def extend_batch(self, batch):
            seen.append((batch.x[self.learner.first_visit].flatten(1),
                         self.learner.first_visit))
            return batch

    learner = Learner(make_model(stream), Spy(), epochs=3, batch_size=32, seed=0)
    learner.bind(stream)
    learner.learn(stream.tasks[0])
    n = len(stream.tasks[0].train_x)
    firsts = torch.cat([s for s, _ in seen])
    assert len(firsts) == n  # every sample once (3 epochs offered it three times) ...
    distinct = torch.unique(stream.tasks[0].train_x.flatten(1), dim=0)
    assert torch.unique(firsts, dim=0).shape == distinct.shape  # ... each of them
    assert sum(int(v.sum()) for _, v in seen[: -(-n // 32)]) == n  # all in the first epoch
    learner.learn(stream.tasks[1])  # a new task: its samples are new
    assert len(torch.cat([s for s, _ in seen])) == n + len(stream.tasks[1].train_x)
    assert learner.first_visit is None  # outside the loop


@pytest.mark.parametrize("scheme", ["kaiming-trunk", "kaiming", "xavier", "pytorch"])
def test_mlp_initialisation_sets_the_scale_of_every_layer(scheme):
    """``--init`` sets the layers' scale (what moves task-incremental naive, issue 12): Kaiming's
    on the trunk by default, the head left at nn.Linear's own unless ``kaiming``/``xavier`` say
    otherwise, and ``pytorch`` still builds the model of the runs recorded before the change."""
    from forgetless.models import build_model

    chosen = build_model("mlp", (1, 28, 28), 10, seed=0, init=scheme)
    again = build_model("mlp", (1, 28, 28), 10, seed=0, init=scheme)
    for layer in [m for m in chosen.modules() if isinstance(m, torch.nn.Linear)]:
        fan_out, fan_in = layer.weight.shape
        own = scheme == "pytorch" or (scheme == "kaiming-trunk" and layer is chosen.head)
        expected = ((3 * fan_in) ** -0.5 if own else (2 / (fan_in + fan_out)) ** 0.5
                    if scheme == "xavier" else (2 / fan_in) ** 0.5)
        assert layer.weight.std().item() == pytest.approx(expected, rel=0.1)
        assert (torch.count_nonzero(layer.bias) > 0) == own
    assert all(torch.equal(a, b) for a, b in zip(chosen.parameters(), again.parameters(),
                                                 strict=True))
    default = build_model("mlp", (1, 28, 28), 10, seed=0)
    assert default.init == "kaiming-trunk"
    assert all(torch.equal(a, b) for a, b in zip(
        default.parameters(), build_model("mlp", (1, 28, 28), 10, seed=0,
                                          init="kaiming-trunk").parameters(), strict=True))


def test_reset_parameters_draws_a_new_mlp_of_the_same_initialisation():
    """What GDumb's training from scratch relies on: the MLP's own re-initialisation keeps its
    scheme (a layer-by-layer ``reset_parameters`` would fall back to nn.Linear's own)."""
    from forgetless.models import build_model
    from forgetless.strategies.replay.gdumb import reinitialise

    for scheme in ("kaiming-trunk", "pytorch"):
        model = build_model("mlp", (1, 28, 28), 10, seed=0, init=scheme)
        torch.manual_seed(5)
        reinitialise(model)
        torch.manual_seed(5)
        fresh = build_model("mlp", (1, 28, 28), 10, init=scheme)
        trunk = model.body[1].weight
        assert trunk.std().item() == pytest.approx(
            (2 / 784) ** 0.5 if scheme == "kaiming-trunk" else (3 * 784) ** -0.5, rel=0.1)
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters(),
                                                     strict=True))


def test_mlp_initialisation_is_named_in_the_config_only_when_given():
    from forgetless.commands.options import config_from_options
    from forgetless.errors import ConfigurationError
    from forgetless.models import build_model

    assert "init" not in config_from_options().model_options
    assert config_from_options(init="xavier").model_options["init"] == "xavier"
    with pytest.raises(ConfigurationError,
                       match="choose one of kaiming-trunk, kaiming, xavier, pytorch"):
        build_model("mlp", (1, 28, 28), 10, init="he")


def test_the_run_id_names_the_mlp_initialisation_so_older_default_runs_are_not_reused():
    """Runs stored before the default became Kaiming's have no ``init`` in their config; the
    resolved config spells today's out, so a store never hands one back for today's default,
    and leaves PyTorch's out, so ``--init pytorch`` finds them (and resumes their checkpoints)."""
    from forgetless.config import RunConfig, run_id
    from forgetless.experiments.runner import configured_strategy

    def resolved_and_id(config):
        return configured_strategy(config)[1:]

    default, default_id = resolved_and_id(RunConfig())
    assert default["model_options"] == {"init": "kaiming-trunk"}
    assert default_id == resolved_and_id(RunConfig(model_options={"init": "kaiming-trunk"}))[1]
    as_stored_before = {**default, "model_options": {}}
    pytorch_id = resolved_and_id(RunConfig(model_options={"init": "pytorch"}))[1]
    assert run_id(as_stored_before) == pytorch_id != default_id
    assert resolved_and_id(RunConfig(model_options={"init": "xavier"}))[1] not in (
        pytorch_id, default_id)
    assert "init" not in resolved_and_id(RunConfig(model="convnet"))[0]["model_options"]
