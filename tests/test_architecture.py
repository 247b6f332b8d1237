"""The dynamic architecture family (PNN, PackNet, HAT): frozen parameters stay bit-identical,
backward transfer is exactly zero (PNN, PackNet), growth and masks follow the papers, resuming
after task 2 of 4 continues identically, bad settings are refused, and on the embedded MNIST
each reaches joint's accuracy with no forgetting."""

import math

import pytest
import torch

from forgetless import RunConfig, run
from forgetless.data.stream import Stream
from forgetless.errors import ConfigurationError, ScenarioError
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import build_strategy
from forgetless.strategies.architecture.packnet import FREE
from forgetless.strategies.base import evaluating
from strategy_helpers import recorded_terms, safe_roundtrip

ARCHITECTURES = ("pnn", "packnet", "hat")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread: the tests' timings must not depend on (or fight over) the machine's cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def four_tasks(streams):
    full = streams["task"]
    return Stream(full.tasks[:4], "task", full.num_outputs)


def make_learner(name, stream, seed=0, params=None, hidden=(32, 32), **options):
    torch.manual_seed(seed)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=hidden)
    options = {"iterations": 25, "batch_size": 32, "seed": seed, **options}
    learner = Learner(model, build_strategy(name, params or {}), **options)
    learner.bind(stream)
    return learner


# ---------------------------------------------------------------- refusals and bad settings
@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("scenario", ["class", "domain"])
def test_refused_without_a_task_id_with_the_reason(name, scenario):
    config = RunConfig(source="digits", scenario=scenario, strategy=name, epochs=1)
    with pytest.raises(ScenarioError) as error:
        run(config, progress=False)
    message = str(error.value)
    assert f"'{name}' does not serve the {scenario}-incremental scenario" in message
    assert "needs the task id at test time" in message
    assert "It serves: task" in message and "--scenario" in message


@pytest.mark.parametrize("name, settings", [
    ("packnet", {"prune_ratio": 1.0}), ("packnet", {"prune_ratio": -0.1}),
    ("packnet", {"finetune_fraction": -1}), ("hat", {"s_max": 1}), ("hat", {"c": -0.5}),
    ("pnn", {"adapter_width": 0}),
])
def test_bad_hyperparameters_are_refused_with_the_fix(name, settings):
    key = next(iter(settings))
    with pytest.raises(ConfigurationError, match=f"{name}: {key} must"):
        build_strategy(name, settings)


@pytest.mark.parametrize("name", ["pnn", "hat"])
def test_column_and_gate_strategies_need_an_mlp_or_a_convnet(name):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(ConfigurationError, match=r"build_model\(.mlp., ...\) or build_model\("
                                                 r".convnet.") as error:
        Learner(model, build_strategy(name))
    assert error.value.for_cli().endswith("use --model mlp or --model convnet.")  # the CLI's


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_tasks_must_arrive_once_each_in_order(digits_streams, name):
    stream = four_tasks(digits_streams)
    learner = make_learner(name, stream, iterations=1)
    with pytest.raises(ScenarioError, match="next task must have id 0, got 1"):
        learner.learn(stream[1])


def test_packnet_out_of_capacity_is_an_error_and_phases_are_guarded(digits_streams):
    stream = four_tasks(digits_streams)
    learner = make_learner("packnet", stream, params={"prune_ratio": 0.0}, iterations=2)
    learner.learn(stream[0])
    with pytest.raises(ConfigurationError, match="no free weights left in .* for task 1"):
        learner.learn(stream[1])
    with pytest.raises(ConfigurationError, match="after_task called in phase 'idle'"):
        learner.strategy.parts[0].after_task(stream[1])


