"""Which output units A-GEM's two losses should cover in class-incremental runs (issue 12).

A-GEM compares the current batch's gradient with the gradient of a memory batch's loss. Each
loss can be masked to the classes seen so far (``seen``: this task's included), to the classes
seen before this task (``old``), to each memory sample's own task and earlier (``own``), or
cover the whole head (``none``). This script trains A-GEM on the issue-12 protocol with the
chosen pair and prints its ACC (docs/replay.md has the table it produced).

Protocol: embedded split MNIST, class-incremental, 5 tasks, MLP 784-400-400, Adam lr 1e-3 reset
per task, batch 128, 20 epochs per task, memory 400, reference batch 64, margin 0, gradient
projection.

    PYTHONPATH=src python benchmarks/issue12_agem_masks.py CURRENT REFERENCE [seed=S]

CURRENT is ``seen`` or ``none``; REFERENCE is ``seen``, ``old``, ``own`` or ``none``. The shipped
A-GEM is ``none none`` (``Strategy.trains_whole_head``).
"""

from __future__ import annotations

import sys

import torch.nn.functional as F

from forgetless import RunConfig
from forgetless.experiments.runner import run
from forgetless.learner import Learner
from forgetless.models.heads import apply_mask
from forgetless.strategies.replay.agem import AGEM

MASKS = {"current": ("seen", "none"), "reference": ("seen", "old", "own", "none")}


def mask_for(kind: str, learner: Learner, task_ids, state: dict):
    units = learner.output_mask
    if kind == "seen":
        return units.seen_units
    if kind == "old":
        return state["old_units"]
    if kind == "own":  # the units of every task up to each sample's own
        return units.task_units.cumsum(0).bool()[task_ids]
    return None


def patch(current: str, reference: str) -> None:
    """The Learner's loss takes its mask from ``current``, or from ``reference`` while A-GEM
    computes its memory gradient."""
    state = {"in_reference": False, "old_units": None}

    def loss(self, logits, y, task_ids):
        kind = reference if state["in_reference"] else current
        return F.cross_entropy(apply_mask(logits, mask_for(kind, self, task_ids, state)), y)

    original_before_step = AGEM.before_step

    def before_step(self):
        state["in_reference"] = True
        try:
            original_before_step(self)
        finally:
            state["in_reference"] = False

    def before_task(self, task):
        state["old_units"] = self.learner.output_mask.seen_units.clone()

    Learner.loss = loss
    AGEM.before_step = before_step
    AGEM.before_task = before_task


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in MASKS["current"] or argv[1] not in MASKS["reference"]:
        raise SystemExit(__doc__)
    options = dict(a.split("=", 1) for a in argv[2:])
    seed = int(options.get("seed", 0))
    patch(argv[0], argv[1])
    config = RunConfig(benchmark="split", scenario="class", strategy="agem", epochs=20,
                       seed=seed, strategy_params={"buffer_size": 400, "memory_batch_size": 64})
    result = run(config, progress=False)
    print(f"current {argv[0]}, reference {argv[1]}, seed {seed}: "
          f"ACC {result.metrics['acc']:.3f}, last row "
          f"{[round(a, 3) for a in result.accuracy_matrix[-1]]}")


if __name__ == "__main__":
    main(sys.argv[1:])
