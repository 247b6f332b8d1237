"""The replay family's costs as ratios to naive, naive and each strategy measured side by side.

Embedded split MNIST, class-incremental, 5 tasks, MLP 784-400-400, Adam lr 1e-3, batch 128,
optimiser reset per task, ``--epochs`` per task (5, as the multi-seed tables in
``benchmarks/replay.md``), buffer_size=500 where a buffer is used, one thread. Every run trains in
a fresh process (so its peak resident memory is its own), and each strategy's run follows a naive
run of the same seed; the ratios are per pair (strategy / the naive run just before it) and the
table gives their medians over ``--repeats`` seeds, so a change in the machine's load between
pairs does not enter them. Bytes held: what the strategy keeps beyond the model (its footprint).

    PYTHONPATH=src python benchmarks/replay_costs.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RUNS = [  # (label, strategy, settings)
    ("er", "er", {"buffer_size": 500}),
    ("agem", "agem", {"buffer_size": 500}),
    ("derpp", "derpp", {"buffer_size": 500}),
    ("icarl", "icarl", {"buffer_size": 500}),
    ("generative-replay vae", "generative-replay", {"generator": "vae"}),
    ("generative-replay gan", "generative-replay", {"generator": "gan"}),
]


def train(strategy: str, settings: dict, seed: int, epochs: int) -> dict:
    """One run in this (fresh) process: its costs and ACC."""
    import torch

    torch.set_num_threads(1)
    from forgetless import RunConfig, run

    result = run(RunConfig(benchmark="split", scenario="class", tasks=5, strategy=strategy,
                           strategy_params=settings, epochs=epochs, seed=seed), progress=False)
    return {**result.costs, "acc": result.metrics["acc"],
            "raw_data": result.strategy_info["stores_raw_data"]}


def in_fresh_process(*args) -> dict:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(train, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="pairs per strategy (seeds)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/replay_costs.json")
    args = parser.parse_args()
    pairs = {label: [] for label, _, _ in RUNS}
    for seed in range(args.repeats):
        for label, strategy, settings in RUNS:
            naive = in_fresh_process("naive", {}, seed, args.epochs)
            other = in_fresh_process(strategy, settings, seed, args.epochs)
            pairs[label].append({"naive": naive, "strategy": other})
            print(f"seed {seed} {label}: {other['train_seconds_total']:.1f}s vs naive "
                  f"{naive['train_seconds_total']:.1f}s", flush=True)
    Path(args.out).write_text(json.dumps(pairs, indent=1))
    print("\n| strategy | ACC (median) | time x naive | peak memory x naive | peak memory - "
          "naive | bytes held | raw data |\n|---|--:|--:|--:|--:|--:|---|")
    for label, runs in pairs.items():
        def ratio(key, runs=runs):
            return statistics.median(r["strategy"][key] / r["naive"][key] for r in runs)

        last = runs[-1]["strategy"]
        extra_mib = statistics.median(r["strategy"]["peak_rss_bytes"]
                                      - r["naive"]["peak_rss_bytes"] for r in runs) / 2**20
        print(f"| {label} | {statistics.median(r['strategy']['acc'] for r in runs):.3f} | "
              f"{ratio('train_seconds_total'):.2f} | {ratio('peak_rss_bytes'):.2f} | "
              f"{extra_mib:+.1f} MiB | "
              f"{last['strategy_bytes']:,} | {'yes' if last['raw_data'] else 'no'} |")


if __name__ == "__main__":
    main()
