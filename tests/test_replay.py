"""The replay family: buffer policies, A-GEM's projection, generators, state, accuracy."""

from __future__ import annotations

import math
import time

import pytest
import torch

from forgetless.config import RunConfig
from forgetless.data.stream import Stream
from forgetless.errors import ConfigurationError, DataError, ScenarioError
from forgetless.experiments.runner import run
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.models.heads import apply_mask
from forgetless.strategies import STRATEGIES, Strategy, build_strategy
from forgetless.strategies.base import Batch, tensor_bytes
from forgetless.strategies.replay.agem import project
from forgetless.strategies.replay.buffer import ReplayBuffer
from forgetless.strategies.replay.generative_replay import GenerativeMemory
from forgetless.strategies.replay.generators import build_generator
from strategy_helpers import safe_roundtrip

torch.set_num_threads(1)

REPLAY = ["er", "agem", "derpp", "icarl", "generative-replay"]


def offer(buffer, labels, generator, batch=32, task=0):
    """Offer samples whose input is their own index, so kept samples can be identified."""
    for start in range(0, len(labels), batch):
        y = labels[start:start + batch]
        x = torch.arange(buffer.seen, buffer.seen + len(y), dtype=torch.float32).unsqueeze(1)
        buffer.add(x, y, torch.full_like(y, task), generator=generator)
        assert len(buffer) <= buffer.capacity


# ---------------------------------------------------------------------------- buffer
def test_reservoir_keeps_every_sample_with_equal_probability():
    n, capacity, trials = 500, 50, 400
    kept = torch.zeros(n)
    generator = torch.Generator().manual_seed(0)
    for _ in range(trials):
        buffer = ReplayBuffer(capacity, "reservoir")
        offer(buffer, torch.zeros(n, dtype=torch.long), generator, batch=50)
        index = buffer.tensors()["x"].squeeze(1).long()
        assert len(buffer) == capacity and index.unique().numel() == capacity
        kept[index] += 1
    expected = trials * capacity / n
    chi2 = ((kept - expected) ** 2 / (expected * (1 - capacity / n))).sum()
    assert chi2 < n + 4 * (2 * n) ** 0.5  # chi-square(500): mean 500, sd 31.6
    # no drift with arrival order: first and last tenth kept equally often
    assert abs(kept[:50].mean() - kept[-50:].mean()) < 0.1 * expected


def test_class_balanced_keeps_classes_within_one_sample():
    generator = torch.Generator().manual_seed(1)
    buffer = ReplayBuffer(100, "class_balanced")
    for task in range(5):
        # two new classes per task, one three times as frequent as the other
        labels = torch.tensor([2 * task] * 300 + [2 * task + 1] * 100)
        labels = labels[torch.randperm(len(labels), generator=generator)]
        offer(buffer, labels, generator, task=task)
        counts = buffer.class_counts()
        assert sorted(counts) == list(range(2 * task + 2))
        assert max(counts.values()) - min(counts.values()) <= 1
        assert sum(counts.values()) == 100
        # bookkeeping agrees with the stored labels
        assert {c: len(s) for c, s in buffer.class_slots.items() if len(s)} == counts


@pytest.mark.parametrize("policy", ["reservoir", "class_balanced"])
def test_adding_a_batch_costs_the_same_after_5_and_50_tasks(policy):
    def seconds_per_add(tasks):
        generator = torch.Generator().manual_seed(0)
        buffer = ReplayBuffer(500, policy)
        for task in range(tasks):
            offer(buffer, torch.arange(2 * task, 2 * task + 2).repeat(200), generator, 128, task)
        y = torch.tensor([2 * tasks] * 128)
        x = torch.rand(128, 1)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(20):
                buffer.add(x, y, y, generator=generator)
            best = min(best, time.perf_counter() - start)
        return best

    seconds_per_add(2)  # warm up
    assert seconds_per_add(50) <= 1.5 * seconds_per_add(5)


def test_buffer_state_round_trip_continues_identically():
    generator = torch.Generator().manual_seed(2)
    a = ReplayBuffer(40, "class_balanced")
    offer(a, torch.arange(6).repeat(20), generator)
    b = ReplayBuffer(40, "class_balanced")
    b.load_state_dict(safe_roundtrip(a.state_dict()))
    state = generator.get_state()
    offer(a, torch.arange(4, 10).repeat(20), generator)
    generator.set_state(state)
    offer(b, torch.arange(4, 10).repeat(20), generator)
    for key in ("x", "y", "task_ids"):
        assert torch.equal(a.tensors()[key], b.tensors()[key])
    with pytest.raises(ConfigurationError, match="same buffer_size"):
        ReplayBuffer(41, "class_balanced").load_state_dict(a.state_dict())


