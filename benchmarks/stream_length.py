"""Does a strategy's cost grow with the length of the stream? Train time per task and the bytes
a strategy holds, over 20 tasks of permuted full Fashion-MNIST (benchmarks/fashion_mnist.md).

A strategy with a fixed memory (a replay buffer of fixed size, one merged quadratic penalty)
should cost the same on task 20 as on task 2: ``time ratio`` is the median train time of the
last three tasks over that of tasks 2-4 (task 1 has no penalty, memory or teacher yet), and
``held`` the strategy's bytes after task 5 and after task 20.

    python benchmarks/stream_length.py --tasks 20 --iterations 100
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from forgetless.data.benchmarks import build_stream
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import build_strategy

STRATEGIES = {"naive": {}, "ewc": {}, "online-ewc": {}, "si": {}, "mas": {}, "lwf": {},
              "er": {"buffer_size": 1000}, "er-ace": {"buffer_size": 1000},
              "derpp": {"buffer_size": 1000}, "mir": {"buffer_size": 1000},
              "agem": {"buffer_size": 1000}, "gem": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--source", default="fashion-mnist")
    parser.add_argument("--strategies", help="comma-separated (default: the table's list)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    stream = build_stream("permuted", "domain", tasks=args.tasks, source=args.source)
    names = args.strategies.split(",") if args.strategies else list(STRATEGIES)
    print(f"permuted {args.source}, domain-IL, {args.tasks} tasks, {args.iterations} steps of "
          "batch 128 per task, 1 thread\n")
    print("| strategy | time ratio (tasks 18-20 / 2-4) | held after task 5 | after task "
          f"{args.tasks} | ACC % |\n|---|---|---|---|---|")
    for name in names:
        torch.manual_seed(0)
        model = build_model("mlp", stream.input_shape, stream.num_outputs)
        learner = Learner(model, build_strategy(name, STRATEGIES.get(name, {})),
                          iterations=args.iterations, progress=False)
        learner.bind(stream)
        seconds, held = [], []
        for task in stream.tasks:
            start = time.perf_counter()
            learner.learn(task)
            seconds.append(time.perf_counter() - start)
            held.append(learner.strategy.footprint().bytes_held)
        accuracy = statistics.mean(learner.evaluate(stream.tasks))
        ratio = statistics.median(seconds[-3:]) / statistics.median(seconds[1:4])
        print(f"| {name} | {ratio:.2f} | {held[4] / 1e6:.1f} MB | {held[-1] / 1e6:.1f} MB | "
              f"{100 * accuracy:.1f} |", flush=True)


if __name__ == "__main__":
    main()
