"""How far each strategy's tuned defaults stay from the divergence guard's thresholds.

For every registered strategy and scenario it serves (split benchmark, tuned hyper-parameters),
trains and prints the largest ratio, over all tasks, of the total loss, of the cross-entropy
(what the guard watches) and of the weights' norm to their values at the task's first step
(the guard stops at 100x; see ``forgetless/divergence.py``).

    OMP_NUM_THREADS=1 python benchmarks/divergence_margins.py --source mnist --epochs 2 \\
        --batch-size 128 --strategies ewc,online-ewc
"""

from __future__ import annotations

import argparse

import torch

from forgetless.data.benchmarks import build_stream
from forgetless.divergence import total_norm
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import STRATEGIES, build_strategy

SCENARIOS = ("task", "domain", "class")


def margins(name: str, scenario: str, source: str, epochs: int, batch_size: int) -> dict:
    stream = build_stream("split", scenario, tasks=5, source=source, seed=0)
    torch.manual_seed(0)
    model = build_model("mlp", stream.input_shape, stream.num_outputs)
    learner = Learner(model, build_strategy(name, benchmark="split", scenario=scenario),
                      epochs=epochs, batch_size=batch_size, progress=False)
    first, worst = {}, {"loss": 0.0, "cross-entropy": 0.0, "norm": 0.0}
    loss_of, step_of = learner.loss, learner.train_step

    def loss(*args):
        value = loss_of(*args)
        first["current cross-entropy"] = value.item()
        return value

    def train_step(batch):
        value = step_of(batch)
        params = learner.trainable_parameters()
        now = {"loss": float(value), "cross-entropy": first["current cross-entropy"],
               "norm": total_norm([p.detach() for p in params], params[0].device).item()}
        if learner.step_in_task == 0:
            first.update(now)
        for key in worst:
            worst[key] = max(worst[key], now[key] / max(first[key], 1.0))
        return value

    learner.loss, learner.train_step = loss, train_step
    learner.fit(stream)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="digits")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--strategies", help="comma-separated names (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.strategies.split(",") if args.strategies else STRATEGIES.names()
    print(f"split {args.source}, {args.epochs} epochs, batch {args.batch_size}: largest ratio to "
          "the task's first step (floored at 1)")
    print(f"{'strategy':18s} {'scenario':8s} {'loss':>8s} {'cross-entropy':>14s} {'norm':>6s}")
    for name in names:
        cls = STRATEGIES.get(name)
        for scenario in SCENARIOS:
            if scenario not in cls.scenarios or (cls.needs_task_id and scenario != "task"):
                continue
            worst = margins(name, scenario, args.source, args.epochs, args.batch_size)
            print(f"{name:18s} {scenario:8s} {worst['loss']:8.2f} {worst['cross-entropy']:14.2f} "
                  f"{worst['norm']:6.2f}", flush=True)


if __name__ == "__main__":
    main()