# ---------------------------------------------------------------- isolation
def frozen_view(learner, name, k):
    """Copies of everything task k (and earlier tasks) may never see change again."""
    strategy, model = learner.strategy.parts[0], learner.model
    units = learner.output_mask.task_units[:k + 1].any(0)
    head = model.head if name == "packnet" else model.blocks[-1].layer if name == "hat" else None
    view = {}
    if name == "pnn":
        for label, part in (("column", model.columns[:k + 1]), ("adapter", model.adapters[:k + 1])):
            view.update({f"{label}.{n}": p.clone() for n, p in part.named_parameters()})
        return view
    view["head.weight"], view["head.bias"] = head.weight[units].clone(), head.bias[units].clone()
    if name == "packnet":
        for n, p in model.named_parameters():
            if n in strategy.owners:
                view[n] = p[strategy.owners[n] <= k].clone()
            elif not n.startswith("head."):
                view[n] = p.clone()  # biases: learned on the first task, then fixed
        return view
    gates = torch.sigmoid(strategy.s_max * torch.stack(list(model.embeddings[:k + 1])))
    used = [torch.ones(model.blocks[0].input_units), *gates.amax(0).split(model.widths)]
    for i, layer in enumerate(block.layer for block in model.blocks[:-1]):
        blocked = torch.minimum(used[i + 1][:, None], used[i][None, :]) == 1
        view[f"w{i}"] = layer.weight[blocked].clone()
        view[f"b{i}"] = layer.bias[used[i + 1] == 1].clone()
    view["embeddings"] = torch.stack(list(model.embeddings[:k + 1])).clone()
    return view


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_parameters_of_finished_tasks_stay_bit_identical(digits_streams, name):
    """With weight decay and Adam's moments carried across tasks, both of which move a weight
    whose gradient is zero: the frozen entries must still not move by one bit, and for PNN and
    PackNet every old task's logits stay bit-identical (backward transfer exactly zero)."""
    stream = four_tasks(digits_streams)
    learner = make_learner(name, stream, hidden=(64, 64), iterations=40, weight_decay=0.01,
                           reset_optimizer=False)
    views, logits, rows = [], [], []
    for task in stream:
        learner.learn(task)
        views.append(frozen_view(learner, name, task.task_id))
        ids = torch.full((len(task.test_x),), task.task_id)
        with torch.no_grad():
            learner.model.eval()
            logits.append(learner.forward(task.test_x, ids)[:, list(task.classes)])
        rows.append(learner.evaluate(stream.tasks))
    assert sum(rows[k][k] for k in range(4)) / 4 >= 0.75, "tasks were learned (weights moved)"
    final = [frozen_view(learner, name, k) for k in range(4)]
    for k in range(3):
        assert sum(v.numel() for v in views[k].values()) > 100, "a real share is frozen"
        for key, value in views[k].items():
            assert torch.equal(value, final[k][key]), f"{name}: task {k}'s {key} moved"
    if name == "hat":  # gates are binary only up to float32 rounding: near-zero forgetting
        assert all(rows[3][k] >= rows[k][k] - 0.05 for k in range(3))
        return
    for k, task in enumerate(stream):
        ids = torch.full((len(task.test_x),), k)
        with torch.no_grad():
            own = learner.forward(task.test_x, ids)[:, list(task.classes)]
            assert torch.equal(own, logits[k]), "the task's own logits stay bit-identical"
        assert [rows[i][k] for i in range(k, 4)] == [rows[k][k]] * (4 - k)


# ---------------------------------------------------------------- on the ConvNet
def two_image_tasks(streams):
    full = streams["task"]
    return Stream(full.tasks[:2], "task", full.num_outputs)


def convnet_learner(name, stream, params=None, epochs=5, seed=0):
    """A small ConvNet (8 and 16 filters, 32 hidden units) on the 8x8 digits, with weight decay
    and Adam's moments carried across tasks: both move a weight whose gradient is zero. Whole
    epochs, so HAT's annealed gate scale ends each task at s_max."""
    torch.manual_seed(seed)  # HAT's task embeddings come from the global generator
    model = build_model("convnet", stream.input_shape, stream.num_outputs, seed=seed,
                        channels=(8, 16), hidden=32)
    learner = Learner(model, build_strategy(name, params or {}), epochs=epochs,
                      batch_size=32, seed=0, weight_decay=0.01, reset_optimizer=False)
    learner.bind(stream)
    return learner


