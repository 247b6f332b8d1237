"""Loop speed: the Learner against a plain eager PyTorch loop, and each strategy against naive.

Permuted MNIST (embedded, domain-incremental), MLP 784-400-400, Adam 1e-3, batch 128. Every
figure is the time of the training loop only (``Learner._train_batches``: the optimiser steps
and their hooks, not the end-of-task Fisher or buffer fill) on the *second* task, so replay
draws from a full buffer and the regularizers pay their penalty. The plain loop trains on the
same batches (the same seeded shuffle) with ``torch.optim.Adam``'s defaults and no read of
the loss (``loop_overhead.plain_loop``); "naive
adam-fused" is the Learner with ``optimizer="adam-fused"``. All configurations are timed in one
process, in an order that rotates every repeat; each ratio is the median over repeats of the
per-repeat ratio. Targets (issue 16): naive >= 1.3x the plain
loop's steps/s; ER <= 2.1x naive's time, EWC / SI / MAS <= 1.2x, DER++ <= 1.6x.

    OMP_NUM_THREADS=1 python benchmarks/loop_speed.py --repeats 7 --steps 150
    OMP_NUM_THREADS=1 python benchmarks/loop_speed.py --compile   # the compiled step too
    OMP_NUM_THREADS=1 python benchmarks/loop_speed.py --profile --steps 100   # naive's profile
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from loop_overhead import plain_loop  # the hand-written loop (this folder)

from forgetless.data.benchmarks import build_stream
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import build_strategy

STRATEGIES = ("naive", "er", "ewc", "si", "mas", "derpp")
TARGETS = {"naive / plain (steps/s)": 1.3, "naive adam-fused / plain (steps/s)": 1.3,
           "naive --compile / plain (steps/s)": 1.3, "er": 2.1, "ewc": 1.2, "si": 1.2, "mas": 1.2,
           "derpp": 1.6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true",
                        help="only profile naive's training loop (torch.profiler) and print "
                             "where its time goes")
    parser.add_argument("--compile", action="store_true",
                        help="also time naive with the compiled step (Learner(compile=True))")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stream = build_stream("permuted", "domain", tasks=2)

    def fresh_model():
        torch.manual_seed(0)
        return build_model("mlp", stream.input_shape, stream.num_outputs)

    first_task = {}  # the training loop's seconds on task 1 at a configuration's first run

    def time_strategy(name: str, label: str, **options) -> float:
        """Seconds of the training loop on task 2 (task 1 trained first)."""
        learner = Learner(fresh_model(), build_strategy(name, {}), iterations=args.steps,
                          batch_size=args.batch_size, progress=False, **options)
        learner.bind(stream)
        seconds = []
        loop = learner._train_batches

        def timed(*a, **kw):
            start = time.perf_counter()
            loop(*a, **kw)
            seconds.append(time.perf_counter() - start)

        learner._train_batches = timed
        learner.learn(stream[0])
        learner.learn(stream[1])
        first_task.setdefault(label, seconds[0])
        return seconds[1]

    def time_plain() -> float:
        model, task = fresh_model(), stream[1]
        start = time.perf_counter()
        plain_loop(model, task.train_x, task.train_y, args.steps, args.batch_size, 0)
        return time.perf_counter() - start

    if args.profile:
        from torch.profiler import profile

        time_strategy("naive", "warm-up")
        with profile() as profiler:
            time_strategy("naive", "profiled")
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        return
    runs = {"plain": time_plain, **{n: (lambda n=n: time_strategy(n, n)) for n in STRATEGIES},
            "naive adam-fused": lambda: time_strategy("naive", "naive adam-fused",
                                                      optimizer="adam-fused")}
    if args.compile:
        runs["naive --compile"] = lambda: time_strategy("naive", "naive --compile",
                                                        compile=True)
    # warm-up: first-call costs (torch._dynamo's import, compilation) are paid here
    first = {name: run() for name, run in runs.items()}
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(runs[name]())
    print(f"permuted MNIST, MLP 784-400-400, {args.steps} steps of batch {args.batch_size} on "
          f"task 2, {args.threads} thread(s), {args.repeats} repeats (rotating order)")
    for name, values in times.items():
        compiling = f", its task 1: {first_task[name]:.3f} s" if name in first_task else ""
        print(f"  {name:<16} median {statistics.median(values):.3f} s   (first run: "
              f"{first[name]:.3f} s{compiling})")
    naive = times["naive"]
    ratios = {f"{name} / plain (steps/s)": [p / n for p, n in zip(times["plain"], times[name],
                                                                  strict=True)]
              for name in names if name.startswith("naive")}
    for name in names:
        if not name.startswith(("plain", "naive")):
            ratios[name] = [t / n for t, n in zip(times[name], naive, strict=True)]
    print("median per-repeat ratios (strategies: time / naive's time):")
    for name, values in ratios.items():
        target, median, at_least = TARGETS.get(name), statistics.median(values), name[0] == "n"
        verdict = "" if target is None else (
            f"  target {'>=' if at_least else '<='} {target}: "
            f"{'met' if (median >= target) == at_least else 'NOT met'}")
        print(f"  {name:<24} {median:.3f}{verdict}")


if __name__ == "__main__":
    main()
