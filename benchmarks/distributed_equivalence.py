"""How far a 2-rank run is from the single-process run: the largest difference between the two
accuracy matrices (points, any cell) and both final ACCs, per strategy and seed.

Embedded split MNIST, class-incremental (task-incremental for strategies that need the task
id), the default MLP. Each seed's configs run once in this process and once on 2 gloo ranks
(``tests/distributed_harness.py``, one process group for all of them).

    OMP_NUM_THREADS=1 python benchmarks/distributed_equivalence.py --epochs 1 --seeds 0,1,2
    OMP_NUM_THREADS=1 python benchmarks/distributed_equivalence.py --iterations 20 \\
        --batch-size 64 --strategies derpp,er-ace,generative-replay,mir
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from distributed_harness import largest_difference, on_ranks, single  # noqa: E402
from forgetless.config import RunConfig  # noqa: E402
from forgetless.strategies import STRATEGIES, build_strategy  # noqa: E402


def scenario_for(name: str) -> str:
    strategy = build_strategy(name, {})
    return "class" if "class" in strategy.scenarios and not strategy.needs_task_id else "task"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default=",".join(
        n for n in STRATEGIES.names() if STRATEGIES.get(n).family == "replay"))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    names = args.strategies.split(",")
    print("| strategy | seed | largest difference (points) | ACC 1 process | ACC 2 ranks |")
    print("|---|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        configs = [RunConfig(strategy=n, scenario=scenario_for(n), epochs=args.epochs,
                             iterations=args.iterations, batch_size=args.batch_size, seed=seed)
                   for n in names]
        for name, one, two in zip(names, single(configs), on_ranks(configs), strict=True):
            print(f"| {name} | {seed} | {largest_difference(one, two):.2f} | "
                  f"{100 * sum(one[-1]) / len(one[-1]):.1f} | "
                  f"{100 * sum(two[-1]) / len(two[-1]):.1f} |")


if __name__ == "__main__":
    main()