def task_logits(learner, task):
    ids = torch.full((len(task.test_x),), task.task_id)
    with torch.no_grad(), evaluating(learner.model):
        return learner.forward(task.test_x, ids)[:, list(task.classes)]


def test_pnn_convnet_columns_are_frozen_with_their_batchnorm_statistics(digits_streams):
    """Column 0 (convolutions, BatchNorm affine and running statistics, the Linear layers) is
    bit-identical after task 1, so task 0's logits and task-incremental accuracy are too; the
    new column reads column 0's feature maps through 1x1-convolution adapters."""
    stream = two_image_tasks(digits_streams)
    learner = convnet_learner("pnn", stream)
    learner.learn(stream[0])
    network = learner.model
    column = {k: v.clone() for k, v in network.columns[0].state_dict().items()}
    logits, row = task_logits(learner, stream[0]), learner.evaluate(stream.tasks)
    learner.learn(stream[1])
    assert {"0.norm.running_mean", "1.norm.running_var", "1.layer.weight"} <= set(column)
    for key, value in network.columns[0].state_dict().items():
        assert torch.equal(value, column[key]), f"column 0's {key} moved"
    assert torch.equal(task_logits(learner, stream[0]), logits)
    final = learner.evaluate(stream.tasks)
    assert final[0] == row[0] and final[1] >= 0.7, (row, final)  # chance: 0.5
    convs = [a for a in network.adapters[1] if isinstance(a.project, torch.nn.Conv2d)]
    assert [a.project.kernel_size for a in convs] == [(1, 1), (1, 1)]
    assert isinstance(convs[0].lateral, torch.nn.Conv2d)  # conv -> conv, 3x3 like the layer
    assert isinstance(convs[1].lateral, torch.nn.Linear)  # conv maps -> the hidden Linear


