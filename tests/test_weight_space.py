"""The weight-space strategies: WiSE-FT's interpolation and the task-vector merges (average,
MagMax) against the formulas computed by hand from recorded weights, which starting point each
task's fine-tuning takes, only trainable parameters touched (buffers as fine-tuning left them),
state round trips of the non-default settings, and behaviour: the merges keep far more of the
first task than naive on permuted digits, WiSE-FT keeps more of what a pretrained model knew."""

from __future__ import annotations

import copy
import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from forgetless.data.benchmarks import build_stream
from forgetless.data.stream import Stream
from forgetless.errors import ConfigurationError
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import STRATEGIES, Strategy, build_strategy
from forgetless.strategies.regularization.quadratic import snapshot
from forgetless.strategies.weight_space.merge import magmax_update
from strategy_helpers import assert_same_model, safe_roundtrip, small_stream


def mlp(stream, seed=0, hidden=(32,)):
    torch.manual_seed(seed)
    return build_model("mlp", stream.input_shape, stream.num_outputs, hidden=hidden)


def learner(model, spec="naive", settings=None, **options):
    options = {"iterations": 6, "batch_size": 16, "seed": 0, "progress": False, **options}
    return Learner(model, build_strategy(spec, settings), **options)


def naive_trajectory(stream, model, **options):
    """The trainable weights plain fine-tuning ends each task with, from ``model``'s weights."""
    naive = learner(copy.deepcopy(model), **options)
    naive.bind(stream)
    weights = []
    for task in stream:
        naive.learn(task)
        weights.append(snapshot(naive.model))
    return weights


def assert_weights(actual, expected, atol=1e-6):
    """Two {name: tensor} dicts of the same names hold the same values (to ``atol``)."""
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, atol=atol, rtol=0, msg=name)


