"""Mutation tests: for every strategy, a behaviour that disappears when its key ingredient is
switched off. Where it is natural the test runs the method and its mutant (the ingredient
monkeypatched away, or set to zero) side by side and asserts the gap; otherwise it checks the
ingredient's exact effect (a hand-computed value) that the mutant could not produce.

Gaps are method-vs-mutant in the same run, never absolute accuracies, so they hold whatever the
evaluation protocol (e.g. class-incremental testing over seen or all classes)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from forgetless.data.stream import Stream
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import Strategy, build_strategy
from forgetless.strategies.architecture.packnet import FREE, PackNet
from forgetless.strategies.architecture.pnn import Adapter
from forgetless.strategies.regularization.quadratic import AnchoredRegularizer
from forgetless.strategies.replay import icarl as icarl_module
from forgetless.strategies.replay.common import soft_target_loss


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tasks_of(streams, scenario, count):
    full = streams[scenario]
    return Stream(full.tasks[:count], scenario, full.num_outputs)


def learner_for(spec, stream, settings=None, iterations=30, hidden=(32,), seed=0, **options):
    torch.manual_seed(seed)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=hidden)
    learner = Learner(model, build_strategy(spec, settings or {}), iterations=iterations,
                      batch_size=32, seed=seed, **options)
    learner.bind(stream)
    return learner


def part(learner, name):
    return next(p for p in learner.strategy.parts if p.name == name)


class Recorder(Strategy):
    """Calls ``on_before_step`` / ``on_after_step`` (set by a test) from its hooks."""

    def __init__(self, label="recorder"):
        self.label = label
        self.on_before_step = self.on_after_step = None

    def before_step(self):
        if self.on_before_step:
            self.on_before_step(self.learner)

    def after_step(self):
        if self.on_after_step:
            self.on_after_step(self.learner)


class After(Recorder):
    """A second recorder (a composition takes each strategy once)."""


# ------------------------------------------------------------------ regularisers
def zero_importance(monkeypatch):
    """The mutant: every anchored regulariser penalises with zero importance."""
    original = AnchoredRegularizer.anchor_to

    def anchor_to(self, weights, anchors, offset=0.0):
        original(self, {n: torch.zeros_like(w) for n, w in weights.items()}, anchors, 0.0)

    monkeypatch.setattr(AnchoredRegularizer, "anchor_to", anchor_to)


@pytest.mark.parametrize("name, settings", [("ewc", {"lam": 1e6}), ("online-ewc", {"lam": 1e6}),
                                            ("si", {"c": 1e5}), ("mas", {"lam": 1e5}),
                                            ("l2", {"lam": 1e3})])
def test_importance_is_what_holds_the_weights(digits_streams, name, settings, monkeypatch):
    """EWC (zero Fisher), SI (zero path integral), MAS, L2: with the importance zeroed the
    weights drift like naive's; with it they stay near the anchor."""
    stream = tasks_of(digits_streams, "domain", 2)
    drift = {}
    for label in ("method", "mutant"):
        if label == "mutant":
            zero_importance(monkeypatch)
        learner = learner_for(name, stream, settings, iterations=60)
        learner.learn(stream[0])
        anchor = [p.detach().clone() for p in learner.model.parameters()]
        learner.learn(stream[1])
        drift[label] = torch.cat([(p.detach() - a).abs().flatten() for p, a in
                                  zip(learner.model.parameters(), anchor, strict=True)]).mean()
    assert drift["mutant"] > 0.01, "task 1 moves the unregularised weights"
    assert drift["method"] < drift["mutant"] / 5


def test_lwf_distillation_keeps_the_old_answers(digits_streams):
    """LwF without distillation (alpha 0) changes its answers on task 0's inputs much more."""
    stream = tasks_of(digits_streams, "domain", 2)
    change = {}
    for label, alpha in (("method", 10.0), ("mutant", 0.0)):
        learner = learner_for("lwf", stream, {"alpha": alpha}, iterations=60)
        learner.learn(stream[0])
        with torch.no_grad():
            before = F.softmax(learner.model(stream[0].test_x), 1)
        learner.learn(stream[1])
        with torch.no_grad():
            after = F.softmax(learner.model(stream[0].test_x), 1)
        change[label] = (after - before).abs().sum(1).mean()
    assert change["method"] < change["mutant"] / 2


