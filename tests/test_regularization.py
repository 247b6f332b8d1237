"""The regularization family: Fisher and MAS importances against slow per-sample references,
the model left untouched, strength 0 = naive, a huge strength pins what mattered, SI's path
integral against a step-by-step reference, EWC's one-pass penalty against the per-task sum."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from forgetless.data.stream import Stream
from forgetless.errors import ConfigurationError, DataError
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.models.heads import apply_mask
from forgetless.strategies import Strategy, build_strategy
from forgetless.strategies.regularization.fisher import fisher_diagonal, mas_importance
from forgetless.strategies.regularization.quadratic import trainable
from strategy_helpers import recorded_terms

REGULARIZERS = ("ewc", "online-ewc", "si", "mas", "l2", "lwf")
STRENGTH = {"ewc": "lam", "online-ewc": "lam", "si": "c", "mas": "lam", "l2": "lam",
            "lwf": "alpha"}


# ------------------------------------------------------------------ slow references
def per_sample_reference(model, x, y, mask, estimator, labels=None):
    """The definition, one sample and one label at a time with plain autograd."""
    params = list(trainable(model).values())
    total = [torch.zeros_like(p) for p in params]
    for i in range(x.shape[0]):
        logits = model(x[i:i + 1])
        if estimator == "mas":
            out = (logits * mask[i:i + 1]).square().sum()
            for t, g in zip(total, torch.autograd.grad(out, params), strict=True):
                t += g.abs()
            continue
        log_p = F.log_softmax(apply_mask(logits, mask[i:i + 1]), 1)[0]
        if estimator == "exact":
            pairs = [(c, log_p[c].exp().item()) for c in range(log_p.shape[0]) if mask[i, c]]
        else:
            pairs = [(int((labels if estimator == "sampled" else y)[i]), 1.0)]
        for c, weight in pairs:
            grads = torch.autograd.grad(log_p[c], params, retain_graph=True)
            for t, g in zip(total, grads, strict=True):
                t += weight * g.square()
    return [t / x.shape[0] for t in total]


def batched_reference(model, x, y, mask, batch_size):
    params = list(trainable(model).values())
    total, batches = [torch.zeros_like(p) for p in params], 0
    for s in range(0, x.shape[0], batch_size):
        loss = F.cross_entropy(apply_mask(model(x[s:s + batch_size]), mask[s:s + batch_size]),
                               y[s:s + batch_size])
        for t, g in zip(total, torch.autograd.grad(loss, params), strict=True):
            t += g.square()
        batches += 1
    return [t / batches for t in total]


@pytest.fixture
def small_problem(device):
    """A 2-layer MLP on 8x8 inputs, 6 outputs, task-incremental style per-sample masks, on each
    device."""
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 6, hidden=(16, 12))
    x = torch.rand(30, 1, 8, 8)
    mask = torch.zeros(30, 6, dtype=torch.bool)
    mask[:15, :3] = True
    mask[15:, 3:] = True
    y = torch.randint(0, 3, (30,))
    y[15:] += 3
    return model.to(device), x.to(device), y.to(device), mask.to(device)


def assert_matches(result: dict, reference: list, model):
    assert list(result) == list(trainable(model))
    for value, expected in zip(result.values(), reference, strict=True):
        assert value.shape == expected.shape
        assert (value - expected).abs().max() <= 1e-5
    assert sum(float(v.sum()) for v in reference) > 1e-3  # a zero importance proves nothing


@pytest.mark.parametrize("method", ["vmap", "factored"])
@pytest.mark.parametrize("estimator", ["exact", "sampled", "empirical", "batched", "mas"])
def test_importances_equal_the_per_sample_loop(small_problem, estimator, method):
    model, x, y, mask = small_problem
    if estimator == "mas":
        result = mas_importance(model, x, output_mask=mask, method=method, chunk_size=7)
        reference = per_sample_reference(model, x, y, mask, "mas")
    elif estimator == "batched":
        result = fisher_diagonal(model, (x, y), "batched", output_mask=mask, method=method,
                                 batch_size=8)
        reference = batched_reference(model, x, y, mask, 8)
    else:
        result = fisher_diagonal(model, (x, y), estimator, output_mask=mask, method=method,
                                 chunk_size=7, generator=torch.Generator().manual_seed(5))
        labels = None
        if estimator == "sampled":  # the same draws: from the batched probabilities, same seed
            with torch.no_grad():  # (on the CPU, where the learner's generator draws)
                probs = F.softmax(apply_mask(model(x), mask), 1).cpu()
            labels = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(5))[:, 0]
        reference = per_sample_reference(model, x, y, mask, estimator, labels)
    assert_matches(result, reference, model)


def test_sampled_differs_from_empirical_and_exact(small_problem):
    """The estimators are genuinely different quantities (a mix-up would make them equal)."""
    model, x, y, mask = small_problem
    values = {e: fisher_diagonal(model, (x, y), e, output_mask=mask)["body.1.weight"]
              for e in ("exact", "sampled", "empirical")}
    assert not torch.allclose(values["exact"], values["empirical"], rtol=1e-2)
    assert not torch.allclose(values["exact"], values["sampled"], rtol=1e-2)


def test_subset_and_shared_mask(small_problem):
    """num_samples takes a seeded random subset; a single mask row applies to every sample."""
    model, x, y, _ = small_problem
    row = torch.tensor([True, True, True, True, False, False])
    result = fisher_diagonal(model, (x, y), "exact", num_samples=9, output_mask=row,
                             generator=torch.Generator().manual_seed(1))
    index = torch.randperm(30, generator=torch.Generator().manual_seed(1))[:9]
    reference = per_sample_reference(model, x[index], y[index], row.expand(9, -1), "exact")
    assert_matches(result, reference, model)


def test_factored_chunks_hold_at_most_chunk_size_rows(small_problem, monkeypatch):
    """As in the vmap path, a chunk of the factored path holds at most ``chunk_size`` (sample,
    output) rows: ``exact`` over 6 outputs with chunk_size 12 takes 2 samples at a time (12
    samples, 72 rows, when chunk_size counted samples: on the MLP, one of the two temporaries
    that raised EWC's peak memory), and gives the Fisher of one whole chunk."""
    from forgetless.strategies.regularization import fisher

    model, x, y, mask = small_problem
    rows, factored = [], fisher._factored_sum

    def recording(*args):
        rows.append(args[6].numel())  # weights: one per (sample, output) row
        return factored(*args)

    monkeypatch.setattr(fisher, "_factored_sum", recording)
    chunked = fisher_diagonal(model, (x, y), "exact", output_mask=mask, method="factored",
                              chunk_size=12)
    assert max(rows) == 12 and sum(rows) == 30 * 6
    monkeypatch.undo()
    whole = fisher_diagonal(model, (x, y), "exact", output_mask=mask, method="factored",
                            chunk_size=10_000)
    for name, value in whole.items():
        assert torch.allclose(chunked[name], value, rtol=1e-5, atol=1e-8)


def test_merged_ewc_constant_is_summed_in_float64_slices():
    """The merged quadratic's constant is a difference of sums of ``f * a^2``: summed in
    float64 over slices (the last one short) it equals the whole float64 sum."""
    from forgetless.strategies.regularization.ewc import weighted_square_sum

    generator = torch.Generator().manual_seed(0)
    weight = torch.rand(10, 10, generator=generator)
    value = 1e3 + torch.randn(10, 10, generator=generator)
    expected = float((weight.double() * value.double().square()).sum())
    assert weighted_square_sum(weight, value, slice_size=7) == pytest.approx(expected, rel=1e-12)


def test_convnet_with_batchnorm_is_exact_and_left_untouched():
    """A model the factored path cannot take (conv + BatchNorm) goes through vmap; the model's
    parameters, BatchNorm statistics, gradients and train/eval flags come back bit-identical."""
    torch.manual_seed(0)
    model = build_model("convnet", (1, 8, 8), 4, channels=(3, 4), hidden=8)
    model.train()
    model(torch.rand(16, 1, 8, 8))  # give BatchNorm non-trivial running statistics
    model.body[1].eval()  # a mixed state must come back as it was
    x, y = torch.rand(12, 1, 8, 8), torch.randint(0, 4, (12,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    mask = torch.ones(12, 4, dtype=torch.bool)
    fisher = fisher_diagonal(model, (x, y), "exact", chunk_size=5)
    mas = mas_importance(model, x, chunk_size=5)
    after_modes = [m.training for m in model.modules()]
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert after_modes == modes
    assert all(p.grad is None for p in model.parameters())
    model.eval()  # the references run in eval mode, as the estimators must
    assert_matches(fisher, per_sample_reference(model, x, y, mask, "exact"), model)
    assert_matches(mas, per_sample_reference(model, x, y, mask, "mas"), model)
    with pytest.raises(ConfigurationError, match="vmap"):
        fisher_diagonal(model, (x, y), method="factored")


class SharedLinear(torch.nn.Module):
    """One linear layer applied twice: its per-sample gradient is a sum of two outer products,
    which the factored path cannot square; ``auto`` must notice and use vmap."""

    def __init__(self):
        super().__init__()
        self.shared, self.head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.relu(self.shared(torch.relu(self.shared(x)))))


def test_a_layer_used_twice_falls_back_to_vmap():
    torch.manual_seed(0)
    model, x, y = SharedLinear(), torch.rand(10, 4), torch.randint(0, 3, (10,))
    result = fisher_diagonal(model, (x, y), "empirical")
    reference = per_sample_reference(model, x, y, torch.ones(10, 3, dtype=torch.bool),
                                     "empirical")
    assert_matches(result, reference, model)
    with pytest.raises(ConfigurationError, match="method='vmap'"):
        fisher_diagonal(model, (x, y), "empirical", method="factored")


def test_bad_arguments_name_the_fix(small_problem):
    model, x, y, mask = small_problem
    with pytest.raises(ConfigurationError, match="exact, sampled, empirical, batched"):
        fisher_diagonal(model, (x, y), "diagonal")
    with pytest.raises(DataError, match="true labels"):
        fisher_diagonal(model, x, "empirical")
    with pytest.raises(ConfigurationError, match="num_samples"):
        fisher_diagonal(model, x, num_samples=0)
    for name, params in [("ewc", {"lam": -1}), ("si", {"xi": float("nan")}),
                         ("online-ewc", {"gamma": 1.5}), ("mas", {"importance_samples": 0}),
                         ("lwf", {"temperature": 0}), ("ewc", {"fisher_estimator": "emp"}),
                         ("mas", {"chunk_size": 0}), ("ewc", {"fisher_samples": True})]:
        with pytest.raises(ConfigurationError, match=next(iter(params))):
            build_strategy(name, params)


# ------------------------------------------------------------------ behaviour in training
def three_tasks(digits_streams, scenario):
    full = digits_streams[scenario]
    return Stream(full.tasks[:3], scenario, full.num_outputs)


def small_learner(stream, strategy, iterations=30, seed=0, optimizer="adam", lr=1e-3):
    """A 32-unit MLP learner bound to ``stream`` (batch 32)."""
    torch.manual_seed(seed)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, strategy, iterations=iterations, batch_size=32, lr=lr,
                      optimizer=optimizer, seed=seed)
    learner.bind(stream)
    return learner


def fit(stream, strategy, iterations=30, seed=0, optimizer="adam", lr=1e-3):
    learner = small_learner(stream, strategy, iterations, seed, optimizer, lr)
    return learner, learner.fit(stream)


_NAIVE: dict = {}


@pytest.mark.parametrize("name", REGULARIZERS)
@pytest.mark.parametrize("scenario", ["task", "class"])
def test_strength_zero_is_exactly_naive(digits_streams, name, scenario):
    stream = three_tasks(digits_streams, scenario)
    if scenario not in _NAIVE:
        _NAIVE[scenario] = fit(stream, build_strategy("naive"))
    naive_learner, naive = _NAIVE[scenario]
    learner, result = fit(stream, build_strategy(name, {STRENGTH[name]: 0.0}))
    assert result.accuracy_matrix == naive.accuracy_matrix
    for a, b in zip(learner.model.parameters(), naive_learner.model.parameters(), strict=True):
        assert torch.equal(a, b)


def importance_of(strategy) -> dict:
    if hasattr(strategy, "fishers"):
        return strategy.fishers[0]
    return strategy.importance


@pytest.mark.parametrize("name, huge", [("ewc", 1e9), ("online-ewc", 1e9), ("si", 1e7),
                                        ("mas", 1e7), ("l2", 1e7)])
def test_huge_strength_pins_the_weights_that_mattered(digits_streams, name, huge):
    """After task 0, the 10% most important weights stay within a few Adam steps (lr 1e-3) of
    their anchor through 80 steps of task 1, while naive moves the same weights far."""
    full = digits_streams["domain"]
    stream = Stream(full.tasks[:2], "domain", full.num_outputs)
    moved = {}
    for label, strategy in (("strong", build_strategy(name, {STRENGTH[name]: huge})),
                            ("naive", build_strategy("naive"))):
        learner = small_learner(stream, strategy, iterations=80)
        model = learner.model
        learner.learn(stream[0])
        anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
        if label == "strong":
            importance = importance_of(strategy)
            flat = torch.cat([v.flatten() for v in importance.values()])
            threshold = flat.quantile(0.9)
            assert threshold > 0
        learner.learn(stream[1])
        moved[label] = torch.cat([(p.detach() - anchor[n])[importance[n] >= threshold]
                                  for n, p in model.named_parameters()]).abs()
    assert moved["strong"].max() < 5e-3
    assert moved["naive"].max() > 0.05
    assert moved["naive"].mean() > 10 * moved["strong"].mean()


def test_huge_alpha_keeps_lwf_answers_on_old_units(digits_streams):
    """LwF with a huge alpha: the model's answers on task 0's test inputs stay the teacher's."""
    stream = three_tasks(digits_streams, "domain")
    changes = {}
    for label, strategy in (("strong", build_strategy("lwf", {"alpha": 1e4})),
                            ("naive", build_strategy("naive"))):
        learner = small_learner(stream, strategy, iterations=100)
        model = learner.model
        learner.learn(stream[0])
        with torch.no_grad():
            before = F.softmax(model(stream[0].test_x), 1)
        learner.learn(stream[1])
        with torch.no_grad():
            changes[label] = (F.softmax(model(stream[0].test_x), 1) - before).abs().max()
    assert changes["strong"] < 0.05
    assert changes["naive"] > 0.3


class StepRecorder(Strategy):
    """Records, after backward and after the step, what SI's reference needs."""

    name = "recorder"

    def __init__(self, si):
        self.si, self.steps = si, []

    def before_step(self):
        params = list(trainable(self.learner.model).values())
        self.steps.append([[p.grad.clone() for p in params], [p.detach().clone() for p in params],
                           None, None if self.si.importance is None else
                           {n: v.clone() for n, v in self.si.importance.items()}])

    def after_step(self):
        self.steps[-1][2] = [p.detach().clone() for p in trainable(self.learner.model).values()]


def test_si_path_integral_equals_step_by_step_reference(digits_streams):
    stream = three_tasks(digits_streams, "task")
    si = build_strategy("si", {"c": 0.5, "xi": 0.1})
    recorder = StepRecorder(si)
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(32,))
    learner = Learner(model, si + recorder, iterations=25, batch_size=32, seed=0)
    learner.bind(stream)
    names = list(trainable(model))
    importance_before, anchor = None, None
    for task in stream.tasks[:2]:
        start = [p.detach().clone() for p in trainable(model).values()]
        recorder.steps = []
        learner.learn(task)
        path = [torch.zeros_like(p) for p in start]
        for grads, before, after, importance_during in recorder.steps:
            # importance changes only at a task's end, never during its steps
            if importance_before is None:
                assert importance_during is None
            else:
                for n in names:
                    assert torch.equal(importance_during[n], importance_before[n])
            for i, n in enumerate(names):
                g = grads[i]
                if importance_before is not None:  # remove SI's own penalty gradient
                    g = g - 2 * 0.5 * importance_before[n] * (before[i] - anchor[n])
                path[i] -= g * (after[i] - before[i])
        end = [p.detach() for p in trainable(model).values()]
        for i, n in enumerate(names):
            gained = path[i] / ((end[i] - start[i]) ** 2 + 0.1)
            expected = (gained if importance_before is None
                        else importance_before[n] + gained).clamp_min(0)
            assert torch.allclose(si.importance[n], expected, rtol=1e-4, atol=1e-7), n
        total = sum(float(v.sum()) for v in si.importance.values())
        assert total > (0 if importance_before is None else
                        sum(float(v.sum()) for v in importance_before.values()))
        importance_before = {n: v.clone() for n, v in si.importance.items()}
        anchor = {n: v.clone() for n, v in si.anchor.items()}


