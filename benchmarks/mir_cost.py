"""MIR's train time over naive's (and ER's, ``fill=stream``), measured in one process,
interleaved, after one naive warm-up run that is not recorded (PyTorch's first optimiser step
costs about a second).

Embedded split MNIST, 5 tasks, class-incremental, MLP 784-400-400, Adam lr 1e-3, seed 0, two
protocols:

- ``quick``: batch 128, 3 epochs per task (``forgetless compare``'s quick budget, the protocol
  of ``experiments/costs.py``'s COST_PRIOR); memory 500 (the defaults);
- ``online``: batch 10, 1 epoch (benchmarks/online.md); memory 1000.

Each repeat runs naive, er and mir in turn; the ratio printed is the median over repeats of
each repeat's ratio, so a slow moment of a shared machine hits the runs beside it too.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/mir_cost.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from forgetless import RunConfig, run

torch.set_num_threads(1)

PROTOCOLS = {"quick": {"batch_size": 128, "epochs": 3, "buffer_size": 500},
             "online": {"batch_size": 10, "epochs": 1, "buffer_size": 1000}}
STRATEGIES = {"naive": {}, "er": {"fill": "stream"}, "mir": {}}


def train_seconds(strategy: str, protocol: dict, seed: int = 0) -> float:
    params = dict(STRATEGIES[strategy])
    if strategy != "naive":
        params["buffer_size"] = protocol["buffer_size"]
    config = RunConfig(strategy=strategy, strategy_params=params, seed=seed,
                       batch_size=protocol["batch_size"], epochs=protocol["epochs"])
    return run(config, progress=False).costs["train_seconds_total"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    train_seconds("naive", PROTOCOLS["online"])  # warm-up
    print("| protocol | er x naive | mir x naive | mir x er |")
    print("|---|---|---|---|")
    for name, protocol in PROTOCOLS.items():
        ratios = {"er": [], "mir": [], "mir/er": []}
        for _ in range(args.repeats):
            seconds = {s: train_seconds(s, protocol) for s in STRATEGIES}
            ratios["er"].append(seconds["er"] / seconds["naive"])
            ratios["mir"].append(seconds["mir"] / seconds["naive"])
            ratios["mir/er"].append(seconds["mir"] / seconds["er"])
        median = {k: statistics.median(v) for k, v in ratios.items()}
        print(f"| {name} | {median['er']:.1f} | {median['mir']:.1f} | {median['mir/er']:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
