"""A-GEM's first search, before ``memory_strength`` existed (so it runs with
``memory_strength=0``, the paper's projection): memory batch size and the projection of the
optimiser's update, on split MNIST, class-incremental, with the issue's protocol: embedded split
MNIST, 5 tasks, MLP 784-400-400, Adam lr 1e-3, batch 128, 20 epochs, buffer_size=500, seed 0.
The memory strength was then chosen on a validation split by
``forgetless sweep benchmarks/replay_agem_strength.toml``.

    PYTHONPATH=src python benchmarks/replay_search.py
"""

from __future__ import annotations

import itertools

import torch

from forgetless import RunConfig, run

torch.set_num_threads(1)

GRID = {"memory_batch_size": [256, None], "project_update": [True, False]}


def main() -> None:
    print("| memory_batch_size | project_update | ACC |")
    print("|---|---|---|")
    for values in itertools.product(*GRID.values()):
        settings = dict(zip(GRID, values, strict=True))
        params = {"buffer_size": 500, "memory_strength": 0.0, **settings}
        config = RunConfig(strategy="agem", strategy_params=params,
                           epochs=20, seed=0)
        acc = run(config, progress=False).metrics["acc"]
        print(f"| {settings['memory_batch_size']} | {settings['project_update']} | {acc:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
