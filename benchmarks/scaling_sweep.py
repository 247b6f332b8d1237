"""Sweep throughput: the same grid run sequentially (``--jobs 1``: one process) and on the local
pool of 2 worker processes (``--jobs 2``), each into a fresh results store, torch 1 thread per
run. The target is a speed-up of at least 1.7x on 2 cores.

Grid: naive, EWC, SI, ER x seeds 0-3 on the embedded split MNIST, class-incremental, MLP
784-400-400, 5 epochs per task (the default run protocol): 16 runs of several seconds each.

    python benchmarks/scaling_sweep.py [--rounds 3] [--epochs 20]

The load average before and after is printed: on a machine whose cores are busy with other work,
the 2 workers cannot get 2 cores and the speed-up falls accordingly.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

SWEEP = {
    "base": {"source": "mnist", "epochs": 5, "model_options": {"hidden": [400, 400]},
             "scenario": "class"},
    "grid": {"strategy": ["naive", "ewc", "si", "er"], "seed": [0, 1, 2, 3]},
}


def timed(jobs: int) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds the runs got (this process for --jobs 1, the reaped workers
    for --jobs 2) and runs trained."""
    import resource

    from forgetless.experiments.sweep import parse_sweep, run_sweep
    from forgetless.results.store import RunStore

    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    with tempfile.TemporaryDirectory() as folder, RunStore(Path(folder) / "r.db") as store:
        start, cpu_start = time.perf_counter(), cpu()
        outcome = run_sweep(parse_sweep(SWEEP), store, backend="local", jobs=jobs, threads=1,
                            progress=False)
        seconds, cpu_seconds = time.perf_counter() - start, cpu() - cpu_start
        assert not outcome.failures, outcome.failures
        return seconds, cpu_seconds, outcome.trained


def main() -> None:
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="Alternating repetitions.")
    parser.add_argument("--epochs", type=int, default=5, help="Epochs per task of every run.")
    args = parser.parse_args()
    rounds = args.rounds
    SWEEP["base"]["epochs"] = args.epochs
    print(f"grid: {SWEEP['grid']}, {args.epochs} epochs per task")
    torch.set_num_threads(1)
    print("| round | mode | runs | wall s | CPU s | cores obtained | load avg (1 min) |")
    print("|---|---|---|---|---|---|---|")
    walls = {1: [], 2: []}
    for round_ in range(1, rounds + 1):
        for jobs in (1, 2):
            load = os.getloadavg()[0]
            wall, cpu_seconds, runs = timed(jobs)
            walls[jobs].append(wall)
            mode = "sequential (--jobs 1)" if jobs == 1 else "2 workers (--jobs 2)"
            print(f"| {round_} | {mode} | {runs} | {wall:.1f} | {cpu_seconds:.1f} | "
                  f"{cpu_seconds / wall:.2f} | {load:.1f} |", flush=True)
    ratio = sum(walls[1]) / sum(walls[2])
    print(f"\nspeed-up (total sequential wall / total 2-worker wall): {ratio:.2f}x")


if __name__ == "__main__":
    main()
