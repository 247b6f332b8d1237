"""Continual-evaluation metrics (min-ACC, WC-ACC, task-switch dips) on hand-made records, the
answers worked out by hand in the comments."""

import pytest

from forgetless.continual_metrics import (
    min_accuracy,
    summarize_continual,
    task_switch_dips,
    worst_case_accuracy,
)
from forgetless.errors import DataError

# Three tasks of 15 steps; evaluated every 5 steps after step 10 (and at every task end).
#   step       0     10    15  |  20    25    30  |  35    40    45
#   task 0   0.10  0.80  0.90  | 0.40  0.60  0.75 | 0.55  0.70  0.62
#   task 1     -     -   0.10  | 0.60  0.80  0.85 | 0.80  0.30  0.50
#   task 2     -     -     -   |   -     -   0.05 | 0.40  0.70  0.90
# Task 1 starts at step 15 (where task 0 ends), task 2 at step 30.
RECORD = {
    "every": 5, "eval_samples": 100,
    "steps": [0, 10, 15, 20, 25, 30, 35, 40, 45],
    "accuracy": [[0.10, None, None], [0.80, None, None], [0.90, 0.10, None],
                 [0.40, 0.60, None], [0.60, 0.80, None], [0.75, 0.85, 0.05],
                 [0.55, 0.80, 0.40], [0.70, 0.30, 0.70], [0.62, 0.50, 0.90]],
    "task_starts": [0, 15, 30], "task_ends": [15, 30, 45],
    "seconds": 0.1, "train_seconds": 1.0,
}

# Two tasks; task 0's own last evaluation (step 10, its end) is its lowest, 0.3.
#   step      0    5   10  |  20
#   task 0   0.2  0.5  0.3 | 0.6
#   task 1    -    -   0.1 | 0.8
AT_THE_END = {"steps": [0, 5, 10, 20],
              "accuracy": [[0.2, None], [0.5, None], [0.3, 0.1], [0.6, 0.8]],
              "task_starts": [0, 10], "task_ends": [10, 20]}


def test_min_acc_is_the_mean_of_each_old_tasks_lowest_accuracy_after_its_end():
    # task 0 after step 15: 0.40 0.60 0.75 0.55 0.70 0.62 -> 0.40 (at step 20, the first
    # evaluation after its end: skipping it would give 0.55);
    # task 1 after step 30: 0.80 0.30 0.50 -> 0.30; the last task is not averaged.
    assert min_accuracy(RECORD) == pytest.approx((0.40 + 0.30) / 2)


def test_min_acc_leaves_out_the_evaluation_at_the_tasks_own_end():
    # Strictly after step 10: only step 20, 0.6 (counting step 10 itself would give 0.3).
    assert min_accuracy(AT_THE_END) == pytest.approx(0.6)
    # WC-ACC = 1/2 * 0.8 (task 1 at the end) + 1/2 * 0.6 = 0.7 (0.55 with step 10 counted).
    assert worst_case_accuracy(AT_THE_END) == pytest.approx(0.7)


def test_wc_acc_weights_the_last_task_by_one_over_t_and_min_acc_by_the_rest():
    # 1/3 * 0.90 (task 2 at step 45) + 2/3 * 0.35 = 0.30 + 0.2333...
    assert worst_case_accuracy(RECORD) == pytest.approx(0.90 / 3 + 2 / 3 * 0.35)


def test_the_dip_of_task_0_when_task_1_starts():
    dips = {(d["switch"], d["task"]): d for d in task_switch_dips(RECORD)}
    assert sorted(dips) == [(1, 0), (2, 0), (2, 1)]
    # Before: step 15 (at the switch itself; step 10's 0.80 would be "strictly before"), 0.90.
    # During task 1, steps 20..30: 0.40 0.60 0.75 -> minimum 0.40 at step 20, 5 steps in;
    # depth 0.50; half regained at >= 0.65: not 0.60 at 25, 0.75 at step 30 (task 1's end,
    # which belongs to it): 15 steps after the switch.
    assert dips[(1, 0)] == pytest.approx({
        "switch": 1, "task": 0, "before": 0.90, "minimum": 0.40, "depth": 0.50,
        "steps_to_minimum": 5, "recovery_steps": 15})
    # Task 0 again when task 2 starts: 0.75 at step 30, then 0.55 0.70 0.62 -> minimum 0.55
    # at 35 (5 steps), depth 0.20, >= 0.65 at step 40: 10 steps.
    assert dips[(2, 0)] == pytest.approx({
        "switch": 2, "task": 0, "before": 0.75, "minimum": 0.55, "depth": 0.20,
        "steps_to_minimum": 5, "recovery_steps": 10})


