"""Training time of each regulariser as a ratio to naive, measured in the same process.

Permuted MNIST (embedded), domain-incremental, 5 tasks, 5 epochs per task, MLP 784-400-400,
Adam lr 1e-3, batch 128, seed 0, one thread. The strategies run interleaved (naive, ewc, ...,
naive, ewc, ...) ``--repeats`` times. For each run the training time (every hook and importance
estimate included, evaluation excluded) is measured twice: wall clock (``costs.train_seconds``
of the run) and the process's CPU time, which a machine shared with other jobs disturbs less.
Each strategy's median is divided by naive's median.

    PYTHONPATH=src python benchmarks/regularization_cost.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from forgetless import RunConfig
from forgetless.experiments.runner import prepare

STRATEGIES = ["naive", "ewc", "online-ewc", "si", "mas", "lwf"]
TARGET = {"ewc": 1.25, "online-ewc": 1.25, "mas": 1.25, "lwf": 1.25, "si": 1.35}


def measure(strategy: str) -> tuple[float, float, int]:
    experiment = prepare(RunConfig(benchmark="permuted", scenario="domain", tasks=5,
                                   strategy=strategy, epochs=5, batch_size=128, lr=1e-3,
                                   seed=0), progress=False)
    learner = experiment.learner
    learn, cpu = learner.learn, [0.0]

    def timed_learn(task):
        start = time.process_time()
        steps = learn(task)
        cpu[0] += time.process_time() - start
        return steps

    learner.learn = timed_learn
    fit = learner.fit(experiment.stream)
    return sum(fit.train_seconds), cpu[0], learner.strategy.footprint().bytes_held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/regularization_cost.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    wall = {s: [] for s in STRATEGIES}
    cpu = {s: [] for s in STRATEGIES}
    held = {}
    for _ in range(args.repeats):
        for strategy in STRATEGIES:
            w, c, held[strategy] = measure(strategy)
            wall[strategy].append(w)
            cpu[strategy].append(c)
            print(f"{strategy}: wall {w:.2f}s, cpu {c:.2f}s", flush=True)
    lines = ["| strategy | median wall s | wall ratio | median CPU s | CPU ratio | target | "
             "held (MB) |", "|---|---|---|---|---|---|---|"]
    for strategy in STRATEGIES:
        mw, mc = statistics.median(wall[strategy]), statistics.median(cpu[strategy])
        target = f"<= {TARGET[strategy]:.2f}" if strategy in TARGET else "–"
        lines.append(f"| {strategy} | {mw:.2f} | {mw / statistics.median(wall['naive']):.3f} | "
                     f"{mc:.2f} | {mc / statistics.median(cpu['naive']):.3f} | {target} | "
                     f"{held[strategy] / 1e6:.2f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"wall": wall, "cpu": cpu, "bytes": held}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
