"""Class-incremental accuracy of the frozen-feature learners (ncm, slda, ranpac) beside naive
fine-tuning and joint training, on a frozen MLP that was first trained jointly on every class
(the analogue of a pretrained backbone) and, for contrast, on the same MLP untrained.

Split into 5 tasks of 2 classes; the "pretrained" MLP is trained with the ``joint`` strategy
(Adam lr 1e-3, batch 64, ``--pretrain-epochs``); its own head's accuracy is the joint
reference. Naive fine-tunes a copy of it task by task (``--epochs`` per task, batch 128). The
frozen learners take no optimiser step. ACC is the mean of the last row of the accuracy matrix;
time is the whole fit (evaluation after each task included) as a ratio to naive's on the same
backbone (joint's: its pretraining, to naive on the pretrained backbone), measured in one run.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/frozen_features.py --source digits \
        --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from forgetless.data.benchmarks import build_stream
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import build_strategy

LEARNERS = ("naive", "ncm", "slda", "ranpac")


def accuracy_of(learner: Learner, stream) -> float:
    return sum(learner.evaluate(stream.tasks)) / len(stream.tasks)


def measure(args, seed: int) -> dict[tuple[str, str], tuple[float, float, int]]:
    """(learner, backbone) -> (class-IL ACC, seconds, bytes held)."""
    stream = build_stream("split", "class", tasks=5, source=args.source, seed=seed)
    torch.manual_seed(seed)
    pretrained = build_model("mlp", stream.input_shape, stream.num_outputs,
                             hidden=tuple(args.hidden))
    untrained = copy.deepcopy(pretrained)
    joint = Learner(pretrained, build_strategy("joint"), epochs=args.pretrain_epochs,
                    batch_size=64, seed=seed, progress=False)
    joint.bind(stream)
    start = time.perf_counter()
    joint.learn(stream[0])
    results = {("joint", "pretrained"): (accuracy_of(joint, stream),
                                         time.perf_counter() - start, 0)}
    for backbone, model in (("pretrained", pretrained), ("untrained", untrained)):
        for name in LEARNERS:
            learner = Learner(copy.deepcopy(model), build_strategy(name), epochs=args.epochs,
                              seed=seed, progress=False)
            start = time.perf_counter()
            fit = learner.fit(stream)
            seconds = time.perf_counter() - start
            acc = sum(fit.accuracy_matrix[-1]) / len(stream.tasks)
            results[(name, backbone)] = (acc, seconds, learner.strategy.footprint().bytes_held)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="digits", choices=("digits", "mnist"))
    parser.add_argument("--hidden", type=int, nargs="+", default=[256])
    parser.add_argument("--pretrain-epochs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = [measure(args, seed) for seed in args.seeds]
    print(f"| learner | backbone | class-IL ACC (mean ± sd over seeds {args.seeds}) "
          "| per seed | time / naive's | bytes held |")
    print("|---|---|---|---|---|---|")
    for key in runs[0]:
        accs = [run[key][0] for run in runs]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        ratio = statistics.mean(run[key][1] / run[("naive", key[1] if key[0] != "joint"
                                                   else "pretrained")][1] for run in runs)
        print(f"| {key[0]} | {key[1]} | {statistics.mean(accs):.3f} ± {spread:.3f} "
              f"| {' '.join(f'{a:.3f}' for a in accs)} | {ratio:.2f} | {runs[0][key][2]:,} |")


if __name__ == "__main__":
    main()
