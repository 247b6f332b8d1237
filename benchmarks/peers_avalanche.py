"""forgetless against Avalanche 0.6.0, side by side: time, final ACC and peak memory.

The protocol of issue 16's peer figures: permuted MNIST (the embedded digits,
``build_stream("permuted", "domain", 5, seed=0)``), domain-incremental, 5 tasks, ``--epochs``
per task (5), MLP 784-400-400, Adam lr 1e-3 (its state reset at each task in both), batch 128,
one thread. Both libraries get the SAME data and the SAME initial weights: this process builds
forgetless's stream and model once and writes their tensors to a file; the Avalanche run reads
them (as tensors, through ``tensors_benchmark``), and the forgetless run checks that the stream
and model it builds are equal to them. Every run is a fresh process (``subprocess``), the two
libraries interleaved (their order alternating), ``--repeats`` times. A run records its
in-process train+eval seconds (every task trained, then every task's test set evaluated, as
``Learner.fit`` does), its final ACC (mean accuracy over the 5 test sets after the last task) and
its peak resident memory (VmHWM of /proc/self/status at the end of the run).

Strategies and settings (forgetless's defaults where Avalanche has a knob for the same thing):
naive; EWC with lambda 100 (forgetless's tuned default for permuted domain-IL,
``strategies/tuned/ewc.toml``; Avalanche's own EWC, mode ``separate``); ER with a 500-sample
buffer and 128 replayed samples per step; A-GEM with 500 samples of memory (Avalanche: 125 per
finished task, 500 at the last task) and 256 per reference gradient; DER++ with a 500-sample
buffer, alpha 0.3, beta 1.0. Avalanche runs in its own virtual environment (the recipe is in
``benchmarks/peers.md``); without it this script prints one line and exits.

    OMP_NUM_THREADS=1 python benchmarks/peers_avalanche.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AVALANCHE_PYTHON = "/tmp/venv-avalanche/bin/python"
STRATEGIES = ("naive", "ewc", "er", "agem", "derpp")
LIBRARIES = ("forgetless", "avalanche")
TASKS, BATCH, LR, SEED, EVAL_BATCH = 5, 128, 1e-3, 0, 1000
EWC_LAMBDA, BUFFER, AGEM_SAMPLES, DER_ALPHA, DER_BETA = 100.0, 500, 256, 0.3, 1.0
FORGETLESS_SETTINGS = {"naive": {}, "ewc": {"lam": EWC_LAMBDA}, "er": {"buffer_size": BUFFER},
                       "agem": {"buffer_size": BUFFER, "memory_batch_size": AGEM_SAMPLES},
                       "derpp": {"buffer_size": BUFFER, "alpha": DER_ALPHA, "beta": DER_BETA}}


def peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM; Linux only, as the protocol)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: this benchmark needs Linux.")


def write_shared_data(path: Path) -> None:
    """forgetless's stream and initial weights, as plain tensors both libraries can read."""
    import torch

    from forgetless.data.benchmarks import build_stream
    from forgetless.models import build_model

    stream = build_stream("permuted", "domain", TASKS, seed=SEED)
    torch.manual_seed(SEED)  # as forgetless.experiments.runner.prepare seeds the model
    model = build_model("mlp", stream.input_shape, stream.num_outputs)
    torch.save({"train": [(t.train_x, t.train_y) for t in stream.tasks],
                "test": [(t.test_x, t.test_y) for t in stream.tasks],
                "init": [p.detach().clone() for p in model.state_dict().values()]}, path)


