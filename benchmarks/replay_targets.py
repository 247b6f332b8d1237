"""The replay family's targets: one run each, the issue's protocol.

Embedded split MNIST (4,000 train / 1,000 test), class-incremental, 5 tasks, MLP 784-400-400,
Adam lr 1e-3, batch 128, optimiser reset per task, seed 0, 20 epochs per task,
buffer_size=500 where a buffer is used. Prints a markdown table with ACC, time and the costs as
ratios to naive in the same process.

    PYTHONPATH=src python benchmarks/replay_targets.py [--seed N] [strategy ...]

Naive always runs first (the ratios' base); name strategies to run only those beside it.
"""

from __future__ import annotations

import argparse

import torch

from forgetless import RunConfig, run

torch.set_num_threads(1)

RUNS = [  # (label, strategy, settings, target)
    ("naive", "naive", {}, None),
    ("er", "er", {"buffer_size": 500}, 0.88),
    ("derpp", "derpp", {"buffer_size": 500}, 0.88),
    ("icarl", "icarl", {"buffer_size": 500}, 0.88),
    ("agem", "agem", {"buffer_size": 500}, 0.76),  # the paper's projection (the default)
    ("agem memory_strength=0.5 (the default before issue 12)", "agem",
     {"buffer_size": 500, "memory_strength": 0.5}, 0.76),
    ("generative-replay vae", "generative-replay", {"generator": "vae"}, 0.75),
    ("generative-replay gan", "generative-replay", {"generator": "gan"}, 0.50),
]


def generator_note(kind: str, costs: dict) -> str:
    """The generator's step rule and its total steps, as the strategy resolves its defaults."""
    from forgetless.strategies.replay.generative_replay import GenerativeReplay

    rule = GenerativeReplay(generator=kind)
    steps = sum(rule.generator_steps(s) for s in costs["steps"])
    return (f"generator budget {rule.generator_budget:g}x classifier steps, at least "
            f"{rule.generator_min_steps} per task ({steps} steps)")


def main(only: list[str], seed: int) -> None:
    rows, base = [], None
    for label, strategy, settings, target in RUNS:
        if only and label.split()[0] not in only and label not in only and label != "naive":
            continue
        config = RunConfig(benchmark="split", scenario="class", tasks=5, strategy=strategy,
                           strategy_params=settings, epochs=20, seed=seed)
        result = run(config, progress=False)
        costs = result.costs
        if base is None:
            base = costs
        extra = generator_note(settings["generator"], costs) if "generator" in settings else ""
        rows.append((label, result.metrics["acc"], target, costs["train_seconds_total"],
                     costs["train_seconds_total"] / base["train_seconds_total"],
                     costs["strategy_bytes"], result.strategy_info["stores_raw_data"], extra))
        print(rows[-1], flush=True)
    print("\n| strategy | ACC | target | train s | time / naive | bytes held | raw data | note |")
    print("|---|---|---|---|---|---|---|---|")
    for label, acc, target, seconds, ratio, held, raw, extra in rows:
        mark = "" if target is None else (" (met)" if acc >= target else " (missed)")
        print(f"| {label} | {acc:.3f}{mark} | {'' if target is None else f'>= {target}'} | "
              f"{seconds:.1f} | {ratio:.1f} | {held:,} | {raw} | {extra} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strategies", nargs="*", help="labels to run (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.strategies, args.seed)
