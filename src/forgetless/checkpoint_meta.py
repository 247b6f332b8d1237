"""What a learner checkpoint's metadata may say, checked before anything is built from it.

The metadata is JSON stored beside the tensors; a damaged or hand-edited file could ask for any
setting or model size. ``check_learner_meta`` accepts only the keys and types that
``forgetless.checkpoint.learner_meta`` writes, and bounds the head and the tasks by the tensors
actually saved, so a bad file is a ``CheckpointError`` that names the field, never a raw
``TypeError`` from a constructor. (The model itself is bounded by the saved weights in
``forgetless.checkpoint``: it is built on the meta device and compared before it is allocated.)
"""

from __future__ import annotations

import torch

from forgetless.errors import CheckpointError

_INT, _NUMBER = "a whole number", "a number"
#: Learner settings -> (what the value must be, whether None is allowed).
LEARNER_SETTINGS = {
    "epochs": (_INT, False), "iterations": (_INT, True), "batch_size": (_INT, False),
    "lr": (_NUMBER, False), "optimizer_name": ("a name", False), "momentum": (_NUMBER, False),
    "weight_decay": (_NUMBER, False), "reset_optimizer": ("true or false", False),
    "seed": (_INT, False), "eval_batch_size": (_INT, False),
}
_CHECKS = {
    _INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
    _NUMBER: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "a name": lambda v: isinstance(v, str) and v != "",
    "true or false": lambda v: isinstance(v, bool),
    "a table": lambda v: isinstance(v, dict),
    "a list": lambda v: isinstance(v, list),
    "a positive whole number": lambda v: _CHECKS[_INT](v) and v > 0,
    "a list of positive whole numbers": lambda v: isinstance(v, list) and bool(v) and all(
        _CHECKS["a positive whole number"](x) for x in v),
    "a text": lambda v: isinstance(v, str),
}


class _Fields:
    """Checks one JSON table of the metadata; every complaint names the field's path."""

    def __init__(self, table, name: str, where: str) -> None:
        self.name, self.where = name, where
        if not isinstance(table, dict):
            self.fail(name, "must be a table")
        self.table = table

    def fail(self, field: str, problem: str):
        raise CheckpointError(f"'{self.where}' has damaged metadata: '{field}' {problem}; use "
                              "an earlier checkpoint or a good copy.")

    def only(self, known) -> None:
        unknown = sorted(set(self.table) - set(known))
        if unknown:
            self.fail(self.name, f"has unknown keys {', '.join(map(repr, unknown))} (known: "
                                 f"{', '.join(known)})")

    def get(self, key: str, kind: str, none: bool = False):
        if key not in self.table:
            self.fail(f"{self.name}.{key}", "is missing")
        value = self.table[key]
        if not ((none and value is None) or _CHECKS[kind](value)):
            self.fail(f"{self.name}.{key}", f"must be {kind}{' or null' if none else ''}, not "
                                            f"{value!r:.60}")
        return value


def check_learner_meta(meta: dict, state: dict, where: str) -> None:
    """Refuse metadata that ``Learner.load`` could not trust (see the module's docstring)."""
    top = _Fields(meta, "metadata", where)
    settings = _Fields(top.get("learner", "a table"), "learner", where)
    settings.only(LEARNER_SETTINGS)
    for key, (kind, none) in LEARNER_SETTINGS.items():
        settings.get(key, kind, none)
    strategy = _Fields(top.get("strategy", "a table"), "strategy", where)
    strategy.get("name", "a name")
    for index, part in enumerate(strategy.get("parts", "a list")):
        part = _Fields(part, f"strategy.parts[{index}]", where)
        part.get("name", "a name")
        part.get("hyperparameters", "a table", none=True)
    spec = top.get("model", "a table", none=True)
    if spec is not None:
        model = _Fields(spec, "model", where)
        model.only(("name", "input_shape", "num_outputs", "options"))
        model.get("name", "a name")
        model.get("input_shape", "a list of positive whole numbers")
        model.get("num_outputs", "a positive whole number")
        model.get("options", "a table")
    _check_tasks(top, state, where)


def _check_tasks(top: _Fields, state: dict, where: str) -> None:
    """Scenario, head size and known tasks, bounded by the saved output mask."""
    scenario = top.get("scenario", "a name", none=True)
    mask = state.get("output_mask") if isinstance(state, dict) else None
    if scenario is None:
        return
    if scenario not in ("task", "domain", "class"):
        top.fail("scenario", f"must be task, domain or class, not {scenario!r:.40}")
    units = mask.get("task_units") if isinstance(mask, dict) else None
    if not isinstance(units, torch.Tensor) or units.ndim != 2:
        raise CheckpointError(f"'{where}' names a scenario but holds no output mask; it is "
                              "damaged: use an earlier checkpoint or a good copy.")
    saved_tasks, saved_outputs = units.shape
    outputs = top.get("num_outputs", "a positive whole number")
    if outputs != saved_outputs:
        top.fail("num_outputs", f"is {outputs}, but the saved output mask has {saved_outputs} "
                                "units")
    top.get("input_shape", "a list of positive whole numbers")
    tasks = top.get("tasks", "a list")
    if len(tasks) != saved_tasks:
        top.fail("tasks", f"lists {len(tasks)} tasks, but the saved output mask has "
                          f"{saved_tasks}")
    for index, info in enumerate(tasks):
        task = _Fields(info, f"tasks[{index}]", where)
        if task.get("task_id", _INT) != index:
            task.fail(f"tasks[{index}].task_id", f"must be {index}")
        classes = task.get("classes", "a list")
        if not all(_CHECKS[_INT](c) and 0 <= c < saved_outputs for c in classes):
            task.fail(f"tasks[{index}].classes", f"must be output units 0..{saved_outputs - 1}")
        task.get("description", "a text")
