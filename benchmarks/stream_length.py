"""Does a strategy's cost grow with the length of the stream? Train time per task and the bytes
a strategy holds, over 20 tasks of permuted full Fashion-MNIST (benchmarks/fashion_mnist.md).

A strategy with a fixed memory (a replay buffer of fixed size, one merged quadratic penalty)
should cost the same on task 20 as on task 2. The strategies train in lockstep, task by task
(each strategy's task t right after the others'), so a change in the machine's load hits every
strategy on the same tasks; ``time ratio`` is a strategy's train time per task divided by
naive's on the same task, its median over the last three tasks over that over tasks 2-4 (task 1
has no penalty, memory or teacher yet); ``held`` the strategy's bytes after task 5 and after
the last.

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
    print("| strategy | time x naive, last 3 tasks over tasks 2-4 | held after task 5 | after task "
          f"{args.tasks} | ACC % |\n|---|---|---|---|---|")
    learners = {}
    for name in ["naive"] + [n for n in names if n != "naive"]:
        torch.manual_seed(0)
        model = build_model("mlp", stream.input_shape, stream.num_outputs)
        learners[name] = Learner(model, build_strategy(name, STRATEGIES.get(name, {})),
                                 iterations=args.iterations, progress=False)
        learners[name].bind(stream)
    seconds = {name: [] for name in learners}
    held = {name: [] for name in learners}
    for task in stream.tasks:
        for name, learner in learners.items():
            start = time.perf_counter()
            learner.learn(task)
            seconds[name].append(time.perf_counter() - start)
            held[name].append(learner.strategy.footprint().bytes_held)
    for name in names:
        learner = learners[name]
        relative = [s / n for s, n in zip(seconds[name], seconds["naive"], strict=True)]
        ratio = statistics.median(relative[-3:]) / statistics.median(relative[1:4])
        accuracy = statistics.mean(learner.evaluate(stream.tasks))
        print(f"| {name} | {ratio:.2f} | {held[name][4] / 1e6:.1f} MB | "
              f"{held[name][-1] / 1e6:.1f} MB | {100 * accuracy:.1f} |", flush=True)
    naive = seconds["naive"]
    print(f"\nnaive itself: {statistics.median(naive[-3:]) / statistics.median(naive[1:4]):.2f} "
          "(last three tasks over tasks 2-4, seconds; the load's drift)")

if __name__ == "__main__":
    main()
