"""Generative replay's train time as a multiple of naive's, and its ACC, per variant.

The protocols of issue 16: embedded split MNIST, class-incremental, 20 epochs per task, and
embedded permuted MNIST, domain-incremental, 5 epochs per task; 5 tasks, MLP 784-400-400,
Adam lr 1e-3, batch 128, one thread. Within each repeat naive and every variant train one
after the other in this process (interleaved, so a change in the machine's load touches them
alike); a variant's time ratio is the median over repeats of its train time over the naive
run of the same repeat. Repeat r uses seed ``--seed + r``, so the ACC column is the mean over
those seeds. ``generator s`` is the share of the variant's train time spent training the
generator after each task (``GenerativeReplay.generator_seconds``).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/generative_replay_cost.py \
        --protocol split-class --repeats 3 default old=generator_budget=5,replay_every=1

A variant is ``label=key=value,key=value`` (strategy hyper-parameters, values parsed as
Python literals where they are ones) or ``default`` (the shipped defaults).
"""

from __future__ import annotations

import argparse
import ast
import statistics

import torch

from forgetless.config import RunConfig
from forgetless.experiments.runner import prepare, record

PROTOCOLS = {"split-class": ("split", "class", 20), "permuted-domain": ("permuted", "domain", 5)}


def parse_variant(spec: str) -> tuple[str, dict]:
    if spec == "default":
        return spec, {}
    label, _, settings = spec.partition("=")
    params = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return label, params


def train(protocol: str, strategy: str, params: dict, seed: int) -> dict:
    benchmark, scenario, epochs = PROTOCOLS[protocol]
    experiment = prepare(RunConfig(benchmark=benchmark, scenario=scenario, tasks=5,
                                   strategy=strategy, strategy_params=params, epochs=epochs,
                                   seed=seed), progress=False)
    learner = experiment.learner
    result = record(experiment, learner.fit(experiment.stream), 0)
    return {"seconds": result.costs["train_seconds_total"], "acc": result.metrics["acc"],
            "generator_seconds": sum(getattr(learner.strategy.parts[0], "generator_seconds", []))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["default"])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="split-class")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = [parse_variant(v) for v in args.variants]
    runs: dict[str, list[tuple[dict, dict]]] = {label: [] for label, _ in variants}
    for repeat in range(args.repeats):
        seed = args.seed + repeat
        for label, params in variants:
            naive = train(args.protocol, "naive", {}, seed)
            other = train(args.protocol, "generative-replay", params, seed)
            runs[label].append((naive, other))
            print(f"seed {seed} {label}: ACC {other['acc']:.3f}, {other['seconds']:.1f} s "
                  f"(generator {other['generator_seconds']:.1f} s) against naive "
                  f"{naive['seconds']:.1f} s", flush=True)
    print(f"\n{args.protocol}, {args.repeats} repeats from seed {args.seed}\n"
          "| variant | settings | ACC (mean) | time x naive (median) | generator share |\n"
          "|---|---|--:|--:|--:|")
    for label, params in variants:
        pairs = runs[label]
        ratio = statistics.median(o["seconds"] / n["seconds"] for n, o in pairs)
        share = statistics.median(o["generator_seconds"] / o["seconds"] for _, o in pairs)
        acc = statistics.mean(o["acc"] for _, o in pairs)
        settings = ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"
        print(f"| {label} | {settings} | {acc:.3f} | {ratio:.2f} | {share:.2f} |")


if __name__ == "__main__":
    main()
