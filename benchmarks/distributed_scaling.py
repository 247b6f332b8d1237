"""One run on 1 and 2 processes: training samples/s on full Fashion-MNIST, the measured cost of
the gradient all-reduce, and the scaling it projects (issue 16).

Throughput: ``forgetless run --source fashion-mnist`` (60,000 training images, split into 5
class-incremental tasks, MLP 784-400-400, Adam, 1 epoch, global batch ``--batch-size``), each
configuration in a fresh process, interleaved, ``--repeats`` times; samples/s = the training
samples of the run / rank 0's training seconds (the time the whole group takes, since every step
waits for the all-reduce). "1 proc x 2 threads" is the other way to use the same two cores.
Ratios are medians of per-repeat ratios (timings on a shared machine are noisy).

Communication: two gloo ranks all-reduce a float32 buffer of the model's size (what the Learner
sends per step) and of one value (the latency), ``--reductions`` times; medians.

    python benchmarks/distributed_scaling.py --repeats 3
    python benchmarks/distributed_scaling.py --repeats 1 --strategies naive   # a quick look

The projection's model: a step on N ranks takes compute(global batch / N) + a ring all-reduce
of the gradients, 2(N-1) hops of latency α plus 2(N-1)/N of the message over bandwidth β.
``--project`` skips the measurements and projects with given figures instead (another machine's
step time, another link), e.g. for GPUs whose figures were measured elsewhere:

    python benchmarks/distributed_scaling.py --project --step-ms 0.5 --latency-us 10 \
        --bandwidth-gbs 100 --parameters 134515008
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

MLP_PARAMETERS = 784 * 400 + 400 + 400 * 400 + 400 + 400 * 10 + 10


def run_once(strategy: str, nproc: int, threads: int, batch_size: int, folder: str) -> float:
    """Training samples/s of one ``forgetless run`` (a fresh process group)."""
    out = os.path.join(folder, f"{strategy}-{nproc}-{threads}.json")
    command = [sys.executable, "-m", "forgetless.cli", "run", "--source", "fashion-mnist",
               "--strategy", strategy, "--epochs", "1", "--batch-size", str(batch_size),
               "--quiet", "--no-store", "-o", out, "--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    record = json.loads(open(out).read())
    samples = sum(record["costs"]["steps"]) * batch_size
    return samples / record["costs"]["train_seconds_total"]


def _reduce_rank(rank: int, rendezvous: str, sizes: list[int], reductions: int, out: str):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=2)
    times = {}
    for size in sizes:
        buffer = torch.randn(size)
        for _ in range(5):
            dist.all_reduce(buffer)
        samples = []
        for _ in range(reductions):
            start = time.perf_counter()
            dist.all_reduce(buffer)
            samples.append(time.perf_counter() - start)
        times[size] = statistics.median(samples)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(times, f)
    dist.destroy_process_group()


def all_reduce_seconds(sizes: list[int], reductions: int) -> dict[int, float]:
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "times.json")
        mp.spawn(_reduce_rank, args=(os.path.join(folder, "rv"), sizes, reductions, out),
                 nprocs=2, join=True)
        return {int(k): v for k, v in json.loads(open(out).read()).items()}


def ring_all_reduce(n: int, message_bytes: float, latency: float, bandwidth: float) -> float:
    """Seconds of a ring all-reduce over ``n`` ranks (Patarasuk & Yuan 2009): 2(n-1) steps,
    each a latency plus 1/n of the message over the link."""
    return 2 * (n - 1) * (latency + message_bytes / n / bandwidth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategies", default="naive,er,ewc")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--reductions", type=int, default=200)
    parser.add_argument("--project", action="store_true",
                        help="only project, from --step-ms, --latency-us, --bandwidth-gbs")
    parser.add_argument("--step-ms", type=float, help="one step at --batch-size on one rank")
    parser.add_argument("--latency-us", type=float, help="α, per hop of the ring")
    parser.add_argument("--bandwidth-gbs", type=float, help="β, GB/s per link")
    parser.add_argument("--parameters", type=int, default=MLP_PARAMETERS,
                        help="gradient values all-reduced per step (float32)")
    args = parser.parse_args()
    if args.project:
        if None in (args.step_ms, args.latency_us, args.bandwidth_gbs):
            parser.error("--project needs --step-ms, --latency-us and --bandwidth-gbs")
        project(args.batch_size, args.step_ms / 1e3 / args.batch_size, 4 * args.parameters,
                args.latency_us / 1e6, args.bandwidth_gbs * 1e9)
        return

    configs = [(1, 1), (1, 2), (2, 1)]  # (processes, threads each)
    results: dict[tuple, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for strategy in args.strategies.split(","):
                order = configs[repeat % 3:] + configs[:repeat % 3]  # rotate who goes first
                for nproc, threads in order:
                    rate = run_once(strategy, nproc, threads, args.batch_size, folder)
                    results.setdefault((strategy, nproc, threads), []).append(rate)
    print(f"## training samples/s, full Fashion-MNIST, global batch {args.batch_size} "
          f"(medians of {args.repeats})\n")
    print("| strategy | 1 proc x 1 thread | 1 proc x 2 threads | 2 procs x 1 thread | "
          "2 procs / 1 proc x 1 thread | 2 procs / 1 proc x 2 threads |")
    print("|---|---|---|---|---|---|")
    for strategy in args.strategies.split(","):
        one, two_threads, two = (results[(strategy, n, t)] for n, t in configs)
        print(f"| {strategy} | {statistics.median(one):,.0f} | "
              f"{statistics.median(two_threads):,.0f} | {statistics.median(two):,.0f} | "
              f"{statistics.median(b / a for a, b in zip(one, two, strict=True)):.2f} | "
              f"{statistics.median(b / a for a, b in zip(two_threads, two, strict=True)):.2f} |")

    sizes = [1, MLP_PARAMETERS]
    seconds = all_reduce_seconds(sizes, args.reductions)
    message = 4 * MLP_PARAMETERS
    latency = seconds[1] / 2  # a 2-rank ring: 2 steps of latency for a tiny message
    bandwidth = message / 2 / max(seconds[MLP_PARAMETERS] - seconds[1], 1e-9)
    one_rate = statistics.median(results[(args.strategies.split(",")[0], 1, 1)])
    compute_per_sample = 1 / one_rate
    print(f"\n## gradient all-reduce, 2 gloo ranks on this machine (medians of "
          f"{args.reductions})\n")
    print(f"- one value: {1e6 * seconds[1]:.0f} µs; the MLP's gradients "
          f"({message / 1e6:.2f} MB): {1e3 * seconds[MLP_PARAMETERS]:.2f} ms")
    print(f"- fitted ring model: latency α = {1e6 * latency:.0f} µs per step, bandwidth "
          f"β = {bandwidth / 1e9:.2f} GB/s")
    print(f"- one training step at batch {args.batch_size} on 1 thread: "
          f"{1e3 * compute_per_sample * args.batch_size:.2f} ms "
          f"({args.strategies.split(',')[0]})")
    project(args.batch_size, compute_per_sample, message, latency, bandwidth)


def project(batch_size: int, compute_per_sample: float, message: float, latency: float,
            bandwidth: float) -> None:
    """The model's samples/s at 1, 2, 8 and 64 ranks, at the global batch (strong scaling)
    and at the batch per rank (weak scaling); efficiency against N single ranks."""
    one_rate = 1 / compute_per_sample
    print(f"\n## projection: step = compute(batch / N) + ring all-reduce(N); α = "
          f"{1e6 * latency:.0f} µs, β = {bandwidth / 1e9:.2f} GB/s, {message / 1e6:.2f} MB of "
          f"gradients, {1e3 * compute_per_sample * batch_size:.2f} ms per step of "
          f"{batch_size} on one rank\n")
    print("| ranks N | global batch | all-reduce (ms) | step (ms) | samples/s | efficiency |")
    print("|---|---|---|---|---|---|")
    for n in (1, 2, 8, 64):
        for batch in sorted({batch_size, batch_size * n}):
            comm = ring_all_reduce(n, message, latency, bandwidth) if n > 1 else 0.0
            step = compute_per_sample * batch / n + comm
            rate = batch / step
            print(f"| {n} | {batch} | {1e3 * comm:.2f} | {1e3 * step:.2f} | {rate:,.0f} | "
                  f"{rate / (n * one_rate):.0%} |")


if __name__ == "__main__":
    main()
