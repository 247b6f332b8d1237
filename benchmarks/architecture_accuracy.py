"""Accuracy of the dynamic architecture family (PNN, PackNet, HAT) beside naive and joint,
task-incremental, mean +- sd over seeds.

Embedded MNIST (4,000 train / 1,000 test), MLP 784-400-400, Adam lr 1e-3, batch 128, optimiser
reset per task, 5 tasks; each strategy with its defaults, exactly as ``forgetless.run`` / the CLI
resolve them. Every run is appended to a JSON-lines file (one record per run), so an interrupted
sweep resumes where it stopped; the table is printed from that file.

    PYTHONPATH=src python benchmarks/architecture_accuracy.py --benchmark split --epochs 20 \
        --seeds 0 1 2 3 4
    PYTHONPATH=src python benchmarks/architecture_accuracy.py --benchmark permuted --epochs 5 \
        --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from forgetless import RunConfig, run

STRATEGIES = ("naive", "joint", "pnn", "packnet", "hat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="split", choices=("split", "permuted"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--out", default=None, help="JSON-lines file of runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out or f"benchmarks/results/architecture_accuracy_{args.benchmark}_"
                          f"e{args.epochs}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {(r["strategy"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())}
    for seed in args.seeds:
        for name in args.strategies:
            if (name, seed) in done:
                continue
            config = RunConfig(benchmark=args.benchmark, scenario="task", tasks=5,
                               strategy=name, epochs=args.epochs, seed=seed)
            result = run(config, progress=False)
            record = {"strategy": name, "seed": seed, "acc": result.metrics["acc"],
                      "bwt": result.metrics["bwt"], "matrix": result.accuracy_matrix,
                      "train_seconds": result.costs["train_seconds_total"],
                      "parameters": result.costs["parameters"]}
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{name} seed {seed}: ACC {record['acc']:.4f} BWT {record['bwt']:+.4f}",
                  flush=True)
    print_table(out, args.strategies)


def sd(values) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def print_table(path: Path, strategies) -> None:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    print("| strategy | runs | ACC (mean ± sd) | BWT (mean ± sd) | min BWT | parameters | "
          "train s/run |")
    print("|---|---|---|---|---|---|---|")
    for name in strategies:
        rows = [r for r in records if r["strategy"] == name]
        if not rows:
            continue
        acc, bwt = [r["acc"] for r in rows], [r["bwt"] for r in rows]
        print(f"| {name} | {len(rows)} | {100 * statistics.mean(acc):.2f} ± {100 * sd(acc):.2f} "
              f"| {100 * statistics.mean(bwt):+.2f} ± {100 * sd(bwt):.2f} "
              f"| {100 * min(bwt):+.2f} | {rows[0]['parameters']:,} "
              f"| {statistics.mean(r['train_seconds'] for r in rows):.0f} |")


if __name__ == "__main__":
    main()
