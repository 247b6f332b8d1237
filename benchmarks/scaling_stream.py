"""Cost as the stream grows: time per task and memory for naive, EWC, Online EWC, SI, ER and PNN
on permuted MNIST (the embedded 4,000/1,000 subset) with up to 50 tasks.

One 50-task run per strategy, each in its own process (torch 1 thread). The cost of task t does
not depend on how many tasks come after it, so one run gives the figures at 5, 10, 20 and 50
tasks: the training time of task t (``learn``: hooks included, e.g. the Fisher after the task),
as the mean of tasks t-2..t, and after task t the bytes the strategy holds (its footprint:
Fishers, anchors, buffers...), the model's parameter count, and the process's peak RSS.
Evaluation is done once, at the end (final average accuracy over all 50 tasks), so it does not
blur the per-task training cost.

Protocol: MLP 784-100-100, Adam lr 1e-3, batch 128, 100 steps per task, seed 0; naive, EWC,
Online EWC, SI and ER in the domain-incremental scenario, PNN (which needs the task id) in the
task-incremental one.

    python benchmarks/scaling_stream.py            # all strategies, prints the markdown table
    python benchmarks/scaling_stream.py --tasks 10 # a quicker check
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

STRATEGIES = [("naive", "domain"), ("ewc", "domain"), ("online-ewc", "domain"), ("si", "domain"),
              ("er", "domain"), ("pnn", "task")]
POINTS = (5, 10, 20, 50)
ROOT = Path(__file__).resolve().parents[1]


def measure(strategy: str, scenario: str, tasks: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from forgetless import Learner, build_model, build_strategy, build_stream
    from forgetless.experiments.runner import peak_rss_bytes

    stream = build_stream("permuted", scenario, tasks, seed=0, source="mnist")
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=(100, 100))
    learner = Learner(model, build_strategy(strategy, benchmark="permuted", scenario=scenario),
                      iterations=100, batch_size=128, lr=1e-3, seed=0, progress=False)
    learner.bind(stream)
    rows = []
    for task in stream:
        start = time.perf_counter()
        learner.learn(task)
        seconds = time.perf_counter() - start
        footprint = learner.strategy.footprint()
        rows.append({"task": task.task_id + 1, "seconds": seconds,
                     "strategy_bytes": footprint.bytes_held,
                     "parameters": sum(p.numel() for p in learner.model.parameters()),
                     "peak_rss": peak_rss_bytes()})
    accuracy = learner.evaluate(stream.tasks)
    return {"strategy": strategy, "scenario": scenario, "rows": rows,
            "final_acc": sum(accuracy) / len(accuracy)}


def human(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return str(count)


def table(results: list[dict], points) -> str:
    lines = ["| strategy | scenario | " + " | ".join(f"s/task @{t}" for t in points)
             + " | " + " | ".join(f"held @{t}" for t in points)
             + f" | params @{points[0]} | params @{points[-1]} | peak RSS | final ACC % |",
             "|---" * (6 + 2 * len(points)) + "|"]
    for r in results:
        rows = r["rows"]

        def window(t, rows=rows):
            chosen = rows[max(0, t - 3):t]
            return sum(x["seconds"] for x in chosen) / len(chosen)

        lines.append(
            f"| {r['strategy']} | {r['scenario']} | "
            + " | ".join(f"{window(t):.2f}" for t in points) + " | "
            + " | ".join(human(rows[t - 1]["strategy_bytes"]) for t in points) + " | "
            + f"{rows[points[0] - 1]['parameters']:,} | {rows[points[-1] - 1]['parameters']:,} | "
            + f"{human(rows[-1]['peak_rss'])} | {100 * r['final_acc']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", default="domain", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "scaling_stream.json")
    args = parser.parse_args()
    if args.one:  # a child: one strategy, result on stdout
        print(json.dumps(measure(args.one, args.scenario, args.tasks)))
        return
    points = tuple(t for t in POINTS if t <= args.tasks)
    results = []
    for strategy, scenario in STRATEGIES:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--one", strategy, "--scenario",
                              scenario, "--tasks", str(args.tasks)], capture_output=True,
                             text=True, check=True)
        results.append(json.loads(out.stdout))
        print(f"{strategy}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(table(results, points))


if __name__ == "__main__":
    main()
