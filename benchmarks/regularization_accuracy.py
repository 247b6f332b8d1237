"""Accuracy of the regularization family beside naive and joint, mean +- sd over seeds.

Embedded MNIST split (4,000 train / 1,000 test), MLP 784-400-400, Adam lr 1e-3, batch 128,
5 epochs per task, optimiser reset per task, 5 tasks; split MNIST in the three scenarios and
permuted MNIST (domain-incremental). Each strategy runs with its tuned defaults
(``strategies/tuned/*.toml``), exactly as ``forgetless.run`` / the CLI resolve them.

    PYTHONPATH=src python benchmarks/regularization_accuracy.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from forgetless import RunConfig, run

STRATEGIES = ["naive", "ewc", "online-ewc", "si", "mas", "lwf", "joint"]
SETTINGS = [("split", "task"), ("split", "domain"), ("split", "class"), ("permuted", "domain")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="benchmarks/results/regularization_accuracy.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for benchmark, scenario in SETTINGS:
        for strategy in STRATEGIES:
            for seed in args.seeds:
                r = run(RunConfig(benchmark=benchmark, scenario=scenario, tasks=5,
                                  strategy=strategy, epochs=5, batch_size=128, lr=1e-3,
                                  seed=seed), progress=False)
                results.append({"benchmark": benchmark, "scenario": scenario,
                                "strategy": strategy, "seed": seed, **r.metrics,
                                "params": r.config["strategy_params"]})
                print(f"{benchmark}.{scenario} {strategy} seed {seed}: "
                      f"ACC {r.metrics['acc']:.4f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(table(results, "acc"))
    print()
    print(table(results, "bwt"))


def table(results, metric: str) -> str:
    head = " | ".join(f"{b} MNIST {s}-IL" for b, s in SETTINGS)
    lines = [f"| {metric.upper()} | {head} |", "|---|" + "---|" * len(SETTINGS)]
    for strategy in STRATEGIES:
        cells = []
        for benchmark, scenario in SETTINGS:
            values = [r[metric] for r in results if (r["benchmark"], r["scenario"],
                                                     r["strategy"]) == (benchmark, scenario,
                                                                        strategy)]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.4f} ± {sd:.4f}")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
