"""Loop overhead: forgetless's Learner against a plain hand-written PyTorch loop.

Same MLP (784-400-400), same data (embedded MNIST, one task), same batch size and number of
steps, same batch order; the two are timed alternately in one process and the median of the
per-pair ratios is reported (target: forgetless / plain <= 1.05).

    python benchmarks/loop_overhead.py --repeats 15 --steps 300
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from forgetless.data.benchmarks import build_stream
from forgetless.data.stream import Stream
from forgetless.learner import Learner
from forgetless.models import build_model


def plain_loop(model, x, y, steps, batch_size, seed):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    n, position, order = x.shape[0], x.shape[0], None
    model.train()
    for _ in range(steps):
        if position >= n:
            order, position = torch.randperm(n, generator=generator), 0
        index = order[position:position + batch_size]
        position += batch_size
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--scenario", default="domain")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    full = build_stream("permuted", args.scenario, tasks=1)
    stream = Stream(full.tasks, args.scenario, full.num_outputs)
    task = stream[0]

    def fresh_model():
        torch.manual_seed(0)
        return build_model("mlp", stream.input_shape, stream.num_outputs)

    def time_forgetless():
        learner = Learner(fresh_model(), iterations=args.steps, batch_size=args.batch_size,
                          progress=False)
        learner.bind(stream)
        start = time.perf_counter()
        learner.learn(task)
        return time.perf_counter() - start

    def time_plain():
        model = fresh_model()
        start = time.perf_counter()
        plain_loop(model, task.train_x, task.train_y, args.steps, args.batch_size, 0)
        return time.perf_counter() - start

    time_forgetless(), time_plain()  # warm-up
    ratios, ours, plains = [], [], []
    for i in range(args.repeats):
        if i % 2:
            p, f = time_plain(), time_forgetless()
        else:
            f, p = time_forgetless(), time_plain()
        ours.append(f)
        plains.append(p)
        ratios.append(f / p)
    print(f"scenario {args.scenario}, {args.steps} steps of batch {args.batch_size}, "
          f"{args.threads} thread(s), {args.repeats} alternating pairs")
    print(f"plain PyTorch loop  median {statistics.median(plains):.3f} s")
    print(f"forgetless Learner  median {statistics.median(ours):.3f} s")
    print(f"median ratio forgetless / plain = {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
