"""MIR (maximally interfered retrieval): it replays the memory samples a virtual step on the
incoming batch hurts most, the virtual step leaves the learner untouched, and on a small
class-incremental stream it keeps more of the first task than naive fine-tuning."""

from __future__ import annotations

import copy

import pytest
import torch

from forgetless.data.benchmarks import build_stream
from forgetless.data.stream import Stream, Task
from forgetless.errors import ConfigurationError, ScenarioError
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import build_strategy
from forgetless.strategies.base import BOUNDARY_HOOKS, Batch, TrainingData, overrides
from forgetless.strategies.replay.mir import MaximallyInterferedRetrieval, per_sample_loss

torch.set_num_threads(1)


def mir_of(learner) -> MaximallyInterferedRetrieval:
    return learner.strategy.parts[0]


def two_class_learner(lr: float, **mir) -> Learner:
    """A linear model without bias over 2 inputs and 3 output units (unit 2 never seen),
    bound to a one-task class-incremental stream of classes 0 and 1. Input 1's weights make
    samples ``[0, 1]`` of class 1 badly fit (loss about 6); input 0's weights start at zero."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    stream = Stream([Task(0, x, y, x, y, (0, 1), "two classes")], "class", 3)
    model = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 3.0], [0.0, -3.0], [0.0, 0.0]]))
    learner = Learner(model, MaximallyInterferedRetrieval(**mir), batch_size=8, lr=lr,
                      progress=False)
    learner.bind(stream)
    learner.output_mask.mark_seen(torch.tensor([0]))
    return learner


@pytest.mark.parametrize("lr", [1e-3, 0.1])
def test_retrieval_replays_the_candidates_the_virtual_step_hurts_most(lr):
    """The incoming batch (inputs [1, 0], class 0) moves input 0's weights toward class 0.
    Memory: 8 samples [a, 0] of class 1 (the step raises their loss: the answer), 8 samples
    [a, 0] of class 0 (the step lowers it) and 4 samples [0, 1] of class 1 (badly fit, but
    the step does not touch their loss: a retrieval by loss alone would pick them). A random
    choice of 8 of the 20 candidates is the answer with probability 1 / C(20, 8)."""
    learner = two_class_learner(lr, buffer_size=20, candidates=20, replay_batch_size=8)
    mir = mir_of(learner)
    a = torch.linspace(1.0, 2.0, 8)[:, None]
    zeros = torch.zeros(8, 1)
    memory_x = torch.cat([torch.cat([a, zeros], 1), torch.cat([a, zeros], 1),
                          torch.tensor([[0.0, 1.0]]).expand(4, 2)])
    memory_y = torch.tensor([1] * 8 + [0] * 8 + [1] * 4)
    marker = torch.arange(20)  # the task ids carry each sample's index, to identify it
    mir.buffer.add(memory_x, memory_y, marker)
    incoming = Batch(torch.tensor([[1.0, 0.0]]).expand(8, 2), torch.zeros(8, dtype=torch.long),
                     torch.zeros(8, dtype=torch.long))

    replayed = mir.most_interfered(incoming)

    assert sorted(replayed.task_ids.tolist()) == list(range(8))
    assert torch.equal(replayed.x, memory_x[replayed.task_ids])
    assert torch.equal(replayed.y, memory_y[replayed.task_ids])


def _bn_learner(**mir) -> tuple[Learner, Stream]:
    stream = build_stream("split", "class", tasks=2, source="digits", seed=0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16),
                                torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                torch.nn.Dropout(0.2), torch.nn.Linear(16, stream.num_outputs))
    learner = Learner(model, MaximallyInterferedRetrieval(**mir), iterations=6, batch_size=10,
                      progress=False)
    learner.bind(stream)
    return learner, stream


def test_the_virtual_step_leaves_the_parameters_gradients_optimiser_and_statistics_alone():
    learner, stream = _bn_learner(buffer_size=40)
    learner.learn(stream[0])  # Adam has moments, every parameter a .grad, BatchNorm statistics
    model, mir = learner.model, mir_of(learner)
    model.train()
    weights = {k: v.clone() for k, v in model.state_dict().items()}  # BatchNorm buffers too
    grads = [p.grad.clone() for p in model.parameters()]
    optimiser = copy.deepcopy(learner.optimizer.state_dict())
    task = stream[1]
    incoming = Batch(task.train_x[:10], task.train_y[:10], task.task_ids[:10])

    replayed = mir.most_interfered(incoming)

    assert len(replayed) == 10 and set(replayed.y.tolist()) <= set(stream[0].classes)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
    after = learner.optimizer.state_dict()
    assert after["state"].keys() == optimiser["state"].keys()
    for key, moments in optimiser["state"].items():
        assert all(torch.equal(v, after["state"][key][name]) for name, v in moments.items())
    assert all(m.training for m in model.modules())  # eval mode for the scoring only


def test_per_sample_losses_average_to_the_learners_masked_loss():
    learner, stream = _bn_learner()
    learner.output_mask.mark_seen(torch.tensor([0]))  # class-incremental: classes 0 and 1
    task = stream[1]  # its classes are not seen yet: masked out, the loss is over 0 and 1
    batch = Batch(task.train_x[:12], stream[0].train_y[:12], task.task_ids[:12])
    logits = learner.model(batch.x)
    mean = learner.loss(logits, batch.y, batch.task_ids)
    assert torch.allclose(per_sample_loss(learner, logits, batch).mean(), mean)


def _online_accuracy_on_first_task(name: str, params: dict, epochs: int = 1):
    stream = build_stream("split", "class", tasks=2, source="digits", seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(64,))
    learner = Learner(model, build_strategy(name, params), epochs=epochs, batch_size=10,
                      lr=1e-2, seed=0, progress=False)
    fit = learner.fit(stream)
    return fit.accuracy_matrix[-1][0], learner, stream


def test_mir_online_keeps_more_of_the_first_task_than_naive_and_offers_each_sample_once():
    naive, _, _ = _online_accuracy_on_first_task("naive", {})
    kept, learner, stream = _online_accuracy_on_first_task("mir", {"buffer_size": 100})
    assert naive < 0.2 and kept > naive + 0.5
    mir = mir_of(learner)
    assert mir.buffer.seen == sum(len(t.train_x) for t in stream)
    _, twice, stream = _online_accuracy_on_first_task("mir", {"buffer_size": 100}, epochs=2)
    assert mir_of(twice).buffer.seen == sum(len(t.train_x) for t in stream)  # not 2x


def test_mir_learns_from_a_stream_whose_boundaries_it_is_not_told():
    """No boundary hook, so the Learner's task-free fit accepts it; a stand-in for that fit
    (the two tasks concatenated, no before_task/after_task, no current task) trains it."""
    learner, stream = _bn_learner(buffer_size=50)
    mir = mir_of(learner)
    assert mir.boundary_reason() is None
    assert not any(overrides(mir, hook) for hook in BOUNDARY_HOOKS)
    learner.task_free, learner.current_task = True, None
    data = TrainingData(*(torch.cat([getattr(t, f) for t in stream])
                          for f in ("train_x", "train_y", "task_ids")))
    learner.output_mask.mark_seen(data.task_ids)
    learner.rebuild_optimizer()
    before = [p.detach().clone() for p in learner.model.parameters()]
    learner.run_steps(data, 20)
    assert len(mir.buffer) == 50 and mir.buffer.seen == 200
    assert any(not torch.equal(b, p) for b, p in zip(before, learner.model.parameters(),
                                                     strict=True))


@pytest.mark.parametrize("params, message", [
    ({"candidates": 0}, "candidates must be a positive whole number"),
    ({"replay_batch_size": 2.5}, "replay_batch_size must be a positive whole number"),
    ({"virtual_lr": -0.1}, "virtual_lr must be a positive number"),
    ({"virtual_lr": "big"}, "virtual_lr must be a positive number"),
])
def test_bad_hyperparameters_are_refused_in_one_sentence(params, message):
    with pytest.raises(ConfigurationError, match=message):
        MaximallyInterferedRetrieval(**params)


def test_fewer_candidates_than_replayed_samples_is_refused_when_the_learner_is_known():
    with pytest.raises(ConfigurationError, match=r"candidates \(20\) must be at least the "
                                                 r"replayed batch \(32\)"):
        Learner(torch.nn.Linear(2, 2), MaximallyInterferedRetrieval(candidates=20),
                batch_size=32, progress=False)


def test_a_language_model_is_refused_saying_why():
    pytest.importorskip("transformers")
    model = build_model("tiny-lm", None, None, seed=0)
    x = torch.ones(2, 4, dtype=torch.long)
    stream = Stream([Task(0, x, x, x, x, (), "text")], "domain", 0,
                    objective="language_modelling")
    with pytest.raises(ScenarioError, match="does not serve language modelling"):
        Learner(model, MaximallyInterferedRetrieval(), progress=False).fit(stream)
