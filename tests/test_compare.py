"""`forgetless compare`: the plan, the pool, the store, resuming, and the table's numbers."""

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from fake_runs import BOUNDS, TINY, TINY_ARGS, run_cli
from forgetless.config import RunConfig
from forgetless.errors import ConfigurationError
from forgetless.experiments.compare import compare, execute, plan, planned_run_id, served_scenarios
from forgetless.experiments.runner import run
from forgetless.results.store import RunStore
from forgetless.results.summary import format_text, group_runs, to_csv, to_markdown
from forgetless.strategies import STRATEGIES


def forgetless(*args, cwd):
    return subprocess.run([sys.executable, "-m", "forgetless.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """The three bounds in two scenarios over two seeds, trained in this process."""
    path = tmp_path_factory.mktemp("store") / "runs.db"
    configs = plan(TINY, strategies=BOUNDS, scenarios=["domain", "class"], seeds=[0, 1])
    with RunStore(path) as store:
        runs, outcome = compare(configs, store, jobs=1, progress=False)
    assert outcome.trained == 12 and not outcome.failures
    return path, configs, runs


def test_the_plan_covers_every_registered_strategy_in_each_scenario_it_serves():
    configs = plan(TINY, seeds=[0, 1])
    planned = {(c.strategy, c.scenario, c.seed) for c in configs}
    assert len(planned) == len(configs)
    for name, cls in STRATEGIES.items():
        served = {s for s in cls.scenarios if not cls.needs_task_id or s == "task"}
        if cls.meant_for_pretrained:  # adapters, merging, frozen features: not from scratch
            served = set()
        assert {(s, seed) for n, s, seed in planned if n == name} == {
            (s, seed) for s in served for seed in (0, 1)}, name
    assert served_scenarios("naive+cumulative") == ["task", "domain", "class"]
    only = plan(TINY, strategies=["cumulative"], scenarios=["class"], seeds=[3])
    assert [(c.strategy, c.scenario, c.seed) for c in only] == [
        ("naive", "class", 3), ("joint", "class", 3), ("cumulative", "class", 3)]
    assert all(c.iterations == 8 and c.source == "digits" for c in only)
    with pytest.raises(ConfigurationError, match="no strategy of this comparison takes it"):
        plan(TINY, strategies=BOUNDS, settings={"lamda": 1})
    with pytest.raises(ConfigurationError, match="unknown strategy 'ewk'"):
        plan(TINY, strategies=["ewk"])


def test_a_text_benchmark_plans_what_serves_its_model_in_its_scenarios():
    knowledge = plan(RunConfig(benchmark="knowledge", model="tiny-lm", scenario="domain"),
                     seeds=[0])
    names = {c.strategy for c in knowledge}
    assert {"naive", "ewc", "lwf", "er", "derpp", "lora", "wise-ft", "merge"} <= names
    assert not names & {"icarl", "er-ace", "pnn", "generative-replay", "ncm"}
    assert {c.scenario for c in knowledge} == {"domain"}
    with pytest.raises(ConfigurationError, match="cannot learn the knowledge benchmark"):
        plan(RunConfig(benchmark="knowledge", model="tiny-lm"), strategies=["icarl"])
    topics = plan(RunConfig(benchmark="topics", model="tiny-encoder"), seeds=[0])
    assert {"ncm", "slda", "ranpac", "icarl", "lora"} <= {c.strategy for c in topics}
    assert not {c.strategy for c in topics} & {"pnn", "hat", "packnet", "generative-replay"}


def test_the_planned_run_id_is_the_id_the_run_gets():
    for config in plan(TINY, strategies=["naive"], scenarios=["task", "class"], seeds=[0],
                       references=False):
        assert planned_run_id(config) == run(config, progress=False).run_id


def recompute(store_path):
    """Mean and sd (ddof 1) of each metric per (scenario, strategy), straight from the
    accuracy matrices in the SQLite file, without forgetless's metrics code."""
    with sqlite3.connect(store_path) as db:
        records = [json.loads(r[0]) for r in db.execute("SELECT record FROM runs")]
    values = {}
    for record in records:
        r = np.array(record["accuracy_matrix"])
        b = np.array(record["untrained_accuracy"])
        t = len(r)
        metrics = {
            "acc": r[-1].mean(),
            "bwt": np.mean([r[-1, j] - r[j, j] for j in range(t - 1)]),
            "forgetting": np.mean([r[j:t - 1, j].max() - r[-1, j] for j in range(t - 1)]),
            "fwt": np.mean([r[j - 1, j] - b[j] for j in range(1, t)]),
        }
        key = (record["config"]["scenario"], record["config"]["strategy"])
        if key[0] == "class" or key[1] == "joint":  # undefined: no accuracy "before" a task
            metrics["fwt"] = np.nan
        for name, value in metrics.items():
            values.setdefault(key, {}).setdefault(name, []).append(value)
    return {key: {name: (np.mean(v), np.std(v, ddof=1)) for name, v in metrics.items()}
            for key, metrics in values.items()}


def test_the_tables_numbers_equal_those_recomputed_from_the_stored_matrices(small_store):
    path, _, runs = small_store
    expected = recompute(path)
    groups = group_runs(runs)
    rows = list(csv.DictReader(io.StringIO(to_csv(groups))))
    assert len(rows) == len(expected) == 6
    text = format_text(groups)
    markdown = to_markdown(groups)
    for row in rows:
        want = expected[(row["scenario"], row["strategy"])]
        for name, (mean, sd) in want.items():
            if np.isnan(mean):  # an undefined FWT is an empty cell, "–" in the tables
                assert row[f"{name}_mean"] == row[f"{name}_sd"] == ""
                continue
            assert float(row[f"{name}_mean"]) == pytest.approx(mean, abs=1e-12)
            assert float(row[f"{name}_sd"]) == pytest.approx(sd, abs=1e-12)
        cell = f"{100 * want['acc'][0]:.1f} ± {100 * want['acc'][1]:.1f}"
        assert cell in text and cell in markdown
        assert row["n_seeds"] == "2"
    rows = {r.strategy: r for r in next(g for g in groups if g.scenario == "class").rows}
    assert {r.stats["fwt"].percent() for r in rows.values()} == {"–"}  # undefined, shown so
    assert rows["naive"].time_ratio == 1.0
    others = [r for r in rows.values() if r.strategy != "naive"]
    assert others and all(r.time_ratio == pytest.approx(r.train_seconds
                                                        / rows["naive"].train_seconds)
                          for r in others)


def test_a_second_compare_skips_stored_runs_and_rerun_trains_them_again(small_store, tmp_path):
    path, configs, runs = small_store
    with RunStore(path) as store:
        again = execute(configs, store, jobs=1, progress=False)
        assert (again.trained, again.skipped) == (0, 12)
        rerun = execute(configs[:2], store, jobs=1, rerun=True, progress=False)
        assert (rerun.trained, rerun.skipped) == (2, 0)
        assert [store.get(c).accuracy_matrix for c in rerun.planned] == [
            r.accuracy_matrix for r in runs[:2]]  # same seed and config: same numbers


def test_a_failing_run_is_reported_and_the_others_are_stored(tmp_path):
    good = TINY.updated(strategy="naive", scenario="class")
    bad = good.updated(benchmark_options={"colour": "blue"})
    with RunStore(tmp_path / "runs.db") as store:
        runs, outcome = compare([good, bad], store, jobs=1, progress=False)
        assert len(store) == 1 and len(runs) == 1
    assert len(outcome.failures) == 1 and "does not take that option" in outcome.failures[0][1]


DETERMINISTIC = ["scenario", "family", "strategy", "n_seeds", "acc_mean", "acc_sd",
                 "forgetting_mean", "forgetting_sd", "bwt_mean", "bwt_sd", "fwt_mean", "fwt_sd",
                 "strategy_bytes_mean", "parameters_added_mean", "stores_raw_data",
                 "needs_task_id", "run_ids"]


def test_a_killed_compare_resumes_on_workers_and_ends_with_the_same_table(small_store,
                                                                          tmp_path):
    """Killed (SIGKILL) midway with --jobs 1, resumed with --jobs 2: the table's numbers equal
    those of the uninterrupted in-process comparison (train time and memory vary by nature)."""
    _, _, reference = small_store
    args = ["compare", "--strategies", ",".join(BOUNDS), "--scenario", "domain,class",
            *TINY_ARGS, "--epochs", "2", "--seeds", "2", "--store", "runs.db", "--csv",
            "table.csv", "--quiet"]
    process = subprocess.Popen([sys.executable, "-m", "forgetless.cli", *args, "--jobs", "1"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline, stored = time.time() + 120, 0
    while time.time() < deadline and process.poll() is None:
        if (tmp_path / "runs.db").exists():
            try:
                with sqlite3.connect(tmp_path / "runs.db", timeout=5) as db:
                    stored = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            except sqlite3.OperationalError:  # the table is not created yet
                stored = 0
            if stored >= 3:
                break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with RunStore(tmp_path / "runs.db") as store:
        interrupted = len(store)
    assert 3 <= interrupted < 12, "the compare was not interrupted midway"
    resumed = forgetless(*args, "--jobs", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{12 - interrupted} trained now, {interrupted} reused" in resumed.stdout
    report = tmp_path / "forgetless-report.html"
    assert f"report: {report}" in resumed.stdout and "class-incremental" in report.read_text()
    table = list(csv.DictReader((tmp_path / "table.csv").open()))
    expected = list(csv.DictReader(io.StringIO(to_csv(group_runs(reference)))))
    assert [{k: r[k] for k in DETERMINISTIC} for r in table] == [
        {k: r[k] for k in DETERMINISTIC} for r in expected]


def test_runs_lists_filters_and_re_tables_without_training(small_store, tmp_path, capsys,
                                                           monkeypatch):
    path, _, _ = small_store
    monkeypatch.chdir(tmp_path)
    with RunStore(path) as store:
        runs = store.select()
    status, out, err = run_cli(capsys, "runs", "--store", str(path), "--strategy", "joint",
                               "--scenario", "class")
    assert status == 0, err
    joint = [r for r in runs if r.config["strategy"] == "joint" and r.config["scenario"] == "class"]
    assert "2 run(s)" in out and all(r.run_id[:10] in out for r in joint)  # a prefix `show` takes
    assert "naive" not in out.split("\n", 2)[2]
    status, out, err = run_cli(capsys, "runs", "--store", str(path), "--table", "--markdown",
                               "t.md")
    assert status == 0, err
    assert format_text(group_runs(runs)) in out
    assert (tmp_path / "t.md").read_text() == to_markdown(group_runs(runs))
    status, out, err = run_cli(capsys, "report", "--store", str(path), "--scenario", "domain",
                               "-o", "r.html")
    assert status == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "domain-incremental" in page and "class-incremental" not in page
    status, out, err = run_cli(capsys, "runs", "--store", "absent.db")
    assert status == 2 and "no results store" in err
