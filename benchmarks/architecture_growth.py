"""Growth with the number of tasks: parameters, memory and time per task of PNN, PackNet and
HAT (naive as the fixed-size reference) on task-incremental permuted MNIST with 5, 10 and 20
tasks.

Embedded MNIST (4,000 train / 1,000 test per permutation), MLP 784-100-100 (narrower than the
784-400-400 of the accuracy table so that 20 PNN columns stay quick on one CPU thread; the
growth laws do not depend on the width), Adam lr 1e-3, batch 128, a fixed budget of
``--iterations`` steps per task (so time per task compares the same work), seed 0. Memory is
what the run holds: the model's parameters plus the strategy's footprint (masks, snapshots,
embeddings), in MiB. ACC is measured once, after the last task.

    PYTHONPATH=src python benchmarks/architecture_growth.py --tasks 5 10 20 --iterations 100

``--benchmark``, ``--source`` and ``--model`` measure another stream or the ConvNet (whose
widths are its own: ``--hidden`` applies to the MLP only), e.g. the ConvNet on the full
Fashion-MNIST (``benchmarks/fashion_mnist.md``)::

    PYTHONPATH=src python benchmarks/architecture_growth.py --benchmark split \
        --source fashion-mnist --model convnet --tasks 5 --iterations 10 --strategies naive pnn hat
"""

from __future__ import annotations

import argparse
import time

import torch

from forgetless import RunConfig
from forgetless.experiments.runner import parameter_count, prepare

STRATEGIES = ("naive", "pnn", "packnet", "hat")


def measure(name: str, tasks: int, iterations: int, hidden: list[int], benchmark: str = "permuted",
            source: str = "mnist", model: str = "mlp") -> dict:
    config = RunConfig(benchmark=benchmark, source=source, model=model, scenario="task",
                       tasks=tasks, strategy=name, iterations=iterations, seed=0,
                       model_options={"hidden": hidden} if model == "mlp" else {})
    experiment = prepare(config, progress=False)
    learner, stream = experiment.learner, experiment.stream
    parameters, seconds = [], []
    for task in stream:
        start = time.perf_counter()
        learner.learn(task)
        seconds.append(time.perf_counter() - start)
        parameters.append(parameter_count(learner.model))
    accuracies = learner.evaluate(stream.tasks)
    held = learner.strategy.footprint().bytes_held
    return {"parameters": parameters, "seconds": seconds,
            "memory_mib": (4 * parameters[-1] + held) / 2**20,
            "acc": sum(accuracies) / len(accuracies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--hidden", type=int, nargs="+", default=[100, 100])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--benchmark", default="permuted")
    parser.add_argument("--source", default="mnist")
    parser.add_argument("--model", default="mlp")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| strategy | tasks | parameters after task 1 | parameters at the end | "
          "growth of the last task | memory MiB | s/task (first) | s/task (last) | "
          "s/task (mean) | ACC |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for tasks in args.tasks:
        for name in args.strategies:
            r = measure(name, tasks, args.iterations, args.hidden, args.benchmark, args.source,
                        args.model)
            p, s = r["parameters"], r["seconds"]
            last_growth = p[-1] - p[-2] if len(p) > 1 else 0
            print(f"| {name} | {tasks} | {p[0]:,} | {p[-1]:,} | {last_growth:,} | "
                  f"{r['memory_mib']:.1f} | {s[0]:.2f} | {s[-1]:.2f} | {sum(s) / len(s):.2f} | "
                  f"{100 * r['acc']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
