"""GEM's projection, ER-ACE's asymmetric loss and GDumb's memory and fresh model: each checked
against a hand-made case or a reference, and against the same code with the ingredient off."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
import torch.nn.functional as F

from forgetless.data.stream import Stream
from forgetless.errors import ConfigurationError
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.models.heads import apply_mask
from forgetless.strategies import Strategy, build_strategy
from forgetless.strategies.base import Batch
from forgetless.strategies.replay import gem as gem_module
from forgetless.strategies.replay.gdumb import greedy_class_balanced
from forgetless.strategies.replay.gem import project_to_memories


def learner_for(spec, stream, iterations=20, seed=0, settings=None):
    torch.manual_seed(seed)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, build_strategy(spec, settings or {}), iterations=iterations,
                      batch_size=32, seed=seed)
    learner.bind(stream)
    return learner


def three_tasks(streams, scenario="class"):
    full = streams[scenario]
    return Stream(full.tasks[:3], scenario, full.num_outputs)


# ---------------------------------------------------------------------------- GEM
def closest_feasible(g, memories):
    """Brute force over active sets: the closest vector to g with memories @ z >= 0."""
    best = None
    for k in range(memories.shape[0] + 1):
        for rows in itertools.combinations(range(memories.shape[0]), k):
            m = memories[list(rows)]
            v = torch.linalg.solve(m @ m.T, -(m @ g)) if k else torch.zeros(0, dtype=g.dtype)
            z = g + v @ m
            if (v >= -1e-12).all() and (memories @ z >= -1e-9).all():
                if best is None or (z - g).norm() < (best - g).norm():
                    best = z
    return best


def test_gem_projection_by_hand():
    g, m = torch.tensor([1.0, -1.0]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(project_to_memories(g, m, eps=0.0), torch.tensor([1.0, 0.0]))
    g, m = torch.tensor([-1.0, -1.0]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert torch.allclose(project_to_memories(g, m, eps=0.0), torch.zeros(2), atol=1e-7)
    g = torch.tensor([1.0, 1.0])
    assert project_to_memories(g, m) is g  # no conflict: untouched


def test_gem_projection_is_the_closest_gradient_that_conflicts_with_no_memory():
    generator = torch.Generator().manual_seed(0)
    conflicts = 0
    for _ in range(60):
        tasks = int(torch.randint(1, 6, (1,), generator=generator))
        m = torch.randn(tasks, 12, generator=generator, dtype=torch.float64)
        g = torch.randn(12, generator=generator, dtype=torch.float64)
        z = project_to_memories(g, m, eps=0.0)
        assert (m @ z >= -1e-9).all()
        assert torch.allclose(z, closest_feasible(g, m), atol=1e-8)
        conflicts += bool((m @ g < 0).any())
    assert conflicts > 20


def test_gem_memory_strength_is_a_lower_bound_on_the_dual_variables():
    generator = torch.Generator().manual_seed(1)
    for _ in range(30):
        m = torch.randn(3, 10, generator=generator, dtype=torch.float64)
        g = -m.sum(0)  # conflicts with every memory
        z = project_to_memories(g, m, margin=0.5, eps=0.0)
        v = torch.linalg.lstsq(m.T, (z - g)[:, None]).solution.flatten()
        assert (v >= 0.5 - 1e-9).all()


@pytest.mark.parametrize("strength", [-1, "0.5"])
def test_gem_bad_settings_say_how_to_fix_them(strength):
    with pytest.raises(ConfigurationError, match="memory_strength must be a number >= 0"):
        build_strategy("gem", {"memory_strength": strength})


def flat_gradient(learner):
    return torch.cat([p.grad.reshape(-1) for p in learner.trainable_parameters()])


class RawGradient(Strategy):
    """Placed before GEM: the gradient backward gave."""

    def before_step(self):
        self.gradient = flat_gradient(self.learner).clone()


class MemoryGradients(Strategy):
    """Placed after GEM: each old task's memory gradient against the raw gradient and the one
    GEM left (cosines)."""

    def __init__(self, gem, raw):
        self.gem, self.raw, self.dots = gem, raw, []

    def before_step(self):
        learner, after = self.learner, flat_gradient(self.learner)
        for memory in self.gem.memories:
            held = memory.tensors()
            loss = learner.loss(learner.forward(held["x"], held["task_ids"]), held["y"],
                                held["task_ids"])
            reference = torch.cat([g.reshape(-1) for g in torch.autograd.grad(
                loss, learner.trainable_parameters())])
            scale = float(reference.norm() * self.raw.gradient.norm())
            self.dots.append((float(self.raw.gradient @ reference) / scale,
                              float(after @ reference) / scale))


@pytest.mark.parametrize("scenario", ["task", "class"])
def test_gem_step_gradient_conflicts_with_no_old_tasks_memory(digits_streams, scenario,
                                                              monkeypatch):
    """Against every old task's whole memory, recomputed after GEM's step: no conflict left
    (without the 1e-3 ridge the authors add to G G^T for their solver, which leaves conflicts
    of order 1e-3 |g| |g_k|)."""
    exact = functools.partial(gem_module.project_to_memories, eps=0.0)
    monkeypatch.setattr(gem_module, "project_to_memories", exact)
    stream = three_tasks(digits_streams, scenario)
    gem = build_strategy("gem", {"memory_per_task": 40, "memory_strength": 0.0})
    raw = RawGradient()
    check = MemoryGradients(gem, raw)
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    Learner(model, raw + gem + check, iterations=20, batch_size=32).fit(stream)
    assert len(check.dots) == 20 * 1 + 20 * 2 and gem.projections > 3
    assert min(before for before, _ in check.dots) < -0.05, "backward's gradients conflicted"
    assert min(after for _, after in check.dots) > -1e-4, "GEM's gradient conflicts with none"


# ---------------------------------------------------------------------------- ER-ACE
def logit_gradient(learner, batch):
    """d(loss)/d(logits) of one training step's loss on ``batch`` (the Learner's loss plus
    the strategy's penalty), computed as the Learner computes it."""
    batch = learner.strategy.extend_batch(batch)
    logits = learner.forward(batch.x, batch.task_ids).detach().requires_grad_(True)
    loss = learner.loss(logits, batch.y, batch.task_ids)
    term = learner.strategy.penalty(batch, logits) if learner.strategy.uses("penalty") else None
    loss = loss if term is None else loss + term
    return batch, logits, loss, torch.autograd.grad(loss, logits)[0]


