"""`forgetless advise`: constraints -> ranked strategies, from measured runs, with reasons.

The measurements are hand-made records shaped like the embedded benchmarks' results (class-IL:
regularization near naive, replay far above; task-IL: architectures without forgetting), and
the strategies are small declared classes, so the advisor's logic is tested on its own."""

import pytest

from fake_runs import fake_run, run_cli
from forgetless.errors import ConfigurationError
from forgetless.experiments.advise import (
    Constraints,
    advise,
    missing_runs,
    parse_bytes,
    parse_multiple,
)
from forgetless.results.store import RunStore
from forgetless.strategies.base import ALL_SCENARIOS, Strategy

MB = 1_000_000


def declared(family, raw=False, task_id=False, scenarios=ALL_SCENARIOS):
    return type(f"Fake{family}", (Strategy,), {"family": family, "stores_raw_data": raw,
                                               "needs_task_id": task_id,
                                               "scenarios": frozenset(scenarios)})


STRATEGIES = {
    "naive": declared("baseline"),
    "joint": declared("baseline", raw=True),
    "cumulative": declared("baseline", raw=True),
    "ewc": declared("regularization"),
    "lwf": declared("regularization"),
    "er": declared("replay", raw=True),
    "big-replay": declared("replay", raw=True),
    "genreplay": declared("replay"),
    "icarl": declared("replay", raw=True, scenarios={"class"}),
    "pnn": declared("architecture", task_id=True, scenarios={"task"}),
    "packnet": declared("architecture", task_id=True, scenarios={"task"}),
}

#: strategy -> scenario -> (ACC, forgetting, bytes held, train seconds; naive's are 1 s).
MEASURED = {
    "naive": {"class": (0.19, 0.95, 0, 1.0), "task": (0.93, 0.06, 0, 1.0)},
    "joint": {"class": (0.97, 0.0, 13 * MB, 1.0), "task": (0.99, 0.0, 13 * MB, 1.0)},
    "cumulative": {"class": (0.95, 0.02, 13 * MB, 3.0), "task": (0.98, 0.0, 13 * MB, 3.0)},
    "ewc": {"class": (0.20, 0.95, 3 * MB, 1.4), "task": (0.96, 0.02, 3 * MB, 1.4)},
    "lwf": {"class": (0.22, 0.90, 1 * MB, 1.3), "task": (0.97, 0.01, 1 * MB, 1.3)},
    "er": {"class": (0.85, 0.12, 2 * MB, 1.5), "task": (0.98, 0.01, 2 * MB, 1.5)},
    "big-replay": {"class": (0.90, 0.08, 40 * MB, 1.6), "task": (0.985, 0.01, 40 * MB, 1.6)},
    "genreplay": {"class": (0.60, 0.30, 4 * MB, 6.0), "task": (0.97, 0.02, 4 * MB, 6.0)},
    "icarl": {"class": (0.80, 0.03, 2 * MB, 2.5)},
    "pnn": {"task": (0.995, 0.0, 20 * MB, 4.0)},
    "packnet": {"task": (0.99, 0.0, 1 * MB, 3.0)},
}


#: Seed-to-seed ACC offsets: naive and ewc spread by 1 point, so ewc's +1 point is noise.
SPREAD = {"naive": (-0.01, 0.01), "ewc": (0.01, -0.01)}


def measured_runs(skip=()):
    runs = []
    for name, by_scenario in MEASURED.items():
        if name in skip:
            continue
        cls = STRATEGIES[name]
        for scenario, (acc, forgetting, held, seconds) in by_scenario.items():
            for seed in (0, 1):
                offset = SPREAD.get(name, (0, 0))[seed]
                runs.append(fake_run(name, scenario, seed, family=cls.family, acc=acc + offset,
                                     forgetting=forgetting, strategy_bytes=held,
                                     train_seconds=seconds, stores_raw_data=cls.stores_raw_data,
                                     needs_task_id=cls.needs_task_id))
    return runs


RUNS = measured_runs()


