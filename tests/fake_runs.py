"""Helpers of the store, compare, report and advisor tests: hand-made run records (no
training), synthetic continual-evaluation records to attach to them, a tiny protocol for real
runs, and the command line called in this process."""

from __future__ import annotations

import zlib

import numpy as np

from forgetless.config import RunConfig, run_id
from forgetless.continual_metrics import summarize_continual
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


def continual_record(tasks=5, steps_per_task=10, every=2, dip=0.4) -> dict:
    """A synthetic continual-evaluation record (a fixture written by formula, not a
    measurement), laid out as ``FitResult.continual``: each task climbs from 0.1 to 0.9 during
    its own ``steps_per_task`` steps; a fifth of the way into each later task it is at 0.9 -
    ``dip`` (a task left earlier: 0.9 - dip / 2), and 60% of the way in it has regained 80% of
    that loss (with 10 steps per task: 2 and 6 steps after the switch)."""
    steps = list(range(0, tasks * steps_per_task + 1, every))
    starts = [k * steps_per_task for k in range(tasks)]

    def accuracy(k: int, step: int) -> float | None:
        if step < starts[k]:
            return None
        if step <= starts[k] + steps_per_task:
            return round(0.1 + 0.8 * (step - starts[k]) / steps_per_task, 6)
        since = step - starts[k] - steps_per_task  # steps since the task after it began
        later, into = divmod(since - 1, steps_per_task)  # which later task, how far into it
        into = (into + 1) / steps_per_task
        loss = dip * (1.0 if later == 0 else 0.5) * (
            into / 0.2 if into <= 0.2 else max(0.2, 1 - 0.8 * (into - 0.2) / 0.4))
        return round(0.9 - loss, 6)

    return {"every": every, "eval_samples": 100, "steps": steps,
            "accuracy": [[accuracy(k, s) for k in range(tasks)] for s in steps],
            "task_starts": starts, "task_ends": [s + steps_per_task for s in starts],
            "seconds": 0.2, "train_seconds": 2.0}


def with_continual(run: RunResult, record: dict | None = None) -> RunResult:
    """``run`` with a continual-evaluation record: ``record``, or ``continual_record`` for
    its number of tasks; its ``metrics`` filled as the runner fills them."""
    record = dict(record or continual_record(len(run.accuracy_matrix)))
    record["metrics"] = summarize_continual(record)
    run.continual = record
    return run


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
