"""Continual-learning metrics as pure functions of the accuracy matrix.

``R[i][j]`` is the test accuracy on task j after training on tasks 0..i (T x T); ``b[j]`` is the
accuracy of the untrained model on task j. Definitions follow Lopez-Paz & Ranzato 2017 (ACC, BWT,
FWT) and Chaudhry et al. 2018 (forgetting).

Two conventions, named because papers differ:

- forgetting takes each task's best accuracy over the rows *after it was learned* (rows
  j..T-2), not over every row before the last as Chaudhry et al.'s code does: accuracy on a task
  before training it is not knowledge that can be forgotten. In class-incremental runs, which
  answer over the classes learned so far, the rows before j score 0 on task j and the two
  conventions agree; they differ only where a task scores above 0 before it is learned (task-
  and domain-incremental transfer).
- FWT is undefined (``None``) where "accuracy before learning a task" means nothing: in
  class-incremental runs a task's classes are not among the answers before it is learned (its
  accuracy is 0 by construction), and a strategy that trains on every task at once (``joint``)
  has no "before".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _matrix(accuracy_matrix: Sequence[Sequence[float]]) -> np.ndarray:
    r = np.asarray(accuracy_matrix, dtype=float)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"the accuracy matrix must be square and non-empty, got shape {r.shape}")
    return r


def average_accuracy(accuracy_matrix) -> float:
    """ACC: mean accuracy over all tasks after the last one."""
    return float(_matrix(accuracy_matrix)[-1].mean())


def learning_accuracy(accuracy_matrix) -> float:
    """Mean accuracy on each task right after learning it (the diagonal)."""
    return float(np.diag(_matrix(accuracy_matrix)).mean())


def backward_transfer(accuracy_matrix) -> float:
    """BWT: mean over tasks 0..T-2 of (final accuracy - accuracy right after learning it).

    Negative means forgetting. Zero for a single task."""
    r = _matrix(accuracy_matrix)
    t = r.shape[0]
    if t == 1:
        return 0.0
    return float(np.mean(r[-1, :-1] - np.diag(r)[:-1]))


def forward_transfer(accuracy_matrix, untrained_accuracy: Sequence[float]) -> float:
    """FWT: mean over tasks 1..T-1 of (accuracy before learning it - untrained accuracy)."""
    r = _matrix(accuracy_matrix)
    b = np.asarray(untrained_accuracy, dtype=float)
    if b.shape != (r.shape[0],):
        raise ValueError(f"need one untrained accuracy per task ({r.shape[0]}), got {b.shape}")
    t = r.shape[0]
    if t == 1:
        return 0.0
    return float(np.mean([r[j - 1, j] - b[j] for j in range(1, t)]))


def average_forgetting(accuracy_matrix) -> float:
    """Mean over tasks 0..T-2 of (best accuracy from learning it until before the last task -
    final accuracy): rows j..T-2 for task j (see the module docstring)."""
    r = _matrix(accuracy_matrix)
    t = r.shape[0]
    if t == 1:
        return 0.0
    return float(np.mean([r[j:t - 1, j].max() - r[-1, j] for j in range(t - 1)]))


def forward_transfer_defined(scenario: str, sees_future: bool = False) -> bool:
    """Whether FWT means anything for a run: not in class-incremental runs, not for a strategy
    that trains on every task at once (see the module docstring)."""
    return scenario != "class" and not sees_future


def summarize(accuracy_matrix, untrained_accuracy,
              fwt_defined: bool = True) -> dict[str, float | None]:
    """Every metric at once, keyed by its short name; ``fwt`` is None unless ``fwt_defined``
    (``forward_transfer_defined``)."""
    return {
        "acc": average_accuracy(accuracy_matrix),
        "bwt": backward_transfer(accuracy_matrix),
        "fwt": forward_transfer(accuracy_matrix, untrained_accuracy) if fwt_defined else None,
        "forgetting": average_forgetting(accuracy_matrix),
        "learning_acc": learning_accuracy(accuracy_matrix),
    }
