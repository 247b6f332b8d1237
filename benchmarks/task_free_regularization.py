"""SI and Online EWC on a task-free stream: what they keep of task 0 against naive.

Protocol: the first two tasks of split digits (sklearn's 8x8 digits, embedded), MLP 64-100-10,
Adam lr 1e-3, batch 10, the optimiser built once. The learner is told nothing: ``task_free``
is set, ``before_task``/``after_task`` are never called, and ``run_steps`` trains ``--steps``
steps on task 0's training data and then ``--steps`` steps on task 1's (the two segments of
a stream with a sharp, unannounced boundary). Printed: accuracy on each task's test set at the
end, the mean over ``--seeds``, per strategy and setting.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/task_free_regularization.py
"""

from __future__ import annotations

import argparse
import statistics

import torch

from forgetless.data.benchmarks import build_stream
from forgetless.learner import Learner
from forgetless.models import build_model
from forgetless.strategies import TrainingData, build_strategy

CANDIDATES = [
    ("naive", {}),
    *[("si", {"c": c, "consolidate_every": k}) for c in (10.0, 300.0, 1000.0)
      for k in (10, 30, 50, 100)],
    *[("online-ewc", {"lam": lam, "consolidate_every": k, "fisher_alpha": a})
      for lam in (1e3, 1e4, 1e5) for k in (10, 30, 50, 100) for a in (0.01, 0.1)],
]


def task_free_fit(stream, spec: str, settings: dict, steps: int, seed: int,
                  hidden=(100,), batch_size: int = 10) -> Learner:
    """Train ``spec`` on each task of ``stream`` in turn for ``steps`` steps without telling
    it where tasks change (the boundary hooks are never called)."""
    torch.manual_seed(seed)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=hidden)
    learner = Learner(model, build_strategy(spec, settings), batch_size=batch_size, seed=seed,
                      progress=False)
    learner.bind(stream)
    learner.task_free = True
    learner.rebuild_optimizer()
    for task in stream.tasks:
        learner.run_steps(TrainingData(task.train_x, task.train_y, task.task_ids), steps)
    return learner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scenarios", nargs="+", default=["task", "domain"])
    args = parser.parse_args()
    for scenario in args.scenarios:
        full = build_stream("split", scenario, tasks=5, source="digits", seed=0)
        stream = type(full)(full.tasks[:2], scenario, full.num_outputs)
        print(f"\n{scenario}-incremental, {args.steps} steps per task, "
              f"seeds 0..{args.seeds - 1}: accuracy on task 0 | task 1 at the end")
        for spec, settings in CANDIDATES:
            rows = []
            for seed in range(args.seeds):
                learner = task_free_fit(stream, spec, settings, args.steps, seed)
                rows.append(learner.evaluate(stream.tasks))
            t0 = statistics.mean(r[0] for r in rows)
            t1 = statistics.mean(r[1] for r in rows)
            label = ", ".join(f"{k}={v:g}" for k, v in settings.items())
            print(f"  {spec:11s} {label:52s} {t0:.3f} | {t1:.3f}", flush=True)


if __name__ == "__main__":
    main()
