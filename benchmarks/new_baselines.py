"""The baselines added with issue 12 (l2, er-ace, gdumb, gem) beside the methods they check,
and SI before/after the clipping fix, on one protocol.

Embedded split MNIST, 5 tasks, MLP 784-400-400, Adam lr 1e-3, batch 128, optimiser reset per
task, 3 epochs per task (``forgetless compare``'s quick budget), seed 0; task- and
class-incremental. Memories: 500 samples (er, er-ace, gdumb, agem); gem keeps 100 per finished
task (500 after the last). Times are ratios to naive in the same process, after one naive
warm-up run that is not recorded (PyTorch's first optimiser step costs about a second).

    PYTHONPATH=src python benchmarks/new_baselines.py [--seed N] [--scenario task|class ...]
    PYTHONPATH=src python benchmarks/new_baselines.py --l2-sweep

``--l2-sweep`` instead prints the ACC of L2's ``lam`` values on split digits (sklearn's 8x8
digits, 5 tasks, MLP with one hidden layer of 64, batch 32, 5 epochs, seed 0), the sweep that
chose its default.
"""

from __future__ import annotations

import argparse
import contextlib

import torch

from forgetless import RunConfig, run
from forgetless.strategies.regularization.si import SI

torch.set_num_threads(1)

RUNS = [  # (label, strategy, settings)
    ("naive", "naive", {}),
    ("l2", "l2", {}),
    ("ewc", "ewc", {}),
    ("si", "si", {}),
    ("si, each contribution clipped (before the fix)", "si", {}),
    ("er", "er", {"buffer_size": 500}),
    ("er-ace", "er-ace", {"buffer_size": 500}),
    ("gdumb", "gdumb", {"buffer_size": 500}),
    ("agem", "agem", {"buffer_size": 500}),
    ("gem", "gem", {"memory_per_task": 100}),
]


@contextlib.contextmanager
def si_clipping_each_contribution():
    """SI as it was: each task's contribution clipped at 0 before it is added."""
    fixed = SI.after_task

    def before_the_fix(self, task):
        previous = self.importance
        self.importance = None
        fixed(self, task)  # the new contribution alone, clipped
        if previous is not None:
            self.importance = {n: previous[n] + v for n, v in self.importance.items()}
            self.rebuild()

    SI.after_task = before_the_fix
    try:
        yield
    finally:
        SI.after_task = fixed


def main(scenarios: list[str], seed: int) -> None:
    run(RunConfig(epochs=1, iterations=5, seed=seed), progress=False)  # warm-up, not recorded
    for scenario in scenarios:
        rows, base = [], None
        for label, strategy, settings in RUNS:
            config = RunConfig(benchmark="split", scenario=scenario, tasks=5, strategy=strategy,
                               strategy_params=settings, epochs=3, seed=seed)
            context = (si_clipping_each_contribution() if "before the fix" in label
                       else contextlib.nullcontext())
            with context:
                result = run(config, progress=False)
            seconds = result.costs["train_seconds_total"]
            base = base or seconds
            rows.append((label, result.metrics["acc"], result.metrics["forgetting"],
                         seconds / base, result.costs["strategy_bytes"]))
            print(scenario, rows[-1], flush=True)
        print(f"\n{scenario}-incremental, seed {seed}\n")
        print("| strategy | ACC | forgetting | time / naive | bytes held |")
        print("|---|---|---|---|---|")
        for label, acc, forgetting, ratio, held in rows:
            print(f"| {label} | {acc:.3f} | {forgetting:.3f} | {ratio:.1f} | {held:,} |")


def l2_sweep(seed: int) -> None:
    print("| scenario | " + " | ".join(f"lam={lam:g}" for lam in L2_VALUES) + " |")
    print("|---|" + "---|" * len(L2_VALUES))
    for scenario in ("task", "domain", "class"):
        accs = []
        for lam in L2_VALUES:
            config = RunConfig(benchmark="split", scenario=scenario, tasks=5, source="digits",
                               strategy="l2", strategy_params={"lam": lam}, epochs=5,
                               batch_size=32, model_options={"hidden": [64]}, seed=seed)
            accs.append(run(config, progress=False).metrics["acc"])
        print(f"| {scenario} | " + " | ".join(f"{a:.3f}" for a in accs) + " |", flush=True)


L2_VALUES = (0.0, 0.01, 0.1, 1.0, 10.0)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenario", nargs="*", default=["task", "class"])
    parser.add_argument("--l2-sweep", action="store_true")
    args = parser.parse_args()
    if args.l2_sweep:
        l2_sweep(args.seed)
    else:
        main(args.scenario, args.seed)