# ------------------------------------------------------------------ replay
class BatchTasks(Strategy):
    """Placed after a replay strategy: the task ids of every batch that reaches the loss."""

    def __init__(self):
        self.steps = []

    def penalty(self, batch, logits):
        self.steps.append(set(batch.task_ids.tolist()))


def test_er_trains_on_old_samples_in_every_step(digits_streams):
    """ER: every step of task 1 trains on task 0's samples too (the mutant, naive, never)."""
    stream = tasks_of(digits_streams, "class", 2)
    recorder = BatchTasks()
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, build_strategy("er", {"buffer_size": 50}) + recorder,
                      iterations=10, batch_size=32)
    learner.bind(stream)
    learner.learn(stream[0])
    recorder.steps = []
    learner.learn(stream[1])
    assert len(recorder.steps) == 10 and all(steps == {0, 1} for steps in recorder.steps)


def test_derpp_stores_the_logits_of_the_step_that_saw_the_sample(digits_streams):
    stream = tasks_of(digits_streams, "class", 1)
    learner = learner_for("derpp", stream, {"buffer_size": 500}, iterations=1)
    before = copy.deepcopy(learner.model)
    learner.learn(stream[0])
    held = part(learner, "derpp").buffer.tensors()
    with torch.no_grad():
        expected = before(held["x"])
    assert len(held["x"]) == 32
    torch.testing.assert_close(held["logits"], expected)


def test_derpp_matches_the_stored_logits_and_the_mutant_does_not(digits_streams):
    """DER++ against itself without the logit term (alpha 0): at the end, the model's logits
    on the buffer are much closer to the stored ones."""
    stream = tasks_of(digits_streams, "class", 3)
    distance = {}
    for label, alpha in (("method", 1.0), ("mutant", 0.0)):
        learner = learner_for("derpp", stream, {"buffer_size": 100, "alpha": alpha},
                              iterations=60)
        learner.fit(stream)
        held = part(learner, "derpp").buffer.tensors()
        old = held["task_ids"] < 2
        with torch.no_grad():
            logits = learner.model(held["x"][old])
        distance[label] = F.mse_loss(logits, held["logits"][old])
    assert distance["method"] < distance["mutant"] / 2


def test_derpp_draws_two_independent_memory_batches(digits_streams):
    """One batch for the logits, another for the labels (the paper's eq. 6); the mutant that
    reuses one batch for both would pass every other test."""
    stream = tasks_of(digits_streams, "class", 2)
    learner = learner_for("derpp", stream, {"buffer_size": 100}, iterations=8)
    learner.learn(stream[0])
    buffer = part(learner, "derpp").buffer
    draws = []
    sample = buffer.sample

    def recording_sample(n, generator=None):
        batch = sample(n, generator)
        draws.append(batch.x)
        return batch

    buffer.sample = recording_sample
    learner.learn(stream[1])
    assert len(draws) == 16
    assert all(not torch.equal(a, b) for a, b in zip(draws[::2], draws[1::2], strict=True))


def test_agem_projects_the_optimisers_update(digits_streams):
    """With project_update, the optimiser's actual update (here SGD with momentum) never points
    up the memory loss (to first order: update . g_ref <= 0), although its raw update did.
    Recorders on both sides of A-GEM's after_step see the update before and after."""
    stream = tasks_of(digits_streams, "class", 3)
    agem = build_strategy("agem", {"memory_batch_size": None, "project_update": True,
                                   "memory_strength": 0.0})
    raw, projected = Recorder(), After()
    seen, cosines = {}, []

    def record(learner):
        seen.clear()
        if agem._reference is not None:
            seen.update(params=agem._params, start=agem._before, reference=agem._reference,
                        raw=torch.nn.utils.parameters_to_vector(agem._params).detach().clone())

    def check(learner):
        if seen:
            moved = torch.nn.utils.parameters_to_vector(seen["params"]).detach() - seen["start"]
            raw_update = seen["raw"] - seen["start"]
            scale = float(seen["reference"].norm() * raw_update.norm())
            cosines.append((float(raw_update @ seen["reference"]) / scale,
                            float(moved @ seen["reference"]) / scale))

    raw.on_after_step, projected.on_after_step = record, check
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    Learner(model, raw + agem + projected, iterations=25, batch_size=32, optimizer="sgd",
            lr=0.05, momentum=0.9).fit(stream)  # momentum: the update is not -lr * g~
    assert len(cosines) == 50
    assert max(r for r, _ in cosines) > 1e-3, "some raw updates ascended the memory loss"
    assert max(m for _, m in cosines) < 1e-5


