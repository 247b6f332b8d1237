"""Sweeps: planning (grid, random, hyper-parameters that apply to some strategies only), tuning
within the continual-learning rules, the local pool, and a real local Ray cluster on loopback
with a worker killed mid-run."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from forgetless.config import RunConfig
from forgetless.data.transforms import tuning_stream
from forgetless.errors import ConfigurationError, DataError
from forgetless.experiments.compare import planned_run_id
from forgetless.experiments.runner import prepare, run
from forgetless.experiments.sweep import candidates, parse_sweep, run_sweep
from forgetless.results.store import RunStore

BASE = {"source": "digits", "iterations": 8, "batch_size": 32, "model_options": {"hidden": [16]}}


def test_grid_crosses_fields_and_applies_each_parameter_only_where_it_belongs():
    sweep = parse_sweep({"base": BASE, "grid": {
        "strategy": ["naive", "ewc", "er"], "scenario": ["task", "class"], "seed": [0, 1],
        "ewc.lam": [1, 10, 100], "buffer_size": [50, 100]}})
    configs = candidates(sweep)
    count = {s: sum(c.strategy == s for c in configs) for s in ("naive", "ewc", "er")}
    assert count == {"naive": 4, "ewc": 12, "er": 8}
    assert {c.strategy_params.get("ewc.lam") for c in configs if c.strategy == "ewc"} == {
        1, 10, 100}
    assert all(c.strategy_params == {} for c in configs if c.strategy == "naive")
    assert len({planned_run_id(c) for c in configs}) == 24  # all distinct runs


def test_random_search_draws_reproducible_candidates_within_their_ranges():
    values = {"base": BASE, "grid": {"strategy": ["ewc"], "seed": [0, 1]},
              "random": {"samples": 5, "seed": 7, "ewc.lam": {"log_uniform": [1, 1000]},
                         "lr": {"choice": [0.001, 0.01]}}}
    first, again = candidates(parse_sweep(values)), candidates(parse_sweep(values))
    assert [c.to_dict() for c in first] == [c.to_dict() for c in again]
    lams = [c.strategy_params["ewc.lam"] for c in first]
    assert len(first) == 10 and len(set(lams)) == 5 and all(1 <= v <= 1000 for v in lams)
    # both seeds of a candidate share its draw, so they can be averaged
    by_seed = [[c.strategy_params["ewc.lam"] for c in first if c.seed == s] for s in (0, 1)]
    assert sorted(by_seed[0]) == sorted(by_seed[1])
    assert {c.lr for c in first} <= {0.001, 0.01}


@pytest.mark.parametrize("values, message", [
    ({"grid": {"strategy": ["naive"], "lam": [1]}}, "applies to none"),
    ({"grid": {"seed": []}}, "empty list"),
    ({"random": {"lam": {"uniform": [1, 2]}}}, "needs samples"),
    ({"random": {"samples": 2, "lam": {"normal": [1, 2]}}}, "unknown distribution"),
    ({"tune": {"protocol": "test_set"}}, "protocol must be one of"),
    ({"grd": {}}, "unknown table"),
])
def test_bad_sweep_files_are_refused_with_the_fix(values, message):
    with pytest.raises(ConfigurationError, match=message):
        candidates(parse_sweep(values))


def test_tuning_streams_never_show_the_test_data(digits_streams):
    stream = digits_streams["class"]
    first = tuning_stream(stream, {"first_tasks": 2}, seed=0)
    assert len(first) == 2 and first.num_outputs == stream.num_outputs
    held = tuning_stream(stream, {"validation_fraction": 0.25}, seed=0)
    for original, task in zip(stream.tasks, held.tasks, strict=True):
        n = original.train_x.shape[0]
        assert task.test_x.shape[0] == round(0.25 * n)
        assert task.train_x.shape[0] + task.test_x.shape[0] == n
        # validation and training samples together are exactly the original training set
        rows = {tuple(r.tolist()) for r in torch.cat([task.train_x, task.test_x]).flatten(1)}
        assert rows == {tuple(r.tolist()) for r in original.train_x.flatten(1)}
    with pytest.raises(DataError, match="leaves none"):
        tuning_stream(stream, {"validation_fraction": 0.0001}, seed=0)
    experiment = prepare(RunConfig(**BASE, benchmark_options={"first_tasks": 3}))
    assert len(experiment.stream) == 3


def test_tuning_chooses_on_first_tasks_and_runs_the_choice_on_the_full_stream(tmp_path):
    torch.set_num_threads(1)
    sweep = parse_sweep({"base": {**BASE, "iterations": 30}, "grid": {
        "strategy": ["ewc"], "scenario": ["task"], "seed": [0], "ewc.lam": [0, 1e9]},
        "tune": {"protocol": "first_tasks", "first_tasks": 2, "metric": "acc"}})
    with RunStore(tmp_path / "runs.db") as store:
        outcome = run_sweep(sweep, store, jobs=1)
        assert outcome.trained == 3 and not outcome.failures  # 2 tuning runs + 1 final
        [chosen] = outcome.chosen
        # lam 1e9 pins the weights at their initial values: the second task cannot be
        # learned, so lam 0 must win on the first two tasks.
        assert chosen["config"].strategy_params == {"ewc.lam": 0}
        assert chosen["candidates"] == 2 and chosen["score"] > 0.6
        [final] = outcome.results
        assert len(final.accuracy_matrix) == 5 and final.config["benchmark_options"] == {}
        tuning_runs = [r for r in store.select() if r.config["benchmark_options"]]
        assert len(tuning_runs) == 2 and all(len(r.accuracy_matrix) == 2 for r in tuning_runs)
        again = run_sweep(sweep, store, jobs=1)
        assert again.trained == 0 and again.skipped == 3
        assert again.chosen[0]["config"].strategy_params == {"ewc.lam": 0}


def _task_processes(name: str) -> list[int]:
    """PIDs of Ray workers currently running the task function ``name`` (Ray sets the process
    title to ``ray::<function>`` while a task runs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith(f"ray::{name}"):
            pids.append(int(entry.name))
    return pids


def test_ray_cluster_runs_the_sweep_retries_a_killed_task_and_skips_done_runs(tmp_path):
    import ray  # noqa: F401 - required (the extra forgetless[ray]); this test is not skipped

    torch.set_num_threads(1)
    os.environ.pop("RAY_ADDRESS", None)
    sweep = parse_sweep({"base": {**BASE, "iterations": 60, "strategy": "er"},
                         "grid": {"scenario": ["class", "domain"], "seed": [0, 1]}})
    killed = []

    def kill_one_running_task():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            running = _task_processes("train_run")
            if running:
                time.sleep(0.3)  # into the run: data built, training under way
                try:
                    os.kill(running[0], signal.SIGKILL)
                    killed.append(running[0])
                except ProcessLookupError:
                    continue
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_running_task, daemon=True)
    killer.start()
    with RunStore(tmp_path / "runs.db") as store:
        outcome = run_sweep(sweep, store, backend="ray", jobs=2, retries=2,
                            checkpoint_dir=tmp_path / "ckpt")
        killer.join(timeout=5)
        assert killed, "no Ray task was seen running to kill"
        assert not outcome.failures, outcome.failures
        assert outcome.trained == 4 and len(store) == 4

        # every result, the retried one included, equals the same run trained here
        for config in candidates(sweep):
            stored = store.get(planned_run_id(config))
            assert stored.accuracy_matrix == run(config, progress=False).accuracy_matrix

        start = time.monotonic()
        again = run_sweep(sweep, store, backend="ray", jobs=2)
        assert again.trained == 0 and again.skipped == 4
        assert time.monotonic() - start < 5  # nothing to do: no cluster is even started