def test_hat_convnet_masks_filters_per_channel(digits_streams):
    """After task 1, every weight between units task 0 used (filters of the convolutions,
    units of the hidden Linear layer, which reads each used channel at every position), and
    the used channels' BatchNorm scale, shift and running statistics, are bit-identical; the
    weights HAT leaves free have moved; task 0 keeps its accuracy."""
    stream = two_image_tasks(digits_streams)
    learner = convnet_learner("hat", stream)
    hat, network = learner.strategy.parts[0], learner.model
    learner.learn(stream[0])
    used = [torch.ones(1), *hat.used.split(network.widths)]
    hidden = list(network.blocks[:-1])
    before = [{k: v.clone() for k, v in b.state_dict().items()} for b in hidden]
    row = learner.evaluate(stream.tasks)
    learner.learn(stream[1])
    final = learner.evaluate(stream.tasks)
    assert [b.convolutional for b in hidden] == [True, True, False]
    for i, (block, old) in enumerate(zip(hidden, before, strict=True)):
        weight = block.layer.weight.detach()
        unit = used[i + 1] == 1
        inputs = used[i].repeat_interleave(weight.shape[1] // len(used[i]))  # per position
        frozen = torch.minimum(used[i + 1][:, None], inputs[None, :]) == 1
        if block.convolutional:
            frozen = frozen[:, :, None, None].expand_as(weight)
        assert 0 < int(unit.sum()) < len(unit), f"layer {i}: task 0 uses some units"
        assert torch.equal(weight[frozen], old["layer.weight"][frozen]), f"layer {i} moved"
        assert (weight[~frozen] != old["layer.weight"][~frozen]).float().mean() > 0.9
        per_unit = ["layer.bias"] + (["norm.weight", "norm.bias", "norm.running_mean",
                                      "norm.running_var"] if block.convolutional else [])
        for key in per_unit:
            now = block.state_dict()[key]
            assert torch.equal(now[unit], old[key][unit]), f"layer {i}: {key} moved"
            assert (now[~unit] != old[key][~unit]).all(), f"layer {i}: {key} stuck"
    assert final[0] >= row[0] - 0.02 and final[1] >= 0.7, (row, final)


@pytest.mark.parametrize("name", ["pnn", "hat"])
def test_convnet_restored_after_task_1_continues_identically(digits_streams, name):
    """The columns, adapters, gates and every BatchNorm's statistics come back from a
    checkpoint into a learner built with other weights."""
    stream = two_image_tasks(digits_streams)
    uninterrupted = convnet_learner(name, stream, epochs=2)
    for task in stream:
        uninterrupted.learn(task)
    first = convnet_learner(name, stream, epochs=2)
    first.learn(stream[0])
    state = safe_roundtrip(first.state_dict())
    resumed = convnet_learner(name, stream, epochs=2, seed=5)
    resumed.load_state_dict(state)
    resumed.learn(stream[1])
    assert resumed.evaluate(stream.tasks) == uninterrupted.evaluate(stream.tasks)
    for (key, a), (_, b) in zip(uninterrupted.model.state_dict().items(),
                                resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), key


# ---------------------------------------------------------------- growth and masks
def pnn_parameter_total(columns, column, adapters, width=None):
    """Rusu et al.'s columns plus adapters: column k (k >= 1) reads the k earlier columns'
    previous layer through alpha (1), V (k * source -> m units or 1x1-conv channels, with bias)
    and U (m -> the layer, ``target`` weights per unit of m, no bias); ``adapters`` lists
    (source, target) per adapted layer."""
    total = columns * column
    for k in range(1, columns):
        for source, target in adapters:
            m = width or source
            total += 1 + k * source * m + m + m * target
    return total


def pnn_parameter_count(sizes, columns, adapter_width=None):
    """An MLP's columns: layer i reads layer i-1 (i >= 2)."""
    column = sum(i * o + o for i, o in sizes)
    return pnn_parameter_total(columns, column, sizes[1:], adapter_width)


@pytest.mark.parametrize("adapter_width", [None, 8])
def test_pnn_grows_as_the_paper_predicts(digits_streams, adapter_width):
    stream = four_tasks(digits_streams)
    learner = make_learner("pnn", stream, params={"adapter_width": adapter_width}, iterations=1)
    sizes = [(64, 32), (32, 32), (32, stream.num_outputs)]
    counts = []
    for task in stream:
        learner.learn(task)
        counts.append(sum(p.numel() for p in learner.model.parameters()))
        assert counts[-1] == pnn_parameter_count(sizes, task.task_id + 1, adapter_width)
        trainable = sum(p.numel() for p in learner.trainable_parameters())
        assert trainable == counts[-1] - (counts[-2] if len(counts) > 1 else 0)
    growth = [b - a for a, b in zip(counts, counts[1:], strict=False)]
    m = adapter_width or 32
    assert growth[2] - growth[1] == growth[1] - growth[0] == 32 * m + 32 * m  # quadratic
    assert learner.strategy.footprint().parameters_added == counts[-1] - counts[0]


def pnn_convnet_parameter_count(columns, c1, c2, hidden, positions, outputs, width=None):
    """The ConvNet's columns (3x3 convs with BatchNorm, then Linear layers); adapters into
    conv 2 (U a 3x3 conv), the hidden Linear (V a 1x1 conv, U Linear on the flattened maps) and
    the head."""
    column = (9 * c1 + 3 * c1) + (9 * c1 * c2 + 3 * c2) + (c2 * positions * hidden + hidden) \
        + (hidden * outputs + outputs)
    adapters = [(c1, 9 * c2), (c2, positions * hidden), (hidden, outputs)]
    return pnn_parameter_total(columns, column, adapters, width)


@pytest.mark.parametrize("adapter_width", [None, 4])
def test_pnn_convnet_grows_as_the_paper_predicts(digits_streams, adapter_width):
    stream = four_tasks(digits_streams)
    learner = convnet_learner("pnn", stream, params={"adapter_width": adapter_width}, epochs=1)
    learner.iterations = 1
    for task in stream:
        learner.learn(task)
        count = sum(p.numel() for p in learner.model.parameters())
        expected = pnn_convnet_parameter_count(task.task_id + 1, 8, 16, 32, 4, 10, adapter_width)
        assert count == expected


@pytest.mark.parametrize("prune_ratio", [None, 0.5])
def test_packnet_masks_are_disjoint_and_fit_the_layer(digits_streams, prune_ratio):
    stream = four_tasks(digits_streams)
    learner = make_learner("packnet", stream, params={"prune_ratio": prune_ratio}, iterations=3)
    strategy = learner.strategy.parts[0]
    weights = dict(learner.model.named_parameters())
    for task in stream:
        learner.learn(task)
        for name, masks in strategy.masks().items():
            assert masks.shape[0] == task.task_id + 1
            assert int(masks.sum(0).max()) <= 1, "disjoint"
            assert torch.equal(masks.any(0), strategy.owners[name] != FREE)
            assert not weights[name][strategy.owners[name] == FREE].any(), "pruned weights are 0"
            n, shares = masks[0].numel(), masks.flatten(1).sum(1).tolist()
            for k, share in enumerate(shares):
                expected = n / 4 if prune_ratio is None else n * 0.5 ** (k + 1)
                if prune_ratio is not None and k == task.task_id:
                    expected = n * 0.5 ** k * 0.5
                assert abs(share - expected) <= 1, (name, k, share, expected)
    assert int(strategy.masks()["body.1.weight"].sum()) == (64 * 32 if prune_ratio is None
                                                           else math.ceil(64 * 32 * 15 / 16))


@pytest.mark.parametrize("anchored", ["ewc", "online-ewc", "si", "mas", "l2"])
@pytest.mark.parametrize("growing", ["pnn", "hat"])
def test_parameter_anchors_and_growing_models_are_refused_together(anchored, growing):
    with pytest.raises(ConfigurationError, match=f"{anchored} anchors every trainable "
                                                 f"parameter.*{growing} adds new parameters"):
        build_strategy(f"{anchored}+{growing}")


@pytest.mark.parametrize("spec", ["lwf+pnn", "er+pnn", "er+hat", "ewc+packnet"])
def test_the_combinations_the_refusal_suggests_train(digits_streams, spec):
    """Each combination learns its tasks, and its first part acts: the accuracies differ from
    the architecture's alone. Except EWC with PackNet: PackNet trains only the weights it freed,
    which carry no importance, and freezes every other, so EWC's penalty never moves a weight
    and ewc+packnet is packnet, bit for bit."""
    stream = four_tasks(digits_streams)
    combined = make_learner(spec, stream, iterations=25).fit(stream).accuracy_matrix
    alone = make_learner(spec.split("+")[1], stream, iterations=25).fit(stream).accuracy_matrix
    assert sum(combined[k][k] for k in range(4)) / 4 > 0.6  # chance: 0.5
    assert (combined == alone) == (spec == "ewc+packnet")


@pytest.mark.parametrize("anchored", ["ewc", "l2"])
def test_a_packnet_composition_anchors_what_packnet_leaves_in_either_order(digits_streams,
                                                                            anchored):
    """After each task the anchor is the weights PackNet left (pruned, fine-tuned), the pruned
    weights (free for the next task) carry no importance while the kept ones do, and
    ``X+packnet`` and ``packnet+X`` train the same model bit for bit."""
    stream = Stream(four_tasks(digits_streams).tasks[:3], "task", 10)
    learners = []
    for spec in (f"{anchored}+packnet", f"packnet+{anchored}"):
        learner = make_learner(spec, stream, params={"prune_ratio": 0.5}, iterations=10)
        parts = {p.name: p for p in learner.strategy.parts}
        regulariser, packnet = parts[anchored], parts["packnet"]
        terms = recorded_terms(regulariser) if anchored == "ewc" else None
        for task in stream:
            learner.learn(task)
            importance, anchor = terms[-1] if terms is not None else (regulariser.importance,
                                                                      regulariser.anchor)
            for n, p in learner.model.named_parameters():
                assert torch.equal(anchor[n], p.detach()), f"{spec}: {n} anchored elsewhere"
            for n, owner in packnet.owners.items():
                freed = owner == FREE
                assert freed.any() and importance[n][~freed].any()
                assert not importance[n][freed].any(), f"{spec}: freed {n} has importance"
        learners.append(learner)
    first, second = learners
    assert first.evaluate(stream.tasks) == second.evaluate(stream.tasks)
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_restored_after_task_2_of_4_continues_identically(digits_streams, name):
    stream = four_tasks(digits_streams)
    uninterrupted = make_learner(name, stream).fit(stream).accuracy_matrix
    first = make_learner(name, stream)
    rows = []
    for task in stream.tasks[:2]:
        first.learn(task)
        rows.append(first.evaluate(stream.tasks))
    state = safe_roundtrip(first.state_dict())
    resumed = make_learner(name, stream, seed=5)  # built fresh, other init: all must come back
    resumed.load_state_dict(state)
    for task in stream.tasks[2:]:
        resumed.learn(task)
        rows.append(resumed.evaluate(stream.tasks))
    assert rows == uninterrupted
    again = make_learner(name, stream)
    for task in stream:
        again.learn(task)
    for (key, a), (_, b) in zip(again.model.state_dict().items(),
                                resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), key


# ---------------------------------------------------------------- HAT's equations
def test_hat_anneals_s_and_regularises_unused_units(digits_streams):
    stream = four_tasks(digits_streams)
    learner = make_learner("hat", stream, params={"c": 0.5}, iterations=1)
    hat = learner.strategy.parts[0]
    learner.learn(stream[0])
    assert learner.batches_per_epoch == math.ceil(len(stream[0].train_x) / 32)
    hat.before_task(stream[1])
    learner.model.train()
    batches = learner.batches_per_epoch = math.ceil(len(stream[1].train_x) / 32)  # as run_steps
    learner.step_in_task = batches  # first batch of the second epoch
    assert hat.scale() == pytest.approx(1 / 400)
    learner.step_in_task = 2 * batches - 1
    assert hat.scale() == pytest.approx(400)
    e, used = learner.model.embeddings[-1].detach(), hat.used
    expected = sum(0.5 * float(torch.sigmoid(400 * e[i])) * (1 - float(used[i]))
                   for i in range(len(e))) / sum(1 - float(u) for u in used)
    assert float(hat.penalty(None, None).detach()) == pytest.approx(expected, rel=1e-5)
    assert 0 < int((used == 1).sum()) < len(used), "task 0 uses some units, not all"


# ---------------------------------------------------------------- accuracy on embedded MNIST
@pytest.fixture(scope="module")
def mnist_runs():
    """Task-incremental split MNIST (5 tasks) and permuted MNIST (3 tasks), MLP 784-100-100."""
    base = {"scenario": "task", "seed": 0, "model_options": {"hidden": [100, 100]}}
    configs = {"split": RunConfig(benchmark="split", tasks=5, epochs=10, **base),
               "permuted": RunConfig(benchmark="permuted", tasks=3, epochs=5, **base)}
    return {(bench, name): run(config.updated(strategy=name), progress=False)
            for bench, config in configs.items() for name in ("joint", *ARCHITECTURES)}


@pytest.mark.parametrize("bench, margin", [("split", 0.015), ("permuted", 0.05)])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_high_accuracy_without_forgetting_on_mnist(mnist_runs, bench, margin, name):
    joint, result = mnist_runs[bench, "joint"], mnist_runs[bench, name]
    assert result.metrics["acc"] >= joint.metrics["acc"] - margin
    if name == "hat":
        assert result.metrics["bwt"] >= -0.005  # near zero: gates binary up to float32
    else:
        assert result.metrics["bwt"] == 0.0
