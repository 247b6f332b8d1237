"""Transformations of a whole stream that experiments need: the stream a tuning run sees
(its first tasks only, and/or a validation split carved out of each task's training data, so
hyper-parameters are chosen without looking at the test sets)."""

from __future__ import annotations

import torch

from forgetless.data.stream import Stream, Task
from forgetless.errors import ConfigurationError, DataError


def tuning_stream(stream, options: dict, seed: int):
    """The stream a tuning run sees (``first_tasks`` and/or ``validation_fraction``)."""
    first = options.get("first_tasks")
    if first is not None:
        if not isinstance(first, int) or not 1 <= first <= len(stream):
            raise ConfigurationError(f"first_tasks must be between 1 and {len(stream)}, got "
                                     f"{first!r}.")
        stream = Stream(stream.tasks[:first], stream.scenario, stream.num_outputs,
                        name=stream.name, options=stream.options)
    fraction = options.get("validation_fraction")
    if fraction is None:
        return stream
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigurationError(f"validation_fraction must be between 0 and 1 (e.g. 0.2), got "
                                 f"{fraction!r}.")
    tasks = []
    for task in stream.tasks:
        n = task.train_x.shape[0]
        held = round(fraction * n)
        if held < 1 or held >= n:
            raise DataError(f"task {task.task_id} has {n} training samples; a validation "
                            f"fraction of {fraction} leaves none for training or validation.")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + task.task_id))
        val, train = order[:held], order[held:]
        tasks.append(Task(task.task_id, task.train_x[train], task.train_y[train],
                          task.train_x[val], task.train_y[val], task.classes,
                          f"{task.description} (validation)"))
    return Stream(tasks, stream.scenario, stream.num_outputs, name=stream.name,
                  options=stream.options)