def test_si_clips_the_running_importance_not_each_contribution():
    """Zenke et al.'s code: importance <- relu(importance + contribution). A weight whose path
    integral is negative on the second task loses importance (clipping the contribution alone
    would keep 3.0), and never goes below 0."""
    model = torch.nn.Linear(3, 1, bias=False)
    si = build_strategy("si", {"c": 1.0, "xi": 0.0})
    si.learner = type("Learner", (), {"model": model, "strategy": si})()

    def finish_task(path, displacement):
        si.task_start = {"weight": torch.zeros(1, 3)}
        si.path = {"weight": torch.tensor([path])}
        with torch.no_grad():
            model.weight.copy_(torch.tensor([displacement]))
        si.after_task(None)
        return si.importance["weight"][0].tolist()

    assert finish_task([3.0, 3.0, -1.0], [1.0, 1.0, 1.0]) == [3.0, 3.0, 0.0]
    assert finish_task([-1.0, -5.0, 2.0], [1.0, 1.0, 1.0]) == [2.0, 0.0, 2.0]


def test_ewc_one_pass_penalty_equals_the_sum_of_per_task_terms(digits_streams):
    stream = three_tasks(digits_streams, "class")
    ewc = build_strategy("ewc", {"lam": 50.0})
    terms = recorded_terms(ewc)
    learner, _ = fit(stream, ewc)
    params = trainable(learner.model)
    with torch.no_grad():  # move away from the last anchor so every term is non-trivial
        for p in params.values():
            p.add_(0.01 * torch.randn_like(p))
    fast = ewc.penalty(None, None)
    fast_grads = torch.autograd.grad(fast, list(params.values()))
    fast = fast.detach()
    slow = sum(25.0 * (f[n] * (p - a[n]) ** 2).sum() for f, a in terms
               for n, p in params.items())
    slow_grads = torch.autograd.grad(slow, list(params.values()))
    slow = slow.detach()
    assert len(terms) == 3 and len(ewc.fishers) == 1  # three terms, kept as one quadratic
    assert abs(fast.item() - slow.item()) <= 1e-4 * slow.item()
    for a, b in zip(fast_grads, slow_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_online_ewc_keeps_one_decayed_term_and_ewc_one_per_task(digits_streams):
    """With lam = 0 both follow naive's trajectory, so their Fishers are taken at the same
    weights: Online EWC's running Fisher must be 0.25 F0 + 0.5 F1 + F2 of EWC's terms."""
    stream = three_tasks(digits_streams, "domain")
    ewc = build_strategy("ewc", {"lam": 0.0})
    online = build_strategy("online-ewc", {"lam": 0.0, "gamma": 0.5})
    terms = recorded_terms(ewc)
    fit(stream, ewc)
    learner, _ = fit(stream, online)
    assert len(ewc.fishers) == 1 and len(online.fishers) == 1
    (f0, _), (f1, _), (f2, _) = terms
    for n, value in online.fishers[0].items():
        assert torch.allclose(value, 0.25 * f0[n] + 0.5 * f1[n] + f2[n], rtol=1e-5, atol=1e-9)
    for n, p in trainable(learner.model).items():
        assert torch.equal(online.anchors[0][n], p.detach())
    # Each keeps one Fisher (EWC: the sum), one centre (the penalty's anchor, the same tensors)
    # and the penalty's weights, whatever the number of tasks.
    size = 4 * sum(p.numel() for p in learner.model.parameters())
    assert ewc.footprint().bytes_held == 3 * size
    assert online.footprint().bytes_held == 3 * size
    assert not ewc.footprint().stores_raw_data and not online.footprint().stores_raw_data
