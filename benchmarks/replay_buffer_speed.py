"""Replay buffer insertion time per batch after 5 tasks and after 50 tasks (2 new classes per
task, 400 samples per class offered in batches of 128, capacity 500). The ratio must stay flat
(<= 1.2): adding costs O(batch) whatever the number of tasks seen.

    PYTHONPATH=src python benchmarks/replay_buffer_speed.py
"""

from __future__ import annotations

import time

import torch

from forgetless.strategies.replay.buffer import ReplayBuffer

torch.set_num_threads(1)


def seconds_per_add(policy: str, tasks: int, repeats: int = 7, adds: int = 50) -> float:
    generator = torch.Generator().manual_seed(0)
    buffer = ReplayBuffer(500, policy)
    for task in range(tasks):
        y = torch.arange(2 * task, 2 * task + 2).repeat(400)
        for start in range(0, len(y), 128):
            part = y[start:start + 128]
            buffer.add(torch.rand(len(part), 1, 28, 28), part, torch.full_like(part, task),
                       generator=generator)
    x, y = torch.rand(128, 1, 28, 28), torch.full((128,), 2 * tasks)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(adds):
            buffer.add(x, y, y, generator=generator)
        best = min(best, (time.perf_counter() - start) / adds)
    return best


def main() -> None:
    print("| policy | ms per add after 5 tasks | after 50 tasks | ratio 50/5 |")
    print("|---|---|---|---|")
    for policy in ("reservoir", "class_balanced"):
        five, fifty = seconds_per_add(policy, 5), seconds_per_add(policy, 50)
        print(f"| {policy} | {five * 1e3:.3f} | {fifty * 1e3:.3f} | {fifty / five:.2f} |")


if __name__ == "__main__":
    main()