def run_forgetless(strategy: str, data: dict, epochs: int) -> tuple[float, float]:
    """Train and evaluate with forgetless's Learner; (train+eval seconds, final ACC)."""
    import torch

    from forgetless import RunConfig
    from forgetless.experiments.runner import prepare

    experiment = prepare(RunConfig(benchmark="permuted", scenario="domain", tasks=TASKS,
                                   strategy=strategy, strategy_params=FORGETLESS_SETTINGS[strategy],
                                   epochs=epochs, batch_size=BATCH, lr=LR, seed=SEED),
                         progress=False)
    tasks, model = experiment.stream.tasks, experiment.learner.model
    same = all(torch.equal(t.train_x, x) and torch.equal(t.train_y, y)
               for t, (x, y) in zip(tasks, data["train"], strict=True))
    same = same and all(torch.equal(a, b) for a, b in
                        zip(model.state_dict().values(), data["init"], strict=True))
    if not same:
        raise RuntimeError("forgetless built other data or weights than the shared file.")
    start = time.perf_counter()
    fit = experiment.learner.fit(experiment.stream)
    seconds = time.perf_counter() - start
    return seconds, statistics.fmean(fit.accuracy_matrix[-1])


def import_torchvision() -> None:
    """Import torchvision even where its C ops cannot load. The torchvision built for torch
    2.13 on PyPI (0.28.0) links to CUDA torch's libraries, so with the CPU torch its ops are
    missing, and its ``_meta_registrations`` then fails on ``torchvision::nms`` and ``qnms``,
    which it registers unconditionally. Declaring those two schemas lets its pure-Python parts
    import; Avalanche's classification path on tensors calls none of its C ops."""
    import torch

    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import_torchvision.library = library  # keep the definitions alive
        import torchvision  # noqa: F401


def avalanche_strategy(strategy: str, model, epochs: int):
    """Avalanche's own strategy for ``strategy``, configured as forgetless's."""
    import torch
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training import supervised
    from avalanche.training.plugins import EvaluationPlugin

    common = {"model": model, "optimizer": torch.optim.Adam(model.parameters(), lr=LR),
              "criterion": torch.nn.CrossEntropyLoss(), "train_mb_size": BATCH,
              "train_epochs": epochs, "eval_mb_size": EVAL_BATCH,
              "evaluator": EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])}
    if strategy == "naive":
        return supervised.Naive(**common)
    if strategy == "ewc":
        return supervised.EWC(ewc_lambda=EWC_LAMBDA, mode="separate", **common)
    if strategy == "er":
        return supervised.Replay(mem_size=BUFFER, **common)
    if strategy == "agem":
        return supervised.AGEM(patterns_per_exp=BUFFER // (TASKS - 1), sample_size=AGEM_SAMPLES,
                               **common)
    return supervised.DER(mem_size=BUFFER, batch_size_mem=BATCH, alpha=DER_ALPHA, beta=DER_BETA,
                          **common)


def run_avalanche(strategy: str, data: dict, epochs: int) -> tuple[float, float]:
    """Train and evaluate with Avalanche; (train+eval seconds, final ACC)."""
    import random

    import numpy
    import torch

    import_torchvision()
    from avalanche.benchmarks.scenarios.deprecated.generators import tensors_benchmark

    benchmark = tensors_benchmark(train_tensors=data["train"], test_tensors=data["test"],
                                  task_labels=[0] * TASKS)  # domain-IL: no task id
    random.seed(SEED)
    numpy.random.seed(SEED)
    torch.manual_seed(SEED)
    width = data["init"][0].shape[1]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(width, 400), torch.nn.ReLU(),
                                torch.nn.Linear(400, 400), torch.nn.ReLU(),
                                torch.nn.Linear(400, 10))
    model.load_state_dict(dict(zip(model.state_dict(), data["init"], strict=True)))
    learner = avalanche_strategy(strategy, model, epochs)
    start = time.perf_counter()
    for experience in benchmark.train_stream:
        learner.train(experience, reset_optimizer_state=True)  # forgetless resets Adam per task
        accuracies = learner.eval(benchmark.test_stream)
    seconds = time.perf_counter() - start
    final = [v for k, v in accuracies.items() if k.startswith("Top1_Acc_Exp/eval_phase/test")]
    if len(final) != TASKS:
        raise RuntimeError(f"expected {TASKS} per-experience accuracies, got {sorted(accuracies)}")
    return seconds, statistics.fmean(final)