@pytest.mark.parametrize("settings", [{"buffer_size": 0}, {"buffer_size": 2.5},
                                      {"policy": "fifo"}, {"replay_batch_size": -1},
                                      {"fill": "always"}])
def test_bad_buffer_settings_say_how_to_fix_them(settings):
    with pytest.raises(ConfigurationError,
                       match="buffer_size|policy|replay_batch_size|--set fill=stream"):
        build_strategy("er", settings)


# ---------------------------------------------------------------------------- A-GEM
def test_agem_projection_removes_the_conflict_and_only_then():
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        g, r = torch.randn(2, 50, generator=generator, dtype=torch.float64)
        p = project(g, r)
        if g @ r >= 0:
            assert p is g
            continue
        assert p @ r >= -1e-9 * r.norm() * g.norm()
        slow = [g[i] - float(g @ r) / float(r @ r) * r[i] for i in range(50)]
        assert torch.allclose(p, torch.stack(slow))


@pytest.mark.parametrize("strength", [0.5, 2.0])
def test_agem_memory_strength_adds_a_step_down_the_memory_loss(strength):
    generator = torch.Generator().manual_seed(1)
    for _ in range(200):
        g, r = torch.randn(2, 50, generator=generator, dtype=torch.float64)
        p = project(g, r, strength)
        if g @ r >= 0:
            assert p is g  # no conflict: untouched, as in A-GEM
            continue
        # the paper's projection plus strength * r: the dot product with r is strength |r|^2
        assert torch.allclose(p, project(g, r) + strength * r)
        assert float(p @ r) == pytest.approx(strength * float(r @ r))


@pytest.mark.parametrize("strength", [-0.1, "0.5", True])
def test_agem_bad_memory_strength_says_how_to_fix_it(strength):
    with pytest.raises(ConfigurationError, match="memory_strength must be a number >= 0"):
        build_strategy("agem", {"memory_strength": strength})


@pytest.mark.parametrize("strength", [0.0, 0.5])
def test_agem_step_gradient_does_not_conflict_with_the_memory(digits_streams, strength):
    """The gradient A-GEM leaves for the optimiser, against the whole memory's gradient g_ref:
    no conflict, and on a conflict g~ . g_ref = strength |g_ref|^2 exactly."""
    stream = digits_streams["class"]
    agem = build_strategy("agem", {"memory_batch_size": None, "project_update": False,
                                   "memory_strength": strength})
    raw, checked = {}, []

    def flat_gradient(learner):
        return torch.cat([p.grad.reshape(-1) for p in learner.trainable_parameters()])

    class Before(Strategy):
        def before_step(self):
            raw["g"] = flat_gradient(self.learner).clone()

    class Check(Strategy):
        def before_step(self):
            learner = self.learner
            if not len(agem.buffer):
                return
            memory = agem.buffer.tensors()
            logits = learner.forward(memory["x"], memory["task_ids"])
            loss = torch.nn.functional.cross_entropy(apply_mask(
                logits, learner.output_mask.for_training(memory["task_ids"])), memory["y"])
            reference = torch.cat([g.reshape(-1) for g in torch.autograd.grad(
                loss, learner.trainable_parameters())])
            scale = float(raw["g"].norm() * reference.norm())
            after = float(flat_gradient(learner) @ reference) / scale
            if float(raw["g"] @ reference) < 0:  # a conflict: moved to strength |g_ref|^2
                after -= strength * float(reference @ reference) / scale
                checked.append(abs(after))
            else:  # no conflict: untouched
                checked.append(float((flat_gradient(learner) - raw["g"]).abs().max()))

    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, Before() + agem + Check(), iterations=30, batch_size=32)
    learner.fit(Stream(stream.tasks[:3], "class", stream.num_outputs))
    assert len(checked) == 60 and agem.projections > 5
    assert max(checked) < 1e-4


