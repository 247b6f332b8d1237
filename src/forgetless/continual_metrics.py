"""Metrics of continual evaluation: pure functions of the accuracy-over-steps record.

End-of-task accuracy matrices hide what happens *during* a task: De Lange, van de Ven &
Tuytelaars (ICLR 2023, "Continual evaluation for lifelong learning: identifying the stability
gap") evaluate every few steps and find that most methods lose much of an old task's accuracy
right after a new task starts, then recover. Their worst-case metrics expose that dip:

- min-ACC (``min_accuracy``): per old task, the lowest accuracy it falls to once it has been
  learned, averaged over tasks 0..T-2;
- WC-ACC (``worst_case_accuracy``): the last task's final accuracy weighted 1/T, min-ACC the
  rest -- a lower bound on what the learner delivers at any step;
- the task-switch dips (``task_switch_dips``): how deep each old task falls after a switch, how
  many steps it takes to reach the bottom, and how many to regain half of the drop.

The record is the one ``FitResult.continual`` holds: ``steps`` (strictly increasing global step
counts), ``accuracy`` (one row per step, one entry per task, None before a task starts),
``task_starts`` and ``task_ends`` (one global step per task). Conventions, named because they
decide the numbers:

- min-ACC takes, for task k, the evaluations *strictly after* ``task_ends[k]``: the evaluation
  at the end of task k is what was learned, not yet what was forgotten.
- A dip of task k at switch t compares the last evaluation *at or before* ``task_starts[t]``
  with the evaluations in ``(task_starts[t], task_ends[t]]``; its minimum is the earliest
  evaluation reaching the lowest value, and it recovers at the first evaluation after that
  minimum, still within task t, scoring at least ``minimum + depth / 2`` (None if none does).
- With one task there is no old task to forget: min-ACC and WC-ACC are None.

A malformed record (lengths that disagree, steps that do not increase, an old task without an
accuracy where one is needed) raises ``DataError`` (a ``ValueError``) saying what is wrong.
"""

from __future__ import annotations

from forgetless.errors import DataError


def _check(record: dict) -> int:
    """The number of tasks of a well-formed record; ``DataError`` otherwise."""
    missing = [k for k in ("steps", "accuracy", "task_starts", "task_ends") if k not in record]
    if missing:
        raise DataError(f"the continual-evaluation record lacks {', '.join(missing)}; give the "
                        "record a fit with continual evaluation wrote (FitResult.continual).")
    steps, accuracy = record["steps"], record["accuracy"]
    tasks = len(record["task_starts"])
    if tasks == 0 or not steps:
        raise DataError("the continual-evaluation record is empty (no task or no evaluation); "
                        "run with continual evaluation on.")
    if len(record["task_ends"]) != tasks:
        raise DataError(f"the record has {tasks} task starts but {len(record['task_ends'])} "
                        "task ends; it needs one of each per task.")
    if len(accuracy) != len(steps):
        raise DataError(f"the record has {len(steps)} steps but {len(accuracy)} accuracy rows; "
                        "it needs one row per evaluation step.")
    bad = [i for i, row in enumerate(accuracy) if len(row) != tasks]
    if bad:
        raise DataError(f"accuracy row {bad[0]} has {len(accuracy[bad[0]])} entries, not one per "
                        f"task ({tasks}).")
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise DataError(f"the record's steps must strictly increase, got {list(steps)}.")
    return tasks


def _accuracy(record: dict, evaluation: int, task: int) -> float:
    value = record["accuracy"][evaluation][task]
    if value is None:
        raise DataError(f"the record has no accuracy on task {task} at step "
                        f"{record['steps'][evaluation]}, after that task started; every started "
                        "task must be evaluated.")
    return float(value)


def _between(record: dict, after: float, until: float = float("inf")) -> list[int]:
    """Indices of the evaluations at steps in (after, until]."""
    return [i for i, s in enumerate(record["steps"]) if after < s <= until]


def min_accuracy(record: dict) -> float | None:
    """min-ACC: mean over tasks k = 0..T-2 of the lowest accuracy on k over the evaluations
    strictly after ``task_ends[k]``; None with one task."""
    tasks = _check(record)
    if tasks < 2:
        return None
    lowest = []
    for k in range(tasks - 1):
        later = _between(record, record["task_ends"][k])
        if not later:
            raise DataError(f"the record has no evaluation after task {k} ended (step "
                            f"{record['task_ends'][k]}); evaluate at every task end.")
        lowest.append(min(_accuracy(record, i, k) for i in later))
    return sum(lowest) / len(lowest)


def worst_case_accuracy(record: dict) -> float | None:
    """WC-ACC at the end of the stream: (1/T) * the last task's final accuracy +
    (1 - 1/T) * min-ACC; None with one task."""
    tasks = _check(record)
    min_acc = min_accuracy(record)
    if min_acc is None:
        return None
    final = _accuracy(record, len(record["steps"]) - 1, tasks - 1)
    return final / tasks + (1 - 1 / tasks) * min_acc


def _dip(record: dict, switch: int, task: int) -> dict:
    start, end = record["task_starts"][switch], record["task_ends"][switch]
    before = [i for i, s in enumerate(record["steps"]) if s <= start]
    during = _between(record, start, end)
    if not before or not during:
        raise DataError(f"the record needs an evaluation at or before task {switch}'s start "
                        f"(step {start}) and one in its training (up to step {end}); evaluate "
                        "at step 0 and at every task end.")
    a = _accuracy(record, before[-1], task)
    values = [_accuracy(record, i, task) for i in during]
    m = min(values)
    lowest = values.index(m)  # the earliest evaluation at the minimum
    depth = max(0.0, a - m)
    recovered = next((during[j] for j in range(lowest + 1, len(during))
                      if values[j] >= m + depth / 2), None)
    steps = record["steps"]
    return {"switch": switch, "task": task, "before": a, "minimum": m, "depth": depth,
            "steps_to_minimum": steps[during[lowest]] - start,
            "recovery_steps": None if recovered is None else steps[recovered] - start}


def task_switch_dips(record: dict) -> list[dict]:
    """For each switch t >= 1 and each earlier task k < t, the dip of k during task t:
    ``{"switch", "task", "before", "minimum", "depth", "steps_to_minimum",
    "recovery_steps"}`` (see the module docstring for which evaluations count)."""
    tasks = _check(record)
    return [_dip(record, t, k) for t in range(1, tasks) for k in range(t)]


def summarize_continual(record: dict) -> dict:
    """Every metric at once, as the runner stores it in ``record["metrics"]``: ``min_acc``,
    ``wc_acc``, ``mean_dip_depth`` (over the dips of the task just left, k = t - 1; None with
    one task) and ``dips``."""
    dips = task_switch_dips(record)
    left = [d["depth"] for d in dips if d["task"] == d["switch"] - 1]
    return {"min_acc": min_accuracy(record), "wc_acc": worst_case_accuracy(record),
            "mean_dip_depth": sum(left) / len(left) if left else None, "dips": dips}
