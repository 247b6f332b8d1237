"""The loop's speed mechanisms (benchmarks/loop_speed.md), each checked for what it must keep:
few host syncs, the fused Adam's float-tolerance agreement with the default, and the compiled
step's agreement with the eager one."""

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
    # SGD: the default Adam reads its step counters, CPU tensors even on a GPU, every step
    learner = Learner(make_model(stream), iterations=40, optimizer="sgd", progress=False)
    learner.bind(stream)
    loop = learner._train_batches

    def counted_loop(*args, **kwargs):
        count_syncs["syncs"] = 0
        loop(*args, **kwargs)
        counted_loop.syncs = count_syncs["syncs"]

    learner._train_batches = counted_loop
    learner.learn(stream[0])
    # one read at steps 0, 10, 20, 30 and one after the last step; a read of the loss per
    # step (the loop before issue 16) makes 45
    assert counted_loop.syncs == 40 // CHECK_EVERY + 1


def _steps(stream, model, **options):
    learner = Learner(model, iterations=5, batch_size=32, progress=False, **options)
    learner.bind(stream)
    losses = []
    step = learner.train_step
    learner.train_step = lambda batch: losses.append(float(step(batch)))
    learner.learn(stream[0])
    return losses, learner


def test_the_compiled_step_gives_the_eager_losses(digits_streams, make_model, monkeypatch):
    import forgetless.compiled_step as compiled_step

    monkeypatch.setattr(compiled_step, "BACKEND", "aot_eager")  # the graphs, no C++ build
    stream = digits_streams["class"]
    eager, _ = _steps(stream, make_model(stream))
    compiled, learner = _steps(stream, make_model(stream), compile=True)
    assert learner.compiled._compiled is not None and not learner.compiled.failed
    assert compiled == pytest.approx(eager, rel=1e-5)


def test_without_torch_compile_the_eager_step_runs_with_a_warning(digits_streams, make_model,
                                                                  monkeypatch):
    def unavailable(*args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", unavailable)
    stream = digits_streams["domain"]
    eager, _ = _steps(stream, make_model(stream))
    with pytest.warns(RuntimeWarning, match="torch.compile cannot run here .Dynamo is not "
                                            "supported on this Python.; training with the eager"):
        fallback, learner = _steps(stream, make_model(stream), compile=True)
    assert learner.compiled.failed and fallback == eager


def test_adam_fused_is_the_fused_kernel_and_agrees_with_the_default_to_float_tolerance(
        digits_streams, make_model):
    stream = digits_streams["domain"]
    default_losses, default = _steps(stream, make_model(stream))
    fused_losses, fused = _steps(stream, make_model(stream), optimizer="adam-fused")
    assert fused.optimizer.param_groups[0]["fused"] is True
    assert not default.optimizer.param_groups[0]["fused"]
    assert fused_losses == pytest.approx(default_losses, rel=1e-5)
    for a, b in zip(default.model.parameters(), fused.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
