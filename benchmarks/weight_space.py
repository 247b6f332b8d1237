"""The weight-space strategies from a *pretrained* start, the setting they were made for: what
the starting model knew is kept, and what each new task costs it.

Protocol: sklearn's 8x8 digits, permuted; an MLP 64-64-10 is first trained on the identity
permutation (10 epochs, batch 32, Adam lr 1e-3): that is the "pretrained" model. Then a stream
of 3 further permutations (3 epochs each, same optimiser settings, reset per task), domain-
incremental, with each strategy. Printed per strategy, mean over seeds: accuracy on the
pretraining permutation before and after the stream ("prior"), the new permutations' accuracy
right after each is learned (learning accuracy) and at the end (final ACC of the new tasks).

    PYTHONPATH=src python benchmarks/weight_space.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from forgetless.data.benchmarks import build_stream
from forgetless.data.stream import Stream
from forgetless.learner import Learner
from forgetless.metrics import average_accuracy, learning_accuracy
from forgetless.models import build_model
from forgetless.strategies import build_strategy

torch.set_num_threads(1)

RUNS = [("naive", "naive", {}), ("wise-ft", "wise-ft", {}), ("merge (magmax)", "merge", {}),
        ("merge (average)", "merge", {"mode": "average"})]
OPTIONS = {"batch_size": 32, "lr": 1e-3, "progress": False}


def run(spec: str, settings: dict, seed: int) -> tuple[float, float, float, float]:
    full = build_stream("permuted", "domain", tasks=4, source="digits", seed=0)
    prior = full.tasks[0]
    later = Stream([dataclasses.replace(t, task_id=i) for i, t in enumerate(full.tasks[1:])],
                   "domain", full.num_outputs)
    torch.manual_seed(seed)
    model = build_model("mlp", full.input_shape, full.num_outputs, hidden=(64,))
    Learner(model, epochs=10, seed=seed, **OPTIONS).fit(
        Stream([prior], "domain", full.num_outputs))
    learner = Learner(model, build_strategy(spec, settings), epochs=3, seed=seed, **OPTIONS)
    learner.bind(later)

    def prior_accuracy() -> float:
        return float((learner.predict(prior.test_x) == prior.test_y).float().mean())

    before = prior_accuracy()
    matrix = learner.fit(later).accuracy_matrix
    return before, prior_accuracy(), learning_accuracy(matrix), average_accuracy(matrix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    print("| strategy | prior before | prior after | new tasks: learning acc | new tasks: "
          "final ACC |\n|---|---|---|---|---|")
    for label, spec, settings in RUNS:
        rows = torch.tensor([run(spec, settings, seed) for seed in args.seeds])
        cells = " | ".join(f"{100 * v:.1f}" for v in rows.mean(0).tolist())
        print(f"| {label} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
