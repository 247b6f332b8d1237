"""The paths where a tensor's device matters, on every device the machine has (the ``device``
fixture: ``cpu`` always, ``cuda`` when a GPU is present): the learner's samplers are CPU
generators, while the model, the masks and the buffers live on the learner's device."""

from __future__ import annotations

import pytest
import torch

from forgetless.data.stream import Scenario, Stream
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.models.heads import OutputMask, apply_mask
from forgetless.strategies import build_strategy
from forgetless.strategies.architecture.packnet import FREE
from forgetless.strategies.replay.buffer import ReplayBuffer


def fitted(spec, streams, scenario, device, settings=None, tasks=2, iterations=8):
    full = streams[scenario]
    stream = Stream(full.tasks[:tasks], scenario, full.num_outputs)
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32, 32))
    learner = Learner(model, build_strategy(spec, settings or {}), iterations=iterations,
                      batch_size=32, seed=0, device=device)
    return learner, learner.fit(stream)


def test_output_masks_live_on_the_learners_device(device):
    mask = OutputMask(Scenario.TASK, 4, device)
    mask.add_task(0, [0, 1])
    mask.add_task(1, [2, 3])
    rows = mask.for_training(torch.tensor([1, 0], device=device))
    assert rows.device.type == device.type
    logits = apply_mask(torch.zeros(2, 4, device=device), rows)
    assert logits.argmax(1).tolist() == [2, 0] and logits[0, 0] < -1e30


@pytest.mark.parametrize("policy", ["reservoir", "class_balanced"])
def test_buffer_on_a_device_keeps_and_samples_what_the_cpu_does(device, policy):
    """One seed, the same samples kept and drawn whatever the device of the data."""
    held = []
    for where in ("cpu", device):
        buffer, generator = ReplayBuffer(20, policy), torch.Generator().manual_seed(0)
        for start in range(0, 100, 10):
            x = torch.arange(start, start + 10, dtype=torch.float32, device=where)[:, None]
            buffer.add(x, (x[:, 0] % 4).long(), torch.zeros(10, dtype=torch.long, device=where),
                       generator=generator)
        batch = buffer.sample(8, generator)
        assert batch.x.device.type == torch.device(where).type
        held.append((buffer.tensors()["x"].cpu(), batch.x.cpu()))
    (kept_cpu, drawn_cpu), (kept, drawn) = held
    assert torch.equal(kept_cpu, kept) and torch.equal(drawn_cpu, drawn)


def test_sampled_fisher_ewc_trains_on_the_device(digits_streams, device):
    learner, fit = fitted("ewc", digits_streams, "class", device,
                          {"fisher_estimator": "sampled", "fisher_samples": 64})
    fisher = learner.strategy.parts[0].fishers[-1]
    assert all(v.device.type == device.type for v in fisher.values())
    assert sum(float(v.sum()) for v in fisher.values()) > 0


def test_packnet_masks_on_the_device(digits_streams, device):
    learner, fit = fitted("packnet", digits_streams, "task", device, {"prune_ratio": 0.5})
    packnet = learner.strategy.parts[0]
    weights = dict(learner.model.named_parameters())
    for name, owner in packnet.owners.items():
        assert owner.device.type == device.type
        assert (owner == FREE).any() and not weights[name][owner == FREE].any()
    assert fit.accuracy_matrix[1][0] == fit.accuracy_matrix[0][0]  # task 0 is frozen


@pytest.mark.parametrize("spec", ["gem", "gdumb", "er-ace", "mir"])
def test_new_replay_strategies_remember_on_the_device(digits_streams, device, spec):
    """After three tasks each keeps more of the first two than naive fine-tuning does."""
    _, naive = fitted("naive", digits_streams, "class", device, tasks=3, iterations=30)
    _, fit = fitted(spec, digits_streams, "class", device, tasks=3, iterations=30)
    assert sum(fit.accuracy_matrix[-1][:2]) > sum(naive.accuracy_matrix[-1][:2]) + 0.2
