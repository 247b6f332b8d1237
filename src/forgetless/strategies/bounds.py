"""The reference points every comparison needs.

- ``naive``: plain fine-tuning, no hooks at all; it shows catastrophic forgetting.
- ``joint``: one model trained on every task's data at once (the upper bound). It trains when
  the first task arrives, on all tasks, and then keeps its weights; every row of its accuracy
  matrix is therefore the same.
- ``cumulative``: at task t, train on the union of tasks 1..t (stores all data seen).
"""

from __future__ import annotations

import torch

from forgetless.strategies import TrainingData, register
from forgetless.strategies.base import ANY_OBJECTIVE, Footprint, Strategy, tensor_bytes


@register("naive")
class Naive(Strategy):
    """Fine-tuning: the model trains on each task in turn with nothing to protect old tasks."""

    family = "baseline"
    objectives = ANY_OBJECTIVE


def _union(tasks) -> TrainingData:
    tasks = list(tasks)
    return TrainingData(torch.cat([t.train_x for t in tasks]),
                        torch.cat([t.train_y for t in tasks]),
                        torch.cat([t.task_ids for t in tasks]))


@register("joint")
class Joint(Strategy):
    """All tasks' data at once, trained when the first task arrives (an oracle: it sees the
    future, so it is a bound to compare against, not a continual learner)."""

    why_not_task_free = ("it trains on every task's data at once when the first task starts, "
                         "which a task-free stream does not announce; use naive on the same "
                         "stream for the lower bound and er(fill=stream) with a large "
                         "buffer_size for the rehearsal reference.")

    family = "baseline"
    objectives = ANY_OBJECTIVE
    stores_raw_data = True
    sees_future = True

    def training_data(self, task):
        if task.task_id == 0:
            return _union(self.learner.stream_tasks)
        return TrainingData(task.train_x[:0], task.train_y[:0], task.task_ids[:0])

    def footprint(self) -> Footprint:
        return Footprint(tensor_bytes([(t.train_x, t.train_y) for t in self.learner.stream_tasks]),
                         stores_raw_data=True)


@register("cumulative")
class Cumulative(Strategy):
    """At task t, trains on tasks 1..t together (with the per-task budget in epochs this costs
    t times naive's steps at task t)."""

    why_not_task_free = ("it trains each task on the union of the tasks so far, gathered when "
                         "the task starts, which a task-free stream does not announce; use "
                         "er(fill=stream) with a buffer_size as large as the stream, which "
                         "rehearses everything seen.")

    family = "baseline"
    objectives = ANY_OBJECTIVE
    stores_raw_data = True

    def training_data(self, task):
        return _union(self.learner.stream_tasks[: task.task_id + 1])

    def footprint(self) -> Footprint:
        seen = self.learner.stream_tasks[: len(self.learner.tasks_learned)]
        return Footprint(tensor_bytes([(t.train_x, t.train_y) for t in seen]),
                         stores_raw_data=True)
