"""Choose the strengths shipped in ``strategies/tuned/{ewc,online-ewc,si,mas,lwf}.toml``.

Protocol: the embedded MNIST training set is split (seeded) into 3,200 training and 800
validation images; every candidate strength is trained on the training part with the issue's
protocol (MLP 784-400-400, Adam lr 1e-3, batch 128, 5 epochs per task, optimiser reset per task,
5 tasks, seed 0) and scored by ACC on the validation part. The test set is never looked at.
The best value per (benchmark, scenario) is written to the TOML files with ``--write``.
Finished runs are kept in ``--out`` and not run again (delete it to start over).

    PYTHONPATH=src python benchmarks/regularization_tuning.py --write
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from forgetless.data.benchmarks import build_stream
from forgetless.data.sources import Source, load_source
from forgetless.learner import Learner
from forgetless.metrics import average_accuracy
from forgetless.models import build_model
from forgetless.strategies import build_strategy

GRID = {
    "ewc": ("lam", [10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0]),
    "online-ewc": ("lam", [10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0]),
    "si": ("c", [0.5, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 300.0, 1000.0]),
    "mas": ("lam", [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]),
    "lwf": ("alpha", [0.5, 1.0, 2.0, 5.0]),
}
SETTINGS = [("permuted", "domain"), ("split", "task"), ("split", "domain"), ("split", "class")]
TUNED = Path(__file__).resolve().parents[1] / "src/forgetless/strategies/tuned"


def validation_source(seed: int = 0) -> Source:
    mnist = load_source("mnist")
    order = torch.randperm(mnist.train_x.shape[0], generator=torch.Generator().manual_seed(seed))
    train, valid = order[:3200], order[3200:]
    return Source.from_tensors(mnist.train_x[train], mnist.train_y[train], mnist.train_x[valid],
                               mnist.train_y[valid], num_classes=10, name="mnist-validation")


def score(source, benchmark, scenario, strategy, params, seed=0, epochs=5) -> float:
    stream = build_stream(benchmark, scenario, 5, seed=seed, source=source)
    torch.manual_seed(seed)
    model = build_model("mlp", stream.input_shape, stream.num_outputs)
    learner = Learner(model, build_strategy(strategy, params, benchmark, scenario),
                      epochs=epochs, batch_size=128, lr=1e-3, seed=seed, progress=False)
    return average_accuracy(learner.fit(stream).accuracy_matrix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the tuned TOML files")
    parser.add_argument("--out", default="benchmarks/results/regularization_tuning.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    source = validation_source()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(out.read_text()) if out.exists() else []
    results = []
    for benchmark, scenario in SETTINGS:
        candidates = [("naive", None, None)] + [(strategy, param, value) for strategy, (param,
                      values) in GRID.items() for value in values]
        for strategy, param, value in candidates:
            key = {"benchmark": benchmark, "scenario": scenario, "strategy": strategy,
                   "param": param, "value": value}
            row = next((r for r in done if all(r[k] == v for k, v in key.items())), None)
            if row is None:
                start = time.perf_counter()
                acc = score(source, benchmark, scenario, strategy,
                            {} if param is None else {param: value})
                row = {**key, "acc": acc}
                done.append(row)
                out.write_text(json.dumps(done, indent=1))
                print(f"{benchmark}.{scenario} {strategy} {param}={value}: validation ACC "
                      f"{acc:.4f} ({time.perf_counter() - start:.1f}s)", flush=True)
            results.append(row)
    print(markdown(results))
    if args.write:
        write_tuned(results)


def best(results, strategy, benchmark, scenario):
    rows = [r for r in results if (r["strategy"], r["benchmark"], r["scenario"])
            == (strategy, benchmark, scenario)]
    return max(rows, key=lambda r: (r["acc"], -r["value"]))  # ties: the weaker strength


def markdown(results) -> str:
    lines = ["| strategy | parameter | " + " | ".join(f"{b}.{s}" for b, s in SETTINGS) + " |",
             "|---|---|" + "---|" * len(SETTINGS)]
    naive = {(r["benchmark"], r["scenario"]): r["acc"] for r in results
             if r["strategy"] == "naive"}
    lines.append("| naive | – | " + " | ".join(f"{naive[s]:.4f}" for s in SETTINGS) + " |")
    for strategy, (param, values) in GRID.items():
        chosen = {s: best(results, strategy, *s)["value"] for s in SETTINGS}
        for value in values:
            cells = []
            for setting in SETTINGS:
                acc = next(r["acc"] for r in results if (r["strategy"], r["value"],
                           r["benchmark"], r["scenario"]) == (strategy, value, *setting))
                mark = " **←**" if chosen[setting] == value else ""
                cells.append(f"{acc:.4f}{mark}")
            lines.append(f"| {strategy} | {param}={value:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tuned(results) -> None:
    for strategy, (param, _) in GRID.items():
        text = ["# Chosen by benchmarks/regularization_tuning.py (validation ACC, seed 0); "
                "see benchmarks/regularization.md."]
        for benchmark, scenario in SETTINGS:
            row = best(results, strategy, benchmark, scenario)
            text += ["", f"[{benchmark}.{scenario}]", f"{param} = {row['value']!r}"]
        (TUNED / f"{strategy}.toml").write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