def test_icarl_keeps_buffer_size_over_classes_exemplars_per_class(digits_streams):
    stream = tasks_of(digits_streams, "class", 3)
    learner = learner_for("icarl", stream, {"buffer_size": 50}, iterations=10)
    icarl = part(learner, "icarl")
    for task, per_class in zip(stream, (25, 12, 8), strict=True):
        learner.learn(task)
        classes = 2 * (task.task_id + 1)
        assert icarl.buffer.class_counts() == {c: per_class for c in range(classes)}


def test_icarl_exemplars_are_herded_and_the_mutant_random_ones_are_not(digits_streams,
                                                                        monkeypatch):
    """Herding: the exemplars' mean feature is much closer to the class mean than that of a
    random choice of as many samples (the mutant)."""
    stream = tasks_of(digits_streams, "class", 1)
    error = {}
    for label in ("method", "mutant"):
        if label == "mutant":
            monkeypatch.setattr(icarl_module, "herding", lambda features, m: torch.randperm(
                features.shape[0], generator=torch.Generator().manual_seed(0))[:m])
        learner = learner_for("icarl", stream, {"buffer_size": 20}, iterations=20)
        learner.learn(stream[0])
        icarl, task = part(learner, "icarl"), stream[0]
        held = icarl.buffer.tensors()
        with torch.no_grad():
            errors = []
            for c in task.classes:
                features = icarl.features(learner.model, task.train_x[task.train_y == c])
                chosen = icarl.features(learner.model, held["x"][held["y"] == c])
                errors.append((features.mean(0) - chosen.mean(0)).norm())
        error[label] = max(errors)
    assert error["method"] < error["mutant"] / 3


def test_icarl_classifies_by_the_nearest_mean_of_exemplars(digits_streams):
    """The prediction is the nearest class mean of the normalised exemplar features, computed
    here by hand, and it differs from the logits' argmax (the mutant) on some samples."""
    stream = tasks_of(digits_streams, "class", 2)
    learner = learner_for("icarl", stream, {"buffer_size": 40}, iterations=15)
    learner.fit(stream)
    icarl = part(learner, "icarl")
    held = icarl.buffer.tensors()
    x = torch.cat([t.test_x for t in stream])
    with torch.no_grad():
        learner.model.eval()
        features = F.normalize(learner.model.features(x), dim=1)
        exemplar = F.normalize(learner.model.features(held["x"]), dim=1)
        classes = sorted(set(held["y"].tolist()))
        means = torch.stack([F.normalize(exemplar[held["y"] == c].mean(0), dim=0)
                             for c in classes])
        expected = torch.tensor(classes)[torch.cdist(features, means).argmin(1)]
        argmax = learner.model(x)[:, :len(classes)].argmax(1)
    predicted = learner.predict(x)
    assert torch.equal(predicted, expected)
    assert (predicted != argmax).any()


def test_icarl_distillation_keeps_the_old_units_outputs(digits_streams):
    """iCaRL against itself without distillation: the old classes' sigmoid outputs on both
    tasks' inputs move far less (a tiny memory, so exemplar replay cannot do the job alone)."""
    stream = tasks_of(digits_streams, "class", 2)
    x, units = torch.cat([stream[0].test_x, stream[1].test_x]), list(stream[0].classes)
    change = {}
    for label, weight in (("method", 1.0), ("mutant", 0.0)):
        learner = learner_for("icarl", stream, {"buffer_size": 4, "distillation": weight},
                              iterations=60)
        learner.learn(stream[0])
        with torch.no_grad():
            before = torch.sigmoid(learner.model(x)[:, units])
        learner.learn(stream[1])
        with torch.no_grad():
            after = torch.sigmoid(learner.model(x)[:, units])
        change[label] = (after - before).abs().mean()
    assert change["method"] < change["mutant"] / 2


def test_soft_target_loss_by_hand():
    """Teacher softened at T = 2 over its own units (the masked one gets probability 0),
    student over every unit it may use; times T^2."""
    teacher = torch.tensor([[2.0, 0.0, 5.0]])
    student = torch.tensor([[0.5, 1.0, -1.0]])
    mask_t = torch.tensor([True, True, False])
    target = torch.tensor([1.0, math.exp(-1.0), 0.0])
    target = target / target.sum()
    log_student = torch.log_softmax(student / 2, dim=1)[0]
    expected = -(target * log_student).sum() * 4
    assert torch.allclose(soft_target_loss(student, teacher, None, mask_t, 2.0), expected)