@pytest.mark.parametrize("name", ["er-ace", "er"])
def test_er_ace_incoming_samples_never_push_absent_classes_down(digits_streams, name):
    """ER-ACE: the incoming rows' loss is over the classes present in them (zero gradient on
    every other unit), the replayed rows' over every seen class; ER (the same code without the
    asymmetry) pushes the old classes down from the incoming rows."""
    stream = three_tasks(digits_streams)
    learner = learner_for(name, stream)
    learner.learn(stream[0])
    learner.learn(stream[1])
    task = stream[2]
    learner.output_mask.mark_seen(task.task_ids[:1])
    batch, logits, loss, grad = logit_gradient(
        learner, Batch(task.train_x[:32], task.train_y[:32], task.task_ids[:32]))
    incoming, replayed = slice(0, 32), slice(32, None)
    absent = torch.ones(10, dtype=torch.bool)
    absent[batch.y[incoming].unique()] = False
    old = torch.tensor(sorted(stream[0].classes + stream[1].classes))
    pushed = grad[incoming][:, absent].abs().max()
    assert grad[replayed][:, old].abs().max() > 1e-3
    if name == "er":
        assert pushed > 1e-3
        return
    assert pushed == 0
    seen = learner.output_mask.for_training(batch.task_ids)
    present = ~absent
    expected = (F.cross_entropy(apply_mask(logits[incoming], present), batch.y[incoming],
                                reduction="sum")
                + F.cross_entropy(apply_mask(logits[replayed], seen), batch.y[replayed],
                                  reduction="sum")) / len(batch)
    assert torch.allclose(loss, expected, rtol=1e-5)


# ---------------------------------------------------------------------------- GDumb
def test_gdumb_sampler_by_hand():
    draws = [[0.0, 0.0]] * 16
    # full with class 0; each new class evicts from the largest class until balanced
    kept = greedy_class_balanced([0, 0, 0, 0, 1, 1, 2], 4, draws[:7])
    assert sorted(kept) == kept and len(kept) == 4
    labels = [[0, 0, 0, 0, 1, 1, 2][k] for k in kept]
    assert sorted(labels) == [0, 1, 1, 2] and 6 in kept
    # a class at its share is not replaced within itself: the late 0 is dropped
    assert greedy_class_balanced([0, 0, 1, 1, 0], 4, draws[:5]) == [0, 1, 2, 3]


def test_gdumb_memory_is_class_balanced_and_the_model_starts_from_scratch(digits_streams):
    """After three tasks the memory holds the same number of every class seen; and the model
    after a task does not depend on the weights before it (trained from scratch on the memory):
    wrecking the weights between tasks changes nothing, bit for bit."""
    stream = three_tasks(digits_streams)
    models = []
    for wreck in (False, True):
        learner = learner_for("gdumb", stream, settings={"buffer_size": 60})
        learner.learn(stream[0])
        if wreck:
            with torch.no_grad():
                for p in learner.model.parameters():
                    p.add_(torch.randn_like(p))  # (10x would trip the divergence guard)
        learner.learn(stream[1])
        learner.learn(stream[2])
        models.append(learner.model)
    gdumb = learner.strategy.parts[0]
    assert gdumb.buffer.class_counts() == {c: 10 for c in range(6)}
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)
