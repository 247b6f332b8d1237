"""The loop's speed mechanisms (benchmarks/loop_speed.md), each checked for what it must keep:
few host syncs, the fused Adam's float-tolerance agreement with the default, DER++'s single
forward pass, and the compiled step's agreement with the eager one."""

import pytest
import torch

from forgetless.divergence import CHECK_EVERY
from forgetless.learner import Learner

SYNCS = ("item", "tolist", "__bool__", "__float__", "__int__")


@pytest.fixture
def count_syncs(monkeypatch):
    """Counts the tensor reads that wait for the device (``.item()``, ``.tolist()``,
    ``bool(t)``, ...): a counting stand-in for each, since a CPU run has no sync to observe."""
    counts = {"syncs": 0}
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            counts["syncs"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def test_naive_steps_read_the_device_once_per_divergence_check(digits_streams, make_model,
                                                               count_syncs):
    stream = digits_streams["domain"]
    learner = Learner(make_model(stream), iterations=40, progress=False)
    learner.bind(stream)
    loop = learner._train_batches

    def counted_loop(*args, **kwargs):
        count_syncs["syncs"] = 0
        loop(*args, **kwargs)
        counted_loop.syncs = count_syncs["syncs"]

    learner._train_batches = counted_loop
    learner.learn(stream[0])
    # one read at steps 0, 10, 20, 30 and one after the last step; a read of the loss per
    # step (the loop before issue 16) makes 44
    assert counted_loop.syncs == 40 // CHECK_EVERY + 1
