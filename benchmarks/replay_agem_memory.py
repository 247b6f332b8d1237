"""Why A-GEM needs ``memory_strength`` under Adam: the memory's own loss and accuracy after each
task, with the paper's projection (strength 0) and with the default, beside the test accuracy of
every task seen so far (whole head, as the class-incremental evaluation uses it).

Issue protocol: embedded split MNIST, class-incremental, 5 tasks, MLP 784-400-400, Adam lr 1e-3,
batch 128, optimiser reset per task, 20 epochs per task, buffer_size=500, seed 0.

    PYTHONPATH=src python benchmarks/replay_agem_memory.py [--strengths 0 0.5]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from forgetless import RunConfig
from forgetless.experiments.runner import prepare


def trace(strength: float, seed: int) -> None:
    experiment = prepare(RunConfig(benchmark="split", scenario="class", tasks=5, strategy="agem",
                                   strategy_params={"buffer_size": 500,
                                                    "memory_strength": strength},
                                   epochs=20, seed=seed), progress=False)
    learner, stream = experiment.learner, experiment.stream
    agem = learner.strategy.parts[0]
    print(f"\nmemory_strength={strength}, seed {seed}\n")
    print("| after task | memory loss | memory accuracy | test accuracy of tasks seen |")
    print("|--:|--:|--:|---|")
    for task in stream.tasks:
        learner.learn(task)
        with torch.no_grad():
            memory = agem.buffer.tensors()
            logits = learner.forward(memory["x"], memory["task_ids"])  # whole head
            tests = [float((learner.predict(t.test_x) == t.test_y).float().mean())
                     for t in stream.tasks[: task.task_id + 1]]
        print(f"| {task.task_id + 1} | {F.cross_entropy(logits, memory['y']):.3f} | "
              f"{(logits.argmax(1) == memory['y']).float().mean():.3f} | "
              f"{' '.join(f'{a:.2f}' for a in tests)} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for strength in args.strengths:
        trace(strength, args.seed)


if __name__ == "__main__":
    main()