def ranked(**constraints):
    advice = advise(Constraints(**constraints), RUNS, STRATEGIES)
    return advice, [c.name for c in advice.choices], {e.name: e.reason for e in advice.exclusions}


def test_no_raw_data_leaves_regularization_and_generative_replay():
    advice, names, excluded = ranked(raw_data=False)
    assert advice.scenario == "class"
    assert names == ["genreplay"]  # the only one that beats naive by 5 points or more
    assert [c.name for c in advice.barely] == ["lwf"]  # +3 points: not recommended
    assert [c.name for c in advice.no_better] == ["ewc"]  # +1 point, inside the seeds' spread
    for name in ("er", "big-replay", "icarl"):
        assert excluded[name] == "stores raw training samples, which you do not allow"
    assert "needs the task id" in excluded["pnn"]
    # Bounds are references, never advice nor exclusions; naive is the reference.
    assert [r.strategy for r in advice.bounds] == ["joint", "cumulative"]
    for name in ("naive", "joint", "cumulative"):
        assert name not in names and name not in excluded
    text = advice.format()
    assert "reference: naive fine-tuning" in text and "+41.0 points vs naive" in text
    assert "bounds (references, not advice" in text and "joint ACC 97.0 ± 0.0 %" in text
    assert text.index("recommended") < text.index("barely better") < text.index("no better")


def test_a_small_memory_for_samples_lets_replay_lead():
    advice, names, excluded = ranked(memory_budget=parse_bytes("5MB"))
    assert names[:3] == ["er", "icarl", "genreplay"]
    assert STRATEGIES[advice.best.name].family == "replay"
    assert excluded["big-replay"] == "holds 40.0 MB, over your 5.0 MB budget"
    assert "cumulative" not in names and "cumulative" not in excluded
    assert "holds 2.0 MB (budget 5.0 MB)" in advice.best.reason


def test_task_id_known_and_compute_plentiful_gives_architectures_without_forgetting():
    advice, names, excluded = ranked(task_id=True)
    assert advice.scenario == "task"
    assert names[:2] == ["pnn", "packnet"]
    assert "no forgetting" in advice.best.reason and "uses the task id you have" in \
        advice.best.reason
    assert "no measured forgetting: pnn, packnet" in advice.format()
    assert excluded["icarl"].startswith("does not serve the task-incremental scenario")
    # With compute tight, the architectures drop out, each for its measured time.
    _, tight, excluded = ranked(task_id=True, compute_budget=parse_multiple("2x"))
    assert tight[0] == "big-replay" and "pnn" not in tight
    assert excluded["pnn"] == "trains in 4.0x naive's time, over your 2x budget"


def test_constraints_nothing_satisfies_get_a_clear_message_not_a_crash():
    advice, names, _ = ranked(raw_data=False, memory_budget=0, compute_budget=1.35)
    assert names == []
    text = advice.format()
    assert "No strategy satisfies these constraints." in text
    assert "Relaxing the memory constraint alone would admit lwf" in text
    empty = advise(Constraints(), [], STRATEGIES)
    assert empty.choices == []
    hint = next(line for line in empty.format().splitlines() if line.startswith("Not measured"))
    assert "ewc" in hint and "er" in hint and "pnn" not in hint  # pnn needs the task id
    assert "without --no-run" in hint
    assert empty.exclusions and all(
        "not measured" in e.reason or "task id" in e.reason for e in empty.exclusions)


def test_unmeasured_strategies_are_excluded_and_listed_for_measuring():
    runs = measured_runs(skip={"lwf"})
    advice = advise(Constraints(raw_data=False), runs, STRATEGIES)
    assert {e.name: e.reason for e in advice.exclusions}["lwf"].startswith("not measured")
    todo = missing_runs(runs, Constraints(raw_data=False), strategies=STRATEGIES)
    assert [(c.strategy, c.scenario, c.seed) for c in todo] == [("lwf", "class", 0),
                                                                 ("lwf", "class", 1)]
    assert missing_runs(RUNS, Constraints(), strategies=STRATEGIES) == []
    assert missing_runs([], Constraints(), strategies=STRATEGIES) is None