# ---------------------------------------------------------------------------- generators
@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_generator_samples_are_classified_into_their_tasks_classes(digits_streams, kind):
    stream = digits_streams["class"]
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(100,))
    settings = {"vae": {}, "gan": {"generator_lr": 1e-3}}[kind]
    strategy = build_strategy("generative-replay", {"generator": kind, "generator_budget": 4.0,
                                                    "generator_hidden": [128], "latent": 32,
                                                    **settings})
    learner = Learner(model, strategy, iterations=100, batch_size=64, seed=0)
    learner.fit(Stream(stream.tasks[:3], "class", stream.num_outputs))
    generator = torch.Generator().manual_seed(0)
    for task in range(3):  # every finished task, the first two through the generator's replay
        batch = strategy.memory(task + 1, labelled=False).sample(2000, generator)
        keep = batch.task_ids == task
        predicted = learner.predict(batch.x[keep])
        in_task = torch.isin(predicted, torch.tensor(stream.tasks[task].classes))
        assert in_task.float().mean() > 0.7  # chance: 2 of 6 seen classes
        assert (predicted == batch.y[keep]).float().mean() > 0.6  # chance 1/6


@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_a_grown_generator_generates_what_it_did_and_trains_the_new_slots(kind):
    generator = build_generator(kind, (1, 8, 8), 5, hidden=(16,), latent=4)
    generator.reset_optimizer()
    condition = torch.eye(5)[[0, 3, 4, 1]]
    before = generator.generate(condition, torch.Generator().manual_seed(0))
    generator.grow_condition(2)
    grown = torch.cat([condition, torch.zeros(4, 2)], 1)
    assert torch.equal(generator.generate(grown, torch.Generator().manual_seed(0)), before)
    new_slot = torch.eye(7)[[6, 6]]  # a new task's one-hot: its columns must learn
    layer = generator.conditioned_layers()[0]
    start = layer.weight[:, -2:].clone()  # the condition comes last in the layer's input
    generator.train_step(torch.rand(2, 1, 8, 8), new_slot, torch.Generator().manual_seed(1))
    assert torch.equal(layer.weight[:, -2], start[:, 0])  # slot 5 was not active
    assert not torch.equal(layer.weight[:, -1], start[:, 1])


def test_generative_replay_learns_a_task_beyond_its_first_stream(digits_streams, tmp_path):
    """Continuing later (docs/continuing-later.md): the generator was built for two tasks and a
    third arrives in a new session; it makes room for it and keeps replaying the old ones."""
    full = digits_streams["class"]
    first = Stream(full.tasks[:2], "class", full.num_outputs)
    results = {}
    for name in ("generative-replay", "naive"):
        learner = make_learner(name, first, {"generator_hidden": [64], "latent": 16}
                               if name != "naive" else {}, iterations=150)
        learner.fit(first)
        loaded = Learner.load(learner.save(tmp_path / f"{name}.ckpt"))
        loaded.learn(full[2])
        results[name] = loaded.evaluate(full.tasks[:3])
        again = Learner.load(loaded.save(tmp_path / f"{name}-grown.ckpt"))  # the grown shapes
        assert again.evaluate(full.tasks[:3]) == results[name]
    assert results["generative-replay"][2] > 0.6  # the new task is learned (chance: 1/6)
    old = {k: sum(v[:2]) / 2 for k, v in results.items()}
    assert old["generative-replay"] > old["naive"] + 0.3, results