def test_generative_replay_distillation_keeps_the_old_tasks(digits_streams):
    """Generative replay against itself without its replay (distillation) loss: the old task's
    test inputs are answered with the old task's classes far more often."""
    stream = tasks_of(digits_streams, "class", 2)
    kept = {}
    for label, weight in (("method", None), ("mutant", 0.0)):
        learner = learner_for("generative-replay", stream,
                              {"replay_weight": weight, "generator_budget": 2.0,
                               "generator_hidden": [64], "latent": 16}, iterations=60)
        learner.fit(stream)
        predicted = learner.predict(stream[0].test_x)
        kept[label] = sum(int((predicted == c).sum()) for c in stream[0].classes) / len(
            predicted)
    assert kept["method"] > kept["mutant"] + 0.2


# ------------------------------------------------------------------ architectures
def test_hat_compensates_the_embedding_gradient_for_the_annealing(digits_streams):
    """Eq. 6 of Serra et al.: HAT multiplies the embedding's gradient by
    s_max (cosh(s e) + 1) / (s (cosh(e) + 1)); the mutant leaves it as backward gave it."""
    stream = tasks_of(digits_streams, "task", 1)
    hat = build_strategy("hat")
    raw, done = Recorder(), After()
    ratios = []

    def record(learner):
        raw.grad = learner.model.embeddings[-1].grad.clone()

    def check(learner):
        e, s = learner.model.embeddings[-1].detach(), hat.scale()
        expected = hat.s_max * (torch.cosh((s * e).clamp(-50, 50)) + 1) / (s * (torch.cosh(e)
                                                                                + 1))
        torch.testing.assert_close(learner.model.embeddings[-1].grad, raw.grad * expected)
        ratios.append(float(expected.max() / expected.min()))

    raw.on_before_step, done.on_before_step = record, check
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, raw + hat + done, iterations=10, batch_size=32)
    learner.fit(stream)
    assert len(ratios) == 10 and max(ratios) > 2, "the factor is far from a constant"


def test_packnet_prunes_the_smallest_magnitudes_of_the_task(digits_streams, monkeypatch):
    """Every weight PackNet frees after a task had a smaller magnitude than every weight of that
    task it keeps, layer by layer (the mutant, random pruning, breaks this at once)."""
    stream = tasks_of(digits_streams, "task", 3)
    checked = []
    original = PackNet._prune

    def prune(self, t):
        weights = {n: p.detach().abs().clone() for n, p in self.learner.model.named_parameters()}
        mine = {n: owner == t for n, owner in self.owners.items()}
        freed = original(self, t)
        for n, owner in self.owners.items():
            pruned, kept = mine[n] & (owner == FREE), mine[n] & (owner == t)
            assert pruned.any() and kept.any()
            assert weights[n][pruned].max() <= weights[n][kept].min(), (n, t)
            checked.append(n)
        return freed

    monkeypatch.setattr(PackNet, "_prune", prune)
    learner = learner_for("packnet", stream, {"prune_ratio": 0.5}, iterations=15,
                          hidden=(32, 32))
    learner.fit(stream)
    assert len(checked) == 3 * 2


def test_pnn_laterals_carry_the_earlier_columns_features(digits_streams, monkeypatch):
    """Column 1 reads column 0 through its adapters: switching them off changes its logits,
    and the adapters learn during task 1. The mutant (adapters that output zeros) fails both."""
    stream = tasks_of(digits_streams, "task", 2)
    learner = learner_for("pnn", stream, iterations=30, hidden=(32, 32))
    learner.learn(stream[0])
    learner.learn(stream[1])
    adapters = learner.model.adapters[1]
    assert len(adapters) == 2
    x, ids = stream[1].test_x, stream[1].task_ids[:1].expand(len(stream[1].test_x))
    with torch.no_grad():
        learner.model.eval()
        with_laterals = learner.model(x, ids)
        monkeypatch.setattr(Adapter, "forward", lambda self, h: 0.0)
        without = learner.model(x, ids)
    assert (with_laterals - without).abs().mean() > 0.05 * with_laterals.abs().mean()
