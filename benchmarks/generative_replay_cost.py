"""Generative replay's train time as a multiple of naive's, and its ACC, per variant.

The protocols of issue 16: embedded split MNIST, class-incremental, 20 epochs per task, and
embedded permuted MNIST, domain-incremental, 5 epochs per task; 5 tasks, MLP 784-400-400,
Adam lr 1e-3, batch 128, one thread. Within each repeat naive and every variant train one
after the other in this process (interleaved, so a change in the machine's load touches them
alike); a variant's time ratio is the median over repeats of its train time over the naive
run of the same repeat. Repeat r uses seed ``--seed + r``, so the ACC column is the mean over
those seeds. ``--clock cpu`` times by the process's CPU time, not the wall clock's: on a
shared machine it does not count the time other processes held the core. ``generator share``
is the share of the variant's train time spent training the generator after each task
(``GenerativeReplay.generator_seconds``).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/generative_replay_cost.py --clock cpu \
        --protocol split-class --repeats 3 default \
        old=generator_hidden=[400,400],latent=100,generator_lr=0.001,generator_budget=5

A variant is ``label=key=value,key=value`` (strategy hyper-parameters, values parsed as
Python literals where they are ones) or ``default`` (the shipped defaults).

``--step-costs`` instead times one step of each VAE size (batch 256, as the generator trains)
against one naive classifier step (batch 128), alternating, medians of 30, and prints where a
400-400 VAE step's time goes (torch.profiler).
"""

from __future__ import annotations

import argparse
import ast
import re
import statistics
import time
from unittest import mock

import torch

from forgetless.config import RunConfig
from forgetless.experiments.runner import prepare, record

PROTOCOLS = {"split-class": ("split", "class", 20), "permuted-domain": ("permuted", "domain", 5),
             # `forgetless compare`'s quick budget (3 epochs per task), one scenario each
             **{f"compare-{s}": ("split", s, 3) for s in ("task", "domain", "class")}}


def parse_variant(spec: str) -> tuple[str, dict]:
    if spec == "default":
        return spec, {}
    label, _, settings = spec.partition("=")
    params = {}
    for item in filter(None, re.split(r",(?=\w+=)", settings)):  # commas inside [a,b] stay
        key, _, value = item.partition("=")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return label, params


def train(protocol: str, strategy: str, params: dict, seed: int, clock: str = "wall") -> dict:
    """One run; with ``clock="cpu"`` every time it records is this process's CPU time instead
    of the wall clock's (one thread: what the run itself used, whatever else the machine runs)."""
    if clock == "cpu":
        with mock.patch.object(time, "perf_counter", time.process_time):
            return train(protocol, strategy, params, seed)
    benchmark, scenario, epochs = PROTOCOLS[protocol]
    experiment = prepare(RunConfig(benchmark=benchmark, scenario=scenario, tasks=5,
                                   strategy=strategy, strategy_params=params, epochs=epochs,
                                   seed=seed), progress=False)
    learner = experiment.learner
    result = record(experiment, learner.fit(experiment.stream), 0)
    return {"seconds": result.costs["train_seconds_total"], "acc": result.metrics["acc"],
            "generator_seconds": sum(getattr(learner.strategy.parts[0], "generator_seconds", []))}


def step_costs() -> None:
    from forgetless.models import build_model
    from forgetless.strategies.replay.generators import build_generator

    rng = torch.Generator().manual_seed(0)
    x, condition = torch.rand(256, 1, 28, 28), torch.eye(15)[torch.arange(256) % 15]
    model = build_model("mlp", (1, 28, 28), 10, hidden=(400, 400))
    optimizer = torch.optim.Adam(model.parameters())

    def naive_step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[:128]), torch.zeros(128).long()).backward()
        optimizer.step()

    def median_ms(step, repeats=30):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)

    print("| VAE hidden | latent | step ms | naive step ms | ratio |\n|---|--:|--:|--:|--:|")
    for hidden, latent in (((400, 400), 100), ((200,), 100), ((200,), 32), ((100,), 32)):
        vae = build_generator("vae", (1, 28, 28), 15, hidden=hidden, latent=latent)
        vae.reset_optimizer()
        pairs = [(median_ms(lambda v=vae: v.train_step(x, condition, rng), 3),
                  median_ms(naive_step, 3)) for _ in range(10)]
        ms, base = (statistics.median(p[i] for p in pairs) for i in (0, 1))
        print(f"| {list(hidden)} | {latent} | {ms:.1f} | {base:.1f} | "
              f"{statistics.median(a / b for a, b in pairs):.2f} |")
    vae = build_generator("vae", (1, 28, 28), 15, hidden=(400, 400), latent=100)
    vae.reset_optimizer()
    with torch.profiler.profile() as profile:
        for _ in range(20):
            vae.train_step(x, condition, rng)
    print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["default"])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="split-class")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step-costs", action="store_true")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time the runs by the wall clock or by this process's CPU time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.step_costs:
        return step_costs()
    variants = [parse_variant(v) for v in args.variants]
    runs: dict[str, list[tuple[dict, dict]]] = {label: [] for label, _ in variants}
    for repeat in range(args.repeats):
        seed = args.seed + repeat
        for label, params in variants:
            naive = train(args.protocol, "naive", {}, seed, args.clock)
            other = train(args.protocol, "generative-replay", params, seed, args.clock)
            runs[label].append((naive, other))
            print(f"seed {seed} {label}: ACC {other['acc']:.3f}, {other['seconds']:.1f} s "
                  f"(generator {other['generator_seconds']:.1f} s) against naive "
                  f"{naive['seconds']:.1f} s", flush=True)
    print(f"\n{args.protocol}, {args.repeats} repeats from seed {args.seed}, "
          f"{args.clock} clock\n"
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