def test_budgets_parse_and_bad_ones_say_how_to_write_them():
    assert parse_bytes("5MB") == 5_000_000 and parse_bytes("512KiB") == 524_288
    assert parse_bytes("1.5 gb") == 1_500_000_000 and parse_bytes("0") == 0
    assert parse_multiple("2x") == 2.0 and parse_multiple("1.5") == 1.5
    with pytest.raises(ConfigurationError, match="e.g. 5MB"):
        parse_bytes("five megs")
    with pytest.raises(ConfigurationError, match="e.g. 2x"):
        parse_multiple("0x")
    with pytest.raises(ConfigurationError, match="--task-id known"):
        Constraints(scenario="task").resolved_scenario()


def test_the_command_advises_from_the_store_and_refuses_clearly_without_runs(tmp_path, capsys):
    store = tmp_path / "runs.db"
    with RunStore(store) as db:
        for run in RUNS:
            db.put(run)
    status, out, err = run_cli(capsys, "advise", "--store", str(store), "--no-raw-data",
                                  "--memory-budget", "5MB", "--compute-budget", "2x",
                                  "--task-id", "unknown", "--no-run")
    assert status == 0, err
    lines = out.splitlines()
    assert "recommended (best measured ACC first):" not in lines  # lwf is only +3 points
    barely = "barely better than naive (by less than 5 ACC points; not recommended):"
    assert lines[lines.index(barely) + 1].startswith("  - lwf (regularization): ACC 22.0")
    assert ("Nothing that meets these constraints beats naive fine-tuning by 5 ACC points "
            "here.") in lines
    assert "Relaxing the raw data constraint alone would admit er (ACC 85.0 ± 0.0 %)." in lines
    assert "  - genreplay: trains in 6.0x naive's time, over your 2x budget" in lines
    status, out, err = run_cli(capsys, "advise", "--store", str(tmp_path / "empty.db"),
                               "--no-run")
    assert status == 2
    assert "no results store at" in err and "Traceback" not in err
    assert not (tmp_path / "empty.db").exists()  # --no-run creates nothing
    RunStore(tmp_path / "empty.db").close()
    status, out, err = run_cli(capsys, "advise", "--store", str(tmp_path / "empty.db"),
                               "--no-run")
    assert status == 2 and "holds no class-incremental runs" in err


def test_only_what_the_constraints_allow_is_measured_and_the_cost_said_first(tmp_path, capsys,
                                                                            monkeypatch):
    from forgetless.experiments import compare

    monkeypatch.setitem(compare.PRESETS, "quick", ({"epochs": 1, "iterations": 2,
                                                    "model_options": {"hidden": [8]}}, 1))
    store = tmp_path / "runs.db"
    status, out, err = run_cli(capsys, "advise", "--store", str(store), "--source", "digits",
                               "--no-raw-data", "--compute-budget", "2x", "--jobs", "1")
    assert status == 0, err
    from forgetless.experiments.costs import COST_PRIOR, UNKNOWN_COST
    from forgetless.strategies import STRATEGIES

    # Raw-data stores, bounds, task-id architectures and what costs over 2x naive (generative
    # replay: COST_PRIOR ~27x) are not trained; naive is, as the reference.
    allowed = {name for name, cls in STRATEGIES.items()
               if not cls.stores_raw_data and not cls.needs_task_id and "class" in cls.scenarios
               and name not in ("joint", "cumulative") and not cls.meant_for_pretrained
               and COST_PRIOR.get(name, UNKNOWN_COST) <= 2.0}
    assert {"naive", "ewc", "l2", "online-ewc", "si", "mas", "lwf"} <= allowed
    assert "generative-replay" not in allowed and "er" not in allowed
    assert f"{len(allowed)} runs on 1 worker(s), about" in err.splitlines()[0], err
    with RunStore(store) as db:
        trained = {r.config["strategy"] for r in db.select()}
    assert trained == allowed
    assert "constraints: no raw data" in out
