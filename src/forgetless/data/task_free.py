"""The order of a task-free stream: every task's training samples once, task after task, with
the transitions blurred over a window, and no boundary announced to the learner.

Each sample of task t gets a position ``t + u`` (``u`` uniform in [0, 1), the task's samples
spread evenly over its unit of "stream time") plus a jitter uniform in [-w/2, w/2], and the
stream presents the samples in the order of their positions. The density of task t along the
stream is then the unit box [t, t+1) smoothed by a box of width w: a trapezoid whose edges ramp
linearly over [t - w/2, t + w/2]. Around the boundary between t and t+1, the share of task t+1
rises linearly from 0 to 1 over a window of w tasks' worth of samples (w = 0.2: the last 10%
of one task and the first 10% of the next are mixed); w = 0 is a sharp boundary (each task's
samples in random order, tasks one after another). This is the gradual drift of "task-free"
continual learning (Aljundi, Kelchtermans & Tuytelaars 2019; the "blurry" streams of online
CL benchmarks differ: they mix a few samples of every class into every task).

The experimenter still knows where tasks change: ``TaskFreeOrder.task_ends`` says after how
many samples the stream's position passes each task's end (the middle of its transition), which
is where the accuracy matrix's rows are measured; the learner is not told.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from forgetless.errors import ConfigurationError


def check_blur(blur) -> float:
    """The transition window, as a fraction of a task: a number in [0, 1]."""
    if isinstance(blur, bool) or not isinstance(blur, (int, float)) or not 0 <= blur <= 1:
        raise ConfigurationError(
            f"the blur (transition window) must be a fraction of a task between 0 (sharp "
            f"boundaries) and 1, e.g. --blur 0.2; got {blur!r}.")
    return float(blur)


@dataclass(frozen=True)
class TaskFreeOrder:
    """Indices into the tasks' concatenated training data, in the order the stream presents
    them, and where each task ends in it (in samples)."""

    order: torch.Tensor  # (N,) long: positions into the concatenation of the tasks' samples
    positions: torch.Tensor  # (N,) float: each presented sample's stream position, ascending
    task_ends: tuple[int, ...]  # samples presented before the stream's position passes t + 1


def task_free_order(task_sizes: list[int], blur: float,
                    generator: torch.Generator) -> TaskFreeOrder:
    """The presentation order of a task-free stream of tasks with ``task_sizes`` samples,
    transitions blurred over ``blur`` of a task (see the module docstring)."""
    blur = check_blur(blur)
    positions = []
    for task, size in enumerate(task_sizes):
        spread = (torch.randperm(size, generator=generator).double() + 0.5) / max(size, 1)
        jitter = (torch.rand(size, generator=generator, dtype=torch.double) - 0.5) * blur
        positions.append(task + spread + jitter)
    position = torch.cat(positions) if positions else torch.zeros(0, dtype=torch.double)
    sorted_positions, order = torch.sort(position, stable=True)
    ends = tuple(int(torch.searchsorted(sorted_positions, torch.tensor(float(t + 1),
                                                                       dtype=torch.double)))
                 for t in range(len(task_sizes)))
    return TaskFreeOrder(order, sorted_positions, ends[:-1] + (len(order),) if ends else ())