@pytest.mark.parametrize("every", [1, 3])
def test_generative_replay_rehearses_each_generated_batch_for_replay_every_steps(
        digits_streams, monkeypatch, every):
    """The replay batch is generated and labelled once per ``replay_every`` steps, and the
    classifier rehearses that same batch on each of those steps."""
    drawn, rehearsed = [], []
    sample = GenerativeMemory.sample

    def recorded_sample(memory, n, rng=None, rows=None):
        drawn.append(sample(memory, n, rng, rows))
        return drawn[-1]

    monkeypatch.setattr(GenerativeMemory, "sample", recorded_sample)
    stream = Stream(digits_streams["class"].tasks[:2], "class", 10)
    learner = make_learner("generative-replay", stream, {"generator_hidden": [16], "latent": 4,
                                                         "generator_budget": 0.1,
                                                         "replay_every": every}, iterations=10)
    forward = learner.forward

    def recorded_forward(x, task_ids):
        rehearsed.append(x)
        return forward(x, task_ids)

    learner.forward = recorded_forward
    learner.fit(stream)
    drawn = [d for d in drawn if "teacher_logits" in d.extras]  # not the generator's own replay
    replayed = [x for x in rehearsed if any(x is d.x for d in drawn)]
    assert len(drawn) == math.ceil(10 / every)  # task 2's steps; task 1 has nothing to replay
    assert len(replayed) == 10
    for step, x in enumerate(replayed):
        assert x is drawn[step // every].x


@pytest.mark.parametrize("kind, settings, steps", [
    ("vae", {"generator_budget": 2.0}, 100),  # 2 x 10 classifier steps, raised to the floor
    ("vae", {"generator_budget": 2.0, "generator_min_steps": 5}, 20),  # the budget binds
    ("vae", {"generator_budget": 12.0}, 120),  # above the floor
    ("gan", {"generator_budget": 2.0}, 20),  # the GAN has no floor
])
def test_the_generator_takes_its_budget_or_its_floor_whichever_is_more(digits_streams,
                                                                       monkeypatch, kind,
                                                                       settings, steps):
    """The generator's steps per task: ``generator_budget`` times the classifier's, at least
    ``generator_min_steps`` (the VAE's 100 by default: a short budget trains too few)."""
    from forgetless.strategies.replay import generators

    taken = []
    cls = generators.GENERATORS[kind]
    train_step = cls.train_step
    monkeypatch.setattr(cls, "train_step",
                        lambda self, *a, **k: taken.append(1) or train_step(self, *a, **k))
    stream = Stream(digits_streams["class"].tasks[:1], "class", 10)
    learner = make_learner("generative-replay", stream,
                           {"generator": kind, "generator_hidden": [16], "latent": 4, **settings},
                           iterations=10)
    learner.fit(stream)
    assert len(taken) == steps


def test_generative_replay_checks_its_settings_and_inputs(digits_streams):
    with pytest.raises(ConfigurationError, match="generator=gan"):
        build_strategy("generative-replay", {"generator": "diffusion"})
    with pytest.raises(ConfigurationError, match="distill"):
        build_strategy("generative-replay", {"distill": "medium"})
    for every in (0, 2.5):
        with pytest.raises(ConfigurationError, match="replay_every=4"):
            build_strategy("generative-replay", {"replay_every": every})
    stream = digits_streams["class"]
    shifted = Stream.from_tasks([(t.train_x * 2 - 1, t.train_y, t.test_x, t.test_y)
                                 for t in stream.tasks[:2]], "class", stream.num_outputs)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(16,))
    learner = Learner(model, build_strategy("generative-replay"), iterations=2)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        learner.fit(shifted)


def test_icarl_refuses_other_scenarios(digits_streams):
    model = build_model("mlp", (1, 8, 8), 10, hidden=(16,))
    with pytest.raises(ScenarioError, match="icarl"):
        Learner(model, build_strategy("icarl")).bind(digits_streams["task"])


# ---------------------------------------------------------------------------- contracts
def make_learner(name, stream, settings=None, seed=0, iterations=25):
    torch.manual_seed(seed)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    return Learner(model, build_strategy(name, settings or {}), iterations=iterations,
                   batch_size=32, seed=seed)


@pytest.mark.parametrize("name, settings", [(n, {}) for n in REPLAY] + [
    ("generative-replay", {"generator": "gan", "generator_budget": 1.0,
                           "generator_hidden": [64]}),
    ("er", {"policy": "class_balanced"})])
def test_restored_mid_stream_continues_identically(digits_streams, name, settings):
    full = digits_streams["class"]
    stream = Stream(full.tasks[:3], "class", full.num_outputs)
    uninterrupted = make_learner(name, stream, settings)
    uninterrupted.fit(stream)
    first = make_learner(name, stream, settings)
    first.bind(stream)
    first.learn(stream[0])
    first.learn(stream[1])
    state = safe_roundtrip(first.state_dict())
    resumed = make_learner(name, stream, settings, seed=7)
    resumed.bind(stream)
    resumed.load_state_dict(state)
    resumed.learn(stream[2])
    a, b = uninterrupted.strategy.state_dict(), resumed.strategy.state_dict()
    assert tensors_of(a) and len(tensors_of(a)) == len(tensors_of(b))
    for x, y in zip(tensors_of(a), tensors_of(b), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)
    for x, y in zip(uninterrupted.model.state_dict().values(),
                    resumed.model.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def tensors_of(state):
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for k in sorted(state, key=str) for t in tensors_of(state[k])]
    if isinstance(state, (list, tuple)):
        return [t for v in state for t in tensors_of(v)]
    return []