def test_a_dip_not_regained_within_the_task_has_no_recovery():
    # Task 1 when task 2 starts: 0.85 at step 30, then 0.80 0.30 0.50 -> minimum 0.30 at step
    # 40 (10 steps in), depth 0.55; half back would be 0.575, and 0.50 at step 45 is not.
    dip = next(d for d in task_switch_dips(RECORD) if (d["switch"], d["task"]) == (2, 1))
    assert dip["minimum"] == pytest.approx(0.30) and dip["depth"] == pytest.approx(0.55)
    assert dip["steps_to_minimum"] == 10 and dip["recovery_steps"] is None


def test_the_minimum_is_its_first_evaluation_and_exactly_half_back_is_recovered():
    # Values that binary floats hold exactly. Task 0: 1.0 at the switch (step 10), then 0.5 at
    # steps 12 and 14 -> the minimum 0.5, first reached 2 steps in; depth 0.5; half back is
    # exactly 0.75, reached at step 18: 8 steps (a strict ">" would wait for step 20).
    record = {"steps": [0, 10, 12, 14, 16, 18, 20],
              "accuracy": [[0.5, None], [1.0, 0.0], [0.5, 0.25], [0.5, 0.5], [0.625, 0.5],
                           [0.75, 0.75], [0.875, 0.75]],
              "task_starts": [0, 10], "task_ends": [10, 20]}
    (dip,) = task_switch_dips(record)
    assert (dip["minimum"], dip["depth"]) == (0.5, 0.5)
    assert dip["steps_to_minimum"] == 2 and dip["recovery_steps"] == 8


def test_a_task_that_does_not_fall_has_depth_zero():
    # AT_THE_END, task 0 at the switch (step 10): 0.3 before, 0.6 at step 20 -> depth 0 (not
    # -0.3); the minimum is the only evaluation in task 1, at its end, 10 steps in.
    (dip,) = task_switch_dips(AT_THE_END)
    assert dip["before"] == pytest.approx(0.3) and dip["minimum"] == pytest.approx(0.6)
    assert dip["depth"] == 0 and dip["steps_to_minimum"] == 10
    assert dip["recovery_steps"] is None  # nothing after the minimum within task 1


def test_the_summary_averages_the_dips_of_the_task_just_left():
    summary = summarize_continual(RECORD)
    assert summary["min_acc"] == pytest.approx(0.35)
    assert summary["wc_acc"] == pytest.approx(0.90 / 3 + 2 / 3 * 0.35)
    # Tasks just left: task 0 at switch 1 (0.50), task 1 at switch 2 (0.55); task 0's second
    # dip (0.20) is not one of them (all three would average 0.4167).
    assert summary["mean_dip_depth"] == pytest.approx((0.50 + 0.55) / 2)
    assert summary["dips"] == task_switch_dips(RECORD)


def test_one_task_has_no_old_task_to_forget():
    record = {"steps": [0, 5, 10], "accuracy": [[0.1], [0.5], [0.9]],
              "task_starts": [0], "task_ends": [10]}
    assert min_accuracy(record) is None and worst_case_accuracy(record) is None
    assert summarize_continual(record) == {"min_acc": None, "wc_acc": None,
                                           "mean_dip_depth": None, "dips": []}


@pytest.mark.parametrize("change, words", [
    ({"steps": [0, 5, 5, 20]}, "strictly increase"),
    ({"steps": [0, 10, 5, 20]}, "strictly increase"),
    ({"steps": [0, 5, 10]}, "one row per evaluation"),
    ({"task_ends": [10]}, "one of each per task"),
    ({"accuracy": [[0.2], [0.5, None], [0.3, 0.1], [0.6, 0.8]]}, "not one per task"),
    ({"accuracy": [[0.2, None], [0.5, None], [0.3, 0.1], [None, 0.8]]}, "every started task"),
    ({"task_starts": [], "task_ends": []}, "empty"),
])
def test_a_malformed_record_is_refused_with_what_is_wrong(change, words):
    with pytest.raises(DataError, match=words):
        summarize_continual({**AT_THE_END, **change})
    assert issubclass(DataError, ValueError)


def test_a_record_without_its_fields_names_them():
    with pytest.raises(DataError, match="lacks task_starts, task_ends"):
        min_accuracy({"steps": [0], "accuracy": [[0.5]]})
