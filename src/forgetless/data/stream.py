"""A Stream is what a continual learner sees: an ordered list of Tasks and the scenario.

Labels in a Task are already in the output space of the scenario's head:
- task-incremental: every task owns a disjoint range of output units; the task id is known at
  test time, so predictions are restricted to the task's own units;
- domain-incremental: every task uses the same units (0..k-1); no task id at test time;
- class-incremental: every task owns new units of one shared head; no task id at test time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import torch

from forgetless.data.validation import (
    check_inputs,
    check_labels,
    check_language_targets,
    check_token_ids,
    input_tensor,
    label_tensor,
)
from forgetless.errors import ConfigurationError, DataError, unknown_name


class Scenario(str, Enum):
    TASK = "task"
    DOMAIN = "domain"
    CLASS = "class"

    @classmethod
    def parse(cls, value: str | Scenario) -> Scenario:
        if isinstance(value, Scenario):
            return value
        aliases = {"task-il": "task", "domain-il": "domain", "class-il": "class",
                   "task-incremental": "task", "domain-incremental": "domain",
                   "class-incremental": "class"}
        value = aliases.get(str(value).lower(), str(value).lower())
        try:
            return cls(value)
        except ValueError:
            raise unknown_name("scenario", value, [s.value for s in cls]) from None

    @property
    def task_id_at_test(self) -> bool:
        return self is Scenario.TASK

    def __str__(self) -> str:
        return self.value


@dataclass
class Task:
    """One task: its data, the output units it uses, and its id (its position in the stream)."""

    task_id: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[int, ...]
    #: Human-readable description, e.g. "digits 0,1" or "permutation 3".
    description: str = ""

    def validate(self, num_outputs: int | None = None,
                 objective: str = "classification") -> None:
        """Raise a DataError naming the fix for any problem in this task's data. Inputs are
        features (floats) or token ids (integers, ``forgetless.data.text``); a language-
        modelling task has aligned next-token targets instead of labels, and may have no
        training data (a probe of what the model knew before: the prior skills)."""
        what = f"task {self.task_id}"
        language = objective == "language_modelling"
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if isinstance(x, torch.Tensor) and not torch.is_floating_point(x) and \
                    x.dtype != torch.bool:
                check_token_ids(x, f"{what} {split} inputs", allow_empty=language and
                                split == "train")
            else:
                check_inputs(x, f"{what} {split} inputs")
            if language:
                check_language_targets(y, x, f"{what} {split} targets")
            else:
                check_labels(y, x.shape[0], num_outputs, f"{what} {split} labels")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise DataError(
                f"{what}: train inputs have per-sample shape {tuple(self.train_x.shape[1:])} but "
                f"test inputs {tuple(self.test_x.shape[1:])}; give both the same shape."
            )
        if language:
            return
        trained = set(torch.unique(self.train_y).tolist())
        outside = trained - set(self.classes)
        if outside:
            raise DataError(
                f"{what}: training labels {sorted(outside)} are not among the task's classes "
                f"{list(self.classes)}; list every label the task uses in `classes`."
            )
        tested = set(torch.unique(self.test_y).tolist())
        if tested - set(self.classes):
            raise DataError(
                f"{what}: test labels {sorted(tested - set(self.classes))} are not among the "
                f"task's classes {list(self.classes)} (those its training labels use); test a "
                "task only on classes it trains on: drop those test samples or add training "
                "samples of them."
            )
        if tested - trained:
            raise DataError(
                f"{what}: test classes {sorted(tested - trained)} have no training samples in "
                "this task, so its accuracy on them measures nothing learned; add training "
                "samples of them or drop them from its test set."
            )

    @property
    def task_ids(self) -> torch.Tensor:
        """The task id of every training sample (replay mixes samples of several tasks)."""
        return torch.full((self.train_x.shape[0],), self.task_id, dtype=torch.long)


@dataclass
class Stream:
    """Ordered tasks plus the scenario and the size of the shared output layer."""

    tasks: list[Task]
    scenario: Scenario
    num_outputs: int
    name: str = "stream"
    #: Options the stream was built with (benchmark, source, seed...), for the run's config.
    options: dict = field(default_factory=dict)
    #: What is learnt: ``classification`` (labels) or ``language_modelling`` (next tokens);
    #: ``forgetless.objectives``.
    objective: str = "classification"
    #: A test-only set scored after every task besides the tasks (a language model's general
    #: text, for perplexity); not part of the score matrix.
    held_out: Task | None = None

    def __post_init__(self) -> None:
        self.scenario = Scenario.parse(self.scenario)
        if not self.tasks:
            raise ConfigurationError("a stream needs at least one task.")
        shapes = {tuple(t.train_x.shape[1:]) for t in self.tasks}
        if len(shapes) > 1:
            raise DataError(
                f"tasks have different input shapes {sorted(shapes)}; every task must give "
                "inputs of one shape."
            )
        for position, task in enumerate(self.tasks):
            if task.task_id != position:
                raise DataError(
                    f"task at position {position} has task_id {task.task_id}; task ids must "
                    "be 0, 1, 2... in stream order."
                )
            task.validate(self.num_outputs, self.objective)

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks)

    def __getitem__(self, index: int) -> Task:
        return self.tasks[index]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.tasks[0].train_x.shape[1:])

    @classmethod
    def from_tasks(cls, tasks, scenario, num_outputs: int | None = None, name: str = "custom"):
        """A stream from a user's list of (train_x, train_y, test_x, test_y) tuples or Tasks.

        The labels are taken as given, in the output space of the scenario's head."""
        built = []
        for position, item in enumerate(tasks):
            if isinstance(item, Task):
                built.append(item)
                continue
            try:
                train_x, train_y, test_x, test_y = item
            except (TypeError, ValueError):
                raise DataError(
                    f"task {position} must be a Task or a (train_x, train_y, test_x, test_y) "
                    "tuple of tensors."
                ) from None
            train_x = input_tensor(train_x, f"task {position} train inputs")
            test_x = input_tensor(test_x, f"task {position} test inputs")
            train_y = label_tensor(train_y, f"task {position} train labels")
            test_y = label_tensor(test_y, f"task {position} test labels")
            classes = tuple(sorted(set(train_y.tolist())))
            built.append(Task(position, train_x, train_y, test_x, test_y, classes,
                              description=f"task {position}"))
        if num_outputs is None:
            num_outputs = 1 + max((max(t.classes) for t in built if t.classes), default=0)
        return cls(built, scenario, num_outputs, name=name)