class WeightsAtTaskStart(Strategy):
    """Records the trainable weights each task's fine-tuning starts from (runs after the part
    before it in a composition)."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def before_task(self, task) -> None:
        self.seen.append(snapshot(self.learner.model))


# ------------------------------------------------------------------ exact: the formulas
def test_wise_ft_after_each_task_is_the_interpolation_of_start_and_fine_tuned(digits_streams):
    stream = small_stream(digits_streams, "domain", tasks=2)
    model = mlp(stream)
    start = snapshot(model)
    alpha = 0.3  # not 0.5: a swap of alpha and 1 - alpha must show
    probe = WeightsAtTaskStart()
    wise = learner(copy.deepcopy(model), build_strategy("wise-ft", {"alpha": alpha}) + probe)
    wise.bind(stream)
    wise.learn(stream[0])
    fine_tuned = naive_trajectory(Stream(stream.tasks[:1], "domain", stream.num_outputs),
                                  model)[0]
    assert_weights(snapshot(wise.model), {n: (1 - alpha) * start[n] + alpha * fine_tuned[n]
                                          for n in start})
    # the next task fine-tunes the interpolated model (the start stays the stream's start)
    interpolated = snapshot(wise.model)
    wise.learn(stream[1])
    assert_weights(probe.seen[1], interpolated, atol=0)
    assert_weights(wise.strategy.parts[0].start, start, atol=0)


@pytest.mark.parametrize("mode, scale, reset_optimizer", [
    ("magmax", 0.7, True), ("average", 1.0, True), ("average", 0.6, True),
    ("magmax", 0.5, False)])
def test_merge_is_start_plus_the_combined_task_vectors_of_sequential_fine_tuning(
        digits_streams, mode, scale, reset_optimizer):
    stream = small_stream(digits_streams, "domain", tasks=3)
    model = mlp(stream)
    start = snapshot(model)
    # fine_tune_from="previous": each task fine-tunes the last task's own weights, exactly as
    # naive does, so naive's weights after each task are the fine-tuned weights theta_t
    fine_tuned = naive_trajectory(stream, model, reset_optimizer=reset_optimizer)
    merged = learner(copy.deepcopy(model), "merge", {"mode": mode, "scale": scale},
                     reset_optimizer=reset_optimizer)
    merged.bind(stream)
    for t, task in enumerate(stream):
        merged.learn(task)
        expected = {}
        for name in start:
            tau = torch.stack([fine_tuned[i][name] - start[name] for i in range(t + 1)])
            if mode == "average":
                combined = tau.mean(0)
            else:  # the entry of largest magnitude, sign included
                index = tau.abs().argmax(0, keepdim=True)
                combined = tau.gather(0, index)[0]
            expected[name] = start[name] + scale * combined
        assert_weights(snapshot(merged.model), expected, atol=1e-5)
    assert not torch.equal(snapshot(merged.model)["head.weight"],
                           fine_tuned[-1]["head.weight"])
    # weights were written in place: the optimiser (kept across tasks or not) holds the
    # model's own parameters
    assert [id(p) for p in merged.optimizer.param_groups[0]["params"]] == [
        id(p) for p in merged.model.parameters()]


def test_magmax_keeps_the_largest_magnitude_entry_with_its_sign_and_later_wins_ties():
    first = {"w": torch.tensor([1.0, -3.0, 2.0, 0.5])}
    second = {"w": torch.tensor([-2.0, 1.0, -2.0, 0.25])}
    best = magmax_update(magmax_update(None, first), second)
    assert torch.equal(best["w"], torch.tensor([-2.0, -3.0, -2.0, 0.5]))
    assert torch.equal(first["w"], torch.tensor([1.0, -3.0, 2.0, 0.5]))  # inputs untouched


def test_default_scales_are_the_reference_codes_and_mode_is_labelled():
    assert build_strategy("merge").scale == 0.5
    assert build_strategy("merge", {"mode": "average"}).hyperparameters()["scale"] == 1.0
    assert build_strategy("merge").hyperparameters() == build_strategy(
        "merge", {"scale": 0.5}).hyperparameters()  # one run id for one run
    assert "mode" in STRATEGIES.get("merge").labelled_hyperparameters


@pytest.mark.parametrize("fine_tune_from", ["previous", "start"])
def test_each_task_fine_tunes_from_the_previous_fine_tune_or_from_the_start(
        digits_streams, fine_tune_from):
    stream = small_stream(digits_streams, "domain", tasks=3)
    model = mlp(stream)
    start = snapshot(model)
    fine_tuned = naive_trajectory(stream, model)
    probe = WeightsAtTaskStart()
    merged = learner(copy.deepcopy(model),
                     build_strategy("merge", {"fine_tune_from": fine_tune_from}) + probe)
    merged.fit(stream)
    for t in (1, 2):
        # never from the merged model the previous task left: MagMax fine-tunes sequentially
        origin = start if fine_tune_from == "start" else fine_tuned[t - 1]
        assert_weights(probe.seen[t], origin, atol=0)


# ------------------------------------------------------------------ only trainable parameters
@pytest.mark.parametrize("spec", ["wise-ft", "merge"])
def test_only_trainable_parameters_are_combined_and_buffers_stay_as_fine_tuning_left_them(
        digits_streams, spec):
    stream = small_stream(digits_streams, "domain", tasks=2)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.Linear(16, stream.num_outputs))
    model[1].requires_grad_(False)  # a frozen "backbone" layer
    frozen = model[1].weight.detach().clone()
    naive = learner(copy.deepcopy(model))
    edited = learner(copy.deepcopy(model), spec)
    for each in (naive, edited):
        each.bind(stream)
        each.learn(stream[0])
    assert torch.equal(edited.model[1].weight, frozen)
    assert sorted(edited.strategy.parts[0].start) == ["2.bias", "2.weight", "4.bias",
                                                      "4.weight"]
    assert not torch.equal(edited.model[4].weight, naive.model[4].weight)  # it was edited
    for buffer in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(getattr(edited.model[2], buffer), getattr(naive.model[2], buffer))


def test_a_change_in_the_trainable_parameters_mid_stream_is_refused(digits_streams):
    stream = small_stream(digits_streams, "domain", tasks=2)
    wise = learner(mlp(stream), "wise-ft")
    wise.bind(stream)
    wise.learn(stream[0])
    wise.model.head.requires_grad_(False)
    with pytest.raises(ConfigurationError, match="keep the same parameters trainable"):
        wise.learn(stream[1])


@pytest.mark.parametrize("spec, settings, problem", [
    ("wise-ft", {"alpha": 1.5}, "alpha must be in"),
    ("wise-ft", {"alpha": "half"}, "alpha must be a number"),
    ("merge", {"mode": "sum"}, "merge mode must be one of magmax, average"),
    ("merge", {"scale": 0}, "scale must be a finite number > 0"),
    ("merge", {"fine_tune_from": "merged"}, "fine_tune_from must be"),
])
def test_bad_hyperparameters_get_a_one_line_error(spec, settings, problem):
    with pytest.raises(ConfigurationError, match=problem):
        build_strategy(spec, settings)


# ------------------------------------------------------------------ state
@pytest.mark.parametrize("settings", [{"mode": "average"},
                                      {"mode": "average", "fine_tune_from": "start"},
                                      {"mode": "magmax", "fine_tune_from": "start"}])
def test_merge_state_restored_mid_stream_continues_identically(digits_streams, settings):
    stream = small_stream(digits_streams, "domain", tasks=3)
    uninterrupted = learner(mlp(stream), "merge", settings)
    uninterrupted.fit(stream)
    first = learner(mlp(stream), "merge", settings)
    first.bind(stream)
    first.learn(stream[0])
    first.learn(stream[1])
    resumed = learner(mlp(stream, seed=5), "merge", settings)
    resumed.bind(stream)
    resumed.load_state_dict(safe_roundtrip(first.state_dict()))
    resumed.learn(stream[2])
    assert_same_model(uninterrupted, resumed, stream.tasks, "merge")
    held = resumed.strategy.footprint().bytes_held
    copies = 2 if settings.get("fine_tune_from") == "start" else 3  # start, combined (, last)
    assert held == copies * sum(p.numel() * 4 for p in resumed.model.parameters())


# ------------------------------------------------------------------ behaviour
def final_first_task_accuracy(stream, spec, settings=None, seed=0):
    model = mlp(stream, seed=seed, hidden=(64,))
    fit = learner(model, spec, settings, iterations=None, epochs=3, batch_size=32,
                  seed=seed).fit(stream)
    return fit.accuracy_matrix[-1][0]


def test_merges_keep_far_more_of_the_first_permutation_than_naive():
    """Measured (3 permutations of digits, 3 epochs, seeds 0 and 1): naive keeps 0.37 / 0.42 of
    the first permutation, magmax 0.74 / 0.76, average 0.76 / 0.75."""
    stream = build_stream("permuted", "domain", tasks=3, source="digits", seed=0)
    naive = final_first_task_accuracy(stream, "naive")
    for settings in ({"mode": "magmax"}, {"mode": "average"}):
        assert final_first_task_accuracy(stream, "merge", settings) > naive + 0.2, settings


def prior_accuracy_after_later_tasks(spec, seed):
    """An MLP 'pretrained' on permutation 0 of digits, then trained on permutations 1 and 2:
    its accuracy on permutation 0 at the end (what WiSE-FT exists to keep)."""
    full = build_stream("permuted", "domain", tasks=3, source="digits", seed=0)
    prior = full.tasks[0]
    model = mlp(full, seed=seed, hidden=(64,))
    learner(model, iterations=None, epochs=10, batch_size=32, seed=seed).fit(
        Stream([prior], "domain", full.num_outputs))
    later = Stream([dataclasses.replace(t, task_id=i) for i, t in enumerate(full.tasks[1:])],
                   "domain", full.num_outputs)
    trained = learner(model, spec, iterations=None, epochs=3, batch_size=32, seed=seed)
    trained.fit(later)
    return float((trained.predict(prior.test_x) == prior.test_y).float().mean())


def test_wise_ft_keeps_more_of_what_the_starting_model_knew_than_naive():
    """Measured (seeds 0 and 1): after two more permutations naive keeps 0.67 / 0.74 of the
    pretraining permutation, wise-ft 0.85 / 0.86."""
    for seed in (0, 1):
        naive = prior_accuracy_after_later_tasks("naive", seed)
        assert prior_accuracy_after_later_tasks("wise-ft", seed) > naive + 0.08, seed


def test_on_a_lora_wrapped_language_model_only_the_adapters_are_merged():
    """The hooks on a tiny random Llama with LoRA (no Learner: the language-modelling objective
    is wired elsewhere): next-token steps per task, then the merge touches only the adapters."""
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=16)
    model = get_peft_model(LlamaForCausalLM(config),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    start = snapshot(model)
    assert start and all("lora_" in n for n in start)
    merge = build_strategy("merge", {"mode": "average"})
    merge.setup(SimpleNamespace(model=model))
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    fine_tuned = []
    for task in range(2):
        merge.before_task(task)
        tokens = torch.randint(0, 40, (4, 8), generator=torch.Generator().manual_seed(task))
        for _ in range(3):
            optimiser.zero_grad()
            model(input_ids=tokens, labels=tokens).loss.backward()
            optimiser.step()
        fine_tuned.append(snapshot(model))
        merge.after_task(task)
    assert_weights(snapshot(model), {n: start[n] + ((fine_tuned[0][n] - start[n])
                                                    + (fine_tuned[1][n] - start[n])) / 2
                                     for n in start})
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name