def test_footprints_are_honest(digits_streams):
    stream = Stream(digits_streams["class"].tasks[:2], "class", 10)
    for name in REPLAY:
        learner = make_learner(name, stream)
        learner.fit(stream)
        strategy = learner.strategy.parts[0]
        footprint = learner.strategy.footprint()
        assert footprint.stores_raw_data == (name != "generative-replay")
        if name == "generative-replay":
            assert footprint.bytes_held == tensor_bytes(strategy.generator, strategy.labeller)
            assert footprint.bytes_held > tensor_bytes(learner.model)
        else:
            assert footprint.bytes_held >= tensor_bytes(strategy.buffer.store) > 0
    er = make_learner("er", stream, {"buffer_size": 50})
    er.fit(stream)
    assert er.strategy.footprint().bytes_held == 50 * (64 * 4 + 8 + 8)


def test_task_incremental_replay_carries_each_samples_own_task_id(digits_streams):
    stream = Stream(digits_streams["task"].tasks[:3], "task", 6)
    learner = make_learner("er", stream)
    learner.fit(stream)
    er = learner.strategy.parts[0]
    task = stream[2]
    batch = er.extend_batch(Batch(task.train_x[:32], task.train_y[:32], task.task_ids[:32]))
    replayed = slice(32, None)
    assert len(batch) == 64 and set(batch.task_ids[replayed].tolist()) == {0, 1, 2}
    owners = learner.output_mask.task_units[batch.task_ids, batch.y]
    assert owners.all()  # every label belongs to its sample's task


# ------------------------------------------------------------- each sample offered once
def epochs_learner(name, stream, settings, epochs=5, extra=None):
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    strategy = build_strategy(name, settings)
    if extra is not None:
        strategy = strategy + extra
    learner = Learner(model, strategy, epochs=epochs, batch_size=32, seed=0)
    learner.bind(stream)
    return learner, strategy.parts[0] if extra is not None else strategy


@pytest.mark.parametrize("name, settings", [("er", {"fill": "stream"}), ("er", {}),
                                            ("derpp", {})])
def test_several_epochs_offer_each_sample_once_and_the_buffer_holds_no_copies(digits_streams,
                                                                              name, settings):
    """Offered every batch of every epoch, a buffer of 30 after 5 epochs held copies of one
    sample; offered each sample once, the reservoir is over the task's distinct samples
    (uniform: ``test_reservoir_keeps_every_sample_with_equal_probability``)."""
    stream = digits_streams["class"]
    learner, strategy = epochs_learner(name, stream, {"buffer_size": 30, **settings})
    learner.learn(stream.tasks[0])
    learner.learn(stream.tasks[1])
    buffer = strategy.buffer
    offered = sum(len(t.train_x) for t in stream.tasks[:2])
    assert buffer.seen == offered  # 5 epochs, each sample offered once
    held = buffer.tensors()["x"].flatten(1)
    assert len(buffer) == 30 and torch.unique(held, dim=0).shape[0] == 30


def test_er_fills_its_memory_after_each_task_by_default(digits_streams):
    """fill="task_end": while a task trains, the buffer holds finished tasks only, so every
    replayed sample is an old one; the task's samples enter after it."""
    stream = digits_streams["class"]
    held_during = []

    class Spy(Strategy):
        def before_step(self):
            held_during.append(set(er.buffer.tensors().get("task_ids", torch.zeros(0)).tolist()))

    learner, er = epochs_learner("er", stream, {"buffer_size": 30}, epochs=2, extra=Spy())
    for task in stream.tasks[:3]:
        start = len(held_during)
        learner.learn(task)
        assert all(held <= set(range(task.task_id)) for held in held_during[start:])
    assert set(er.buffer.tensors()["task_ids"].tolist()) == {0, 1, 2}


