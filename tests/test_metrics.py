"""Metrics on hand-made accuracy matrices: exact values and edge cases."""

import math

import pytest

from forgetless import metrics

R = [[0.9, 0.1, 0.2],
     [0.6, 0.8, 0.3],
     [0.5, 0.7, 0.95]]
B = [0.1, 0.15, 0.1]


def test_average_accuracy_is_the_last_row_mean():
    assert metrics.average_accuracy(R) == pytest.approx((0.5 + 0.7 + 0.95) / 3)


def test_backward_transfer_compares_final_with_just_learned():
    assert metrics.backward_transfer(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)


def test_forward_transfer_compares_before_learning_with_untrained():
    assert metrics.forward_transfer(R, B) == pytest.approx(((0.1 - 0.15) + (0.3 - 0.1)) / 2)


def test_forgetting_uses_the_best_earlier_accuracy():
    # task 0: best of 0.9, 0.6 is 0.9 -> 0.4; task 1: best 0.8 -> 0.1
    assert metrics.average_forgetting(R) == pytest.approx((0.4 + 0.1) / 2)
    rising = [[0.5, 0.0], [0.7, 0.9]]
    assert metrics.average_forgetting(rising) == pytest.approx(-0.2)


def test_forgetting_takes_a_peak_reached_after_learning():
    r = [[0.6, 0, 0], [0.9, 0.8, 0], [0.3, 0.8, 0.7]]
    assert metrics.average_forgetting(r) == pytest.approx(((0.9 - 0.3) + 0.0) / 2)


def test_forgetting_ignores_accuracy_before_the_task_was_learned():
    """Our convention (rows j..T-2) against Chaudhry et al.'s code (every row before the last):
    task 1 scores 0.9 before it is learned (row 0), 0.7 once learned, 0.5 at the end."""
    r = [[1.0, 0.9, 0.0], [0.8, 0.7, 0.0], [0.6, 0.5, 0.9]]
    assert metrics.average_forgetting(r) == pytest.approx(((1.0 - 0.6) + (0.7 - 0.5)) / 2)
    every_row = ((1.0 - 0.6) + (0.9 - 0.5)) / 2  # what the all-rows convention would give
    assert metrics.average_forgetting(r) != pytest.approx(every_row)


def test_fwt_is_undefined_in_class_il_and_for_joint():
    r, b = [[0.9, 0.0], [0.5, 0.8]], [0.1, 0.1]
    assert metrics.summarize(r, b)["fwt"] == pytest.approx(-0.1)
    assert metrics.summarize(r, b, fwt_defined=False)["fwt"] is None
    assert not metrics.forward_transfer_defined("class")
    assert not metrics.forward_transfer_defined("task", sees_future=True)
    assert metrics.forward_transfer_defined("task") and metrics.forward_transfer_defined("domain")


def test_learning_accuracy_is_the_diagonal_mean():
    assert metrics.learning_accuracy(R) == pytest.approx((0.9 + 0.8 + 0.95) / 3)


def test_one_task_has_no_transfer_or_forgetting():
    one = [[0.75]]
    summary = metrics.summarize(one, [0.1])
    assert summary == {"acc": 0.75, "bwt": 0.0, "fwt": 0.0, "forgetting": 0.0,
                       "learning_acc": 0.75}


def test_no_forgetting_matrix():
    t = 6
    r = [[1.0 if j <= i else 0.0 for j in range(t)] for i in range(t)]
    s = metrics.summarize(r, [0.0] * t)
    assert s["acc"] == 1.0 and s["bwt"] == 0.0 and s["forgetting"] == 0.0 and s["fwt"] == 0.0


def test_catastrophic_forgetting_matrix():
    t = 5
    r = [[1.0 if j == i else 0.0 for j in range(t)] for i in range(t)]
    s = metrics.summarize(r, [0.0] * t)
    assert math.isclose(s["acc"], 1 / t) and s["bwt"] == -1.0 and s["forgetting"] == 1.0


@pytest.mark.parametrize("bad", [[], [[0.1, 0.2]], [[0.1], [0.2]]])
def test_non_square_matrices_are_refused(bad):
    with pytest.raises(ValueError, match="square"):
        metrics.average_accuracy(bad)


def test_untrained_accuracy_must_match_the_tasks():
    with pytest.raises(ValueError, match="one untrained accuracy per task"):
        metrics.forward_transfer(R, [0.1, 0.2])
