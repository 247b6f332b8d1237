"""What moves task-incremental naive fine-tuning on split MNIST (issue 12, "The task-incremental
baseline"): the training mask, and which layers a non-default initialisation reaches.

``MASK`` is the task-incremental training mask: ``task`` (each sample's own task's units, the
shipped one; the same computation as one head per task), ``seen`` (every unit of the tasks
seen so far, class-incremental style) or ``whole`` (the whole head, as Mammoth's ``sgd``
trains). The test mask stays the task's units. ``PART`` is where ``SCHEME`` (an MLP
initialisation, ``forgetless.models.networks.INITIALISATIONS``) is applied: ``all`` (what
``--init SCHEME`` does), ``trunk`` (hidden layers only) or ``head`` (output layer only); the
other layers keep PyTorch's default. Every other argument goes to ``forgetless`` unchanged:

    PYTHONPATH=src python benchmarks/issue12_task_baseline.py MASK PART SCHEME run \\
        --benchmark split --scenario task --strategy naive --epochs 20 --seed S --quiet --no-store

benchmarks/issue12.md has the table this produced.
"""

from __future__ import annotations

import sys

from torch import nn

from forgetless.cli import main
from forgetless.data.stream import Scenario
from forgetless.models import heads, networks

MASKS, PARTS = ("task", "seen", "whole"), ("all", "trunk", "head")


def patch_training_mask(mask: str) -> None:
    shipped = heads.OutputMask.for_training

    def for_training(self, task_ids):
        if self.scenario is Scenario.TASK and mask != "task":
            return self.seen_units if mask == "seen" else None
        return shipped(self, task_ids)

    heads.OutputMask.for_training = for_training


def patch_initialisation(part: str, scheme: str) -> None:
    """Build the MLP with PyTorch's default, then re-initialise ``part`` (the same draws as
    ``init=SCHEME`` for ``all``: the seeded generator continues from the default's)."""
    shipped = networks.MLP.__init__

    def __init__(self, *args, init="pytorch", **options):
        shipped(self, *args, **options)
        for layer in self.modules():
            chosen = (part == "all" or (part == "head") == (layer is self.head))
            if isinstance(layer, nn.Linear) and chosen:
                networks.initialise_linear(layer, scheme)

    networks.MLP.__init__ = __init__


if __name__ == "__main__":
    mask, part, scheme, *cli = sys.argv[1:]
    if mask not in MASKS or part not in PARTS or scheme not in networks.INITIALISATIONS:
        sys.exit(f"usage: MASK ({'|'.join(MASKS)}) PART ({'|'.join(PARTS)}) SCHEME "
                 f"({'|'.join(networks.INITIALISATIONS)}) then forgetless arguments")
    patch_training_mask(mask)
    patch_initialisation(part, scheme)
    sys.exit(main(cli))
