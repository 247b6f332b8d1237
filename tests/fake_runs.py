"""Helpers of the store, compare, report and advisor tests: hand-made run records (no
training), a tiny protocol for real runs, and the command line called in this process."""

from __future__ import annotations

import zlib

import numpy as np

from forgetless.config import RunConfig, run_id
from forgetless.metrics import summarize
from forgetless.results import RunResult

#: A tiny protocol for real runs: split digits, an MLP with 16 hidden units, 8 steps per task
#: (the rest as `compare --quick`, so the CLI's run ids match).
TINY = RunConfig().updated(epochs=2).updated(source="digits", iterations=8,
                                             model_options={"hidden": [16]})
TINY_ARGS = ["--source", "digits", "--iterations", "8", "--hidden", "16"]
BOUNDS = ["naive", "joint", "cumulative"]


def fake_run(strategy="naive", scenario="class", seed=0, family="baseline", acc=0.5,
             forgetting=0.3, strategy_bytes=0, train_seconds=1.0, stores_raw_data=False,
             needs_task_id=False, params=None, tasks=5, descriptions=None, **config) -> RunResult:
    """A record whose accuracy matrix is drawn around the given final ACC and forgetting."""
    rng = np.random.default_rng(zlib.crc32(f"{strategy}/{scenario}/{seed}".encode()))
    matrix = np.zeros((tasks, tasks))
    for i in range(tasks):
        for j in range(tasks):
            if j <= i:
                learned = min(1.0, acc + forgetting)
                matrix[i, j] = learned if j == i else max(0.0, learned - forgetting * (i - j)
                                                          / max(1, tasks - 1 - j))
            else:
                matrix[i, j] = rng.uniform(0.0, 0.2)
    spread = min(0.01, acc, 1 - acc) * np.linspace(-1, 1, tasks) * (1 if seed % 2 else -1)
    matrix[-1] = acc + spread  # the final row's mean is exactly ``acc``
    untrained = np.round(rng.uniform(0, 0.2, tasks), 4).tolist()
    values = RunConfig(strategy=strategy, scenario=scenario, seed=seed, **config).to_dict()
    values["strategy_params"] = {f"{strategy}.{k}": v for k, v in (params or {}).items()}
    return RunResult(
        run_id=run_id(values), config=values, accuracy_matrix=matrix.tolist(),
        untrained_accuracy=untrained, metrics=summarize(matrix.tolist(), untrained),
        costs={"train_seconds": [train_seconds / tasks] * tasks,
               "train_seconds_total": train_seconds, "eval_seconds_total": 0.1,
               "steps": [10] * tasks, "peak_rss_bytes": 300_000_000 + strategy_bytes,
               "parameters": 1000, "parameters_added": 0, "strategy_bytes": strategy_bytes},
        strategy_info={"name": strategy, "family": family, "needs_task_id": needs_task_id,
                       "stores_raw_data": stores_raw_data},
        task_descriptions=descriptions or [f"digits {2 * t} and {2 * t + 1}"
                                           for t in range(tasks)],
        environment={"python": "3.11"}, created=f"2026-01-01T00:00:{seed:02d}+00:00")


def run_cli(capsys, *args):
    """``forgetless ARGS`` in this process: (exit status, stdout, stderr)."""
    from forgetless.cli import main

    try:
        main(list(args))
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err