def worker(library: str, strategy: str, data_path: str, epochs: int) -> None:
    """One run in this fresh process; prints its figures as one JSON line."""
    import torch

    torch.set_num_threads(1)
    data = torch.load(data_path)
    train = run_forgetless if library == "forgetless" else run_avalanche
    seconds, acc = train(strategy, data, epochs)
    print("RESULT " + json.dumps({"seconds": seconds, "acc": acc, "peak_rss": peak_rss_bytes()}))


def avalanche_missing(python: str) -> str | None:
    """Why Avalanche cannot run from ``python``, or None when it can."""
    if not Path(python).exists():
        return f"no Python at {python}"
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('avalanche') is None)"
    if subprocess.run([python, "-c", probe]).returncode:
        return f"avalanche-lib is not installed in {python}"
    return None


def one_run(python: str, library: str, strategy: str, data_path: Path, epochs: int) -> dict:
    command = [python, __file__, "--worker", library, strategy, str(data_path),
               "--epochs", str(epochs)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{library} {strategy} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def table(runs: dict, strategies) -> list[str]:
    """Per strategy: median of the per-pair time ratios, median ACC and peak memory of each."""
    lines = ["| strategy | time forgetless/Avalanche (median of pairs) | ACC forgetless | "
             "ACC Avalanche | peak RSS forgetless (MB) | peak RSS Avalanche (MB) |",
             "|---|---|---|---|---|---|"]
    for strategy in strategies:
        ours, theirs = runs["forgetless"][strategy], runs["avalanche"][strategy]
        ratio = statistics.median(a["seconds"] / b["seconds"]
                                  for a, b in zip(ours, theirs, strict=True))
        cells = [f"{ratio:.2f}"]
        cells += [f"{statistics.median(r['acc'] for r in lib):.3f}" for lib in (ours, theirs)]
        cells += [f"{median_rss(lib) / 1e6:.0f}" for lib in (ours, theirs)]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return lines


def median_rss(runs: list[dict]) -> float:
    return statistics.median(r["peak_rss"] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--avalanche-python", default=AVALANCHE_PYTHON,
                        help="the Python of the virtual environment Avalanche is installed in")
    parser.add_argument("--out", default="benchmarks/results/peers_avalanche.json")
    parser.add_argument("--worker", nargs=3, metavar=("LIBRARY", "STRATEGY", "DATA"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.epochs)
        return
    missing = avalanche_missing(args.avalanche_python)
    if missing:
        print(f"skipped: {missing}; install it as benchmarks/peers.md says, or pass "
              "--avalanche-python.")
        return
    pythons = {"forgetless": sys.executable, "avalanche": args.avalanche_python}
    runs = {library: {s: [] for s in args.strategies} for library in LIBRARIES}
    with tempfile.TemporaryDirectory() as folder:
        data_path = Path(folder) / "permuted.pt"
        write_shared_data(data_path)
        for repeat in range(args.repeats):
            for index, strategy in enumerate(args.strategies):
                order = LIBRARIES if (repeat + index) % 2 == 0 else LIBRARIES[::-1]
                for library in order:
                    result = one_run(pythons[library], library, strategy, data_path,
                                     args.epochs)
                    runs[library][strategy].append(result)
                    print(f"repeat {repeat} {library} {strategy}: {result['seconds']:.2f} s, "
                          f"ACC {result['acc']:.3f}, peak RSS {result['peak_rss'] / 1e6:.0f} MB",
                          flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(runs, indent=1))
    print("\n".join(table(runs, args.strategies)))
    if {"naive", "ewc"} <= set(args.strategies):
        for library in LIBRARIES:
            extra = median_rss(runs[library]["ewc"]) - median_rss(runs[library]["naive"])
            print(f"EWC - naive peak RSS, {library}: {extra / 1e6:+.1f} MB (medians)")


if __name__ == "__main__":
    main()
