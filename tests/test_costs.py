"""The cost of planned runs: ratios measured in the store beat the prior, the ETA weighs each
run by its expected cost, and the estimate of a plan counts what the store already holds."""

import pytest

from fake_runs import TINY, fake_run
from forgetless.config import RunConfig
from forgetless.experiments import costs
from forgetless.experiments.costs import COST_PRIOR, CostModel, Eta, estimate
from forgetless.results.store import RunStore


def test_ratios_come_from_the_store_and_the_prior_fills_the_gaps(tmp_path):
    with RunStore(tmp_path / "runs.db") as store:
        for seed in (0, 1):
            store.put(fake_run("naive", seed=seed, train_seconds=2.0))
            store.put(fake_run("ewc", seed=seed, train_seconds=3.0 + seed))  # mean 3.5
        model = CostModel.from_store(store)
    assert model.ratio("ewc") == pytest.approx(1.75) and model.measured("ewc")
    assert model.ratio("generative-replay") == COST_PRIOR["generative-replay"] > 5
    assert not model.measured("generative-replay")
    assert model.ratio("ewc+generative-replay") == pytest.approx(
        1 + 0.75 + COST_PRIOR["generative-replay"] - 1)
    assert model.ratio("a-strategy-nobody-knows") == costs.UNKNOWN_COST
    protocol = fake_run("naive").config
    config = RunConfig.from_dict({**protocol, "strategy": "ewc", "strategy_params": {}})
    assert model.seconds(config) == pytest.approx(1.75 * 2.0 + costs.RUN_OVERHEAD_S)


def test_the_eta_prices_what_is_left_by_its_cost_not_by_the_count(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(costs.time, "perf_counter", lambda: clock[0])
    eta = Eta({"cheap-1": 1.0, "cheap-2": 1.0, "slow": 20.0})
    assert eta.text() == "ETA ?"
    clock[0] += 2.0
    eta.finished("cheap-1")  # 2 s for 1 unit: 21 units left
    assert eta.remaining_seconds() == pytest.approx(42.0)  # a run count would say 4 s
    clock[0] += 40.0
    eta.finished("slow")
    assert eta.remaining_seconds() == pytest.approx(42.0 / 21 * 1)
    assert eta.text() == "ETA 2 s"


def test_a_plan_is_spread_over_the_workers_longest_first():
    model = CostModel({"naive": 1.0, "ewc": 2.0}, {})
    configs = [TINY.updated(strategy=s, seed=seed) for s in ("naive", "ewc", "generative-replay")
               for seed in (0, 1)]
    one, two = estimate(configs, model, jobs=1), estimate(configs, model, jobs=2)
    assert one.seconds == pytest.approx(sum(model.seconds(c) for c in configs))
    assert two.seconds == pytest.approx(one.seconds / 2)  # pairs split evenly
    assert one.assumed == ["generative-replay"] and "benchmarks/compare.md's for" in \
        one.describe()


def test_the_progress_lines_name_the_whole_run_and_give_an_eta(tmp_path):
    from forgetless.experiments.compare import execute, plan

    configs = plan(TINY, strategies=["ewc"], scenarios=["class"], seeds=[0],
                   settings={"ewc.lam": 12.5, "ewc.fisher_samples": 64}, references=False)
    lines = []
    with RunStore(tmp_path / "runs.db") as store:
        execute(configs, store, jobs=1, progress=False, echo=lines.append)
    assert len(lines) == 1
    assert lines[0].startswith("[1/1] ewc ewc.fisher_samples=64 ewc.lam=12.5 class seed 0: ACC ")
    assert lines[0].endswith("; ETA 0 s")


def test_the_bar_names_the_runs_training_now_in_full(tmp_path, capsys):
    from forgetless.experiments.compare import execute, plan

    configs = plan(TINY, strategies=["ewc"], scenarios=["class"], seeds=[0, 1],
                   settings={"ewc.lam": 12.5}, references=False)
    with RunStore(tmp_path / "runs.db") as store:
        execute(configs, store, jobs=1, progress=True)
    err = capsys.readouterr().err
    for seed in (0, 1):  # each run is named while it trains, not only once it has finished
        assert f"now ewc ewc.lam=12.5 class seed {seed}" in err


def test_the_prior_scales_with_the_samples_a_run_trains_on():
    """Before any run is stored, a naive run's seconds come from the default comparison's
    (3 epochs over the embedded split's 4,000 samples), scaled by what this run trains on: a
    bigger source or more epochs cost more, an iteration budget counts its steps' samples."""
    from forgetless.experiments.runner import config_stream

    model = CostModel({}, {})
    default = RunConfig(epochs=3)
    assert model.naive_train_seconds(default) == pytest.approx(costs.NAIVE_TRAIN_SECONDS_PRIOR)
    assert model.naive_train_seconds(default.updated(epochs=6)) == pytest.approx(
        2 * costs.NAIVE_TRAIN_SECONDS_PRIOR)
    digits = default.updated(source="digits")
    size = sum(len(t.train_x) for t in config_stream(digits))
    assert size != costs.PRIOR_TRAIN_SAMPLES
    assert model.naive_train_seconds(digits) == pytest.approx(
        costs.NAIVE_TRAIN_SECONDS_PRIOR * size / costs.PRIOR_TRAIN_SAMPLES)
    steps = default.updated(iterations=100, batch_size=64)  # 100 x 64 x 5 tasks
    assert model.naive_train_seconds(steps) == pytest.approx(
        costs.NAIVE_TRAIN_SECONDS_PRIOR * 100 * 64 * 5 / (3 * costs.PRIOR_TRAIN_SAMPLES))