def test_derpp_keeps_the_logits_of_a_samples_first_visit(digits_streams):
    stream = digits_streams["class"]
    task = stream.tasks[0]
    first = {}

    class FirstLogits(Strategy):  # what the network answered on each sample's first visit
        def penalty(self, batch, logits):
            new = self.learner.first_visit
            for x, z in zip(batch.x[: len(new)][new], logits[: len(new)][new], strict=True):
                first[x.flatten().numpy().tobytes()] = z.detach().clone()

    learner, derpp = epochs_learner("derpp", stream, {"buffer_size": len(task.train_x)},
                                    epochs=4, extra=FirstLogits())
    learner.learn(task)
    held = derpp.buffer.tensors()
    assert len(first) == len(task.train_x) == len(derpp.buffer)
    stored = torch.stack([first[x.flatten().numpy().tobytes()] for x in held["x"]])
    assert torch.equal(held["logits"], stored)
    with torch.no_grad():  # the network has moved since: later visits would differ
        assert not torch.allclose(learner.model(held["x"]), stored, atol=1e-3)


# ---------------------------------------------------------------------------- A-GEM defaults
def test_agem_defaults_are_the_papers_and_departures_show_in_the_label():
    from forgetless.experiments.runner import resolve
    from forgetless.results.summary import strategy_label

    agem = build_strategy("agem")
    assert agem.memory_strength == 0.0 and agem.project_update is False

    def label(name, settings):
        return strategy_label(resolve(RunConfig(strategy=name), build_strategy(name, settings)))

    assert label("agem", {}) == "agem"
    assert label("agem", {"memory_strength": 0.5}) == "agem(memory_strength=0.5)"
    assert label("ewc+agem", {"agem.project_update": True, "ewc.lam": 3.0}) == \
        "ewc+agem(project_update=True)"
    assert label("er", {"buffer_size": 200}) == "er"  # not a different method


@pytest.mark.parametrize("name, trains_future_units", [("agem", True), ("er", False)])
def test_class_il_agem_trains_the_whole_head_and_er_the_seen_classes(digits_streams, name,
                                                                     trains_future_units):
    """Under the seen-classes mask A-GEM's projection loses the old classes (docs/replay.md);
    A-GEM's losses cover the whole head, so units of classes not seen yet are pushed down."""
    stream = digits_streams["class"]
    learner = make_learner(name, stream, iterations=10)
    learner.bind(stream)
    future = learner.model.head.bias.detach()[4:].clone()
    learner.learn(stream.tasks[0])
    learner.learn(stream.tasks[1])  # the memory is used from the second task on
    moved = not torch.equal(learner.model.head.bias.detach()[4:], future)
    assert moved is trains_future_units
    later = torch.cat([t.test_x for t in stream.tasks[2:]])
    assert set(learner.predict(later).unique().tolist()) <= {0, 1, 2, 3}


# ---------------------------------------------------------------------------- accuracy
def test_replay_beats_naive_on_embedded_split_mnist():
    def acc(strategy, **params):
        config = RunConfig(strategy=strategy, strategy_params=params, epochs=2,
                           model_options={"hidden": [200]}, seed=0)
        return run(config, progress=False).metrics["acc"]

    naive = acc("naive")
    assert naive < 0.25
    for name, params in [("er", {}), ("derpp", {}), ("icarl", {}), ("agem", {}),
                         ("generative-replay", {"generator_budget": 2.0})]:
        assert acc(name, **params) > naive + 0.35, name


def test_hybrid_ewc_plus_er(digits_streams):
    assert "ewc" in STRATEGIES
    stream = digits_streams["class"]
    er_alone = make_learner("er", stream, iterations=150)
    hybrid = make_learner("ewc+er", stream, {"ewc.lam": 1.0}, iterations=150)
    naive = make_learner("naive", stream, iterations=150)
    results = {k: v.fit(stream).accuracy_matrix[-1] for k, v in
               (("er", er_alone), ("hybrid", hybrid), ("naive", naive))}
    mean = {k: sum(v) / len(v) for k, v in results.items()}
    assert mean["hybrid"] > mean["naive"] + 0.25
    assert hybrid.strategy.family == "hybrid"
    parts = [p.name for p in hybrid.strategy.parts]
    assert parts == ["ewc", "er"]
    footprint = hybrid.strategy.footprint()
    assert footprint.stores_raw_data
    assert footprint.bytes_held > er_alone.strategy.footprint().bytes_held  # EWC's anchors too
    assert results["hybrid"] != results["er"]  # the EWC penalty acted
