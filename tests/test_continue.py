"""Continuing a model later: ``learner.save`` / ``Learner.load`` then ``learn(new_task)`` gives
what one uninterrupted session gives, for every registered strategy, and the documented example
(docs/continuing-later.md) runs as written, its second part in a new process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from forgetless.data.stream import Stream
from forgetless.errors import ConfigurationError, DataError
from forgetless.learner import Learner
from forgetless.strategies import STRATEGIES
from strategy_helpers import (
    assert_same_model,
    first_served_scenario,
    learner_for,
    skip_unless_installed,
    small_stream,
)

ROOT = Path(__file__).resolve().parents[1]
NEEDS_OLD_DATA = {"cumulative", "joint"}  # they train on past tasks' data themselves


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_saved_and_loaded_learner_continues_identically(digits_streams, tmp_path, name):
    skip_unless_installed(name)
    torch.set_num_threads(1)
    stream = small_stream(digits_streams, first_served_scenario(name))

    uninterrupted = learner_for(name, stream)
    for task in stream:
        uninterrupted.learn(task)

    before = learner_for(name, stream)
    before.learn(stream[0])
    before.learn(stream[1])
    path = before.save(tmp_path / f"{name}.ckpt")
    torch.manual_seed(999)  # another session: nothing of this process's state may matter
    loaded = Learner.load(path, stream=stream if name in NEEDS_OLD_DATA else None)
    assert loaded.tasks_learned == [0, 1] and loaded.strategy.name == name
    loaded.learn(stream[2])

    assert_same_model(uninterrupted, loaded, stream.tasks, name)


def test_a_loaded_learner_knows_its_tasks_but_not_their_data(digits_streams, tmp_path):
    stream = digits_streams["task"]
    learner = learner_for("ewc", Stream(stream.tasks[:2], "task", stream.num_outputs))
    for task in stream.tasks[:2]:
        learner.learn(task)
    path = learner.save(tmp_path / "l.ckpt", note="two tasks")
    loaded = Learner.load(path)
    assert [t.task_id for t in loaded.stream_tasks] == [0, 1]
    assert [t.classes for t in loaded.stream_tasks] == [t.classes for t in stream.tasks[:2]]
    assert all(t.train_x.shape[0] == 0 for t in loaded.stream_tasks)
    assert torch.equal(loaded.output_mask.task_units, learner.output_mask.task_units)
    # task-incremental prediction still uses each task's own units
    assert loaded.evaluate(stream.tasks[:2]) == learner.evaluate(stream.tasks[:2])
    with pytest.raises(DataError, match="next task's id must be 2"):
        loaded.learn(stream[3])
    loaded.learn(stream[2])
    assert loaded.tasks_learned == [0, 1, 2]


def test_fit_continues_only_the_stream_it_was_saved_in(digits_streams, tmp_path):
    stream = digits_streams["class"]
    learner = learner_for("naive", stream)
    saved = []
    with pytest.raises(RuntimeError, match="stop"):
        def stop(learner):
            saved.append(learner.save(tmp_path / "mid.ckpt"))
            raise RuntimeError("stop")
        learner.fit(stream, after_task=stop)
    loaded = Learner.load(saved[0], stream=stream)
    with pytest.raises(ConfigurationError, match="same stream to continue"):
        loaded.fit(Stream(stream.tasks[:3], "class", stream.num_outputs))


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_the_documented_example_runs_and_matches_one_session(tmp_path, monkeypatch):
    today, next_month, one_session = python_blocks(
        (ROOT / "docs" / "continuing-later.md").read_text())
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    exec(compile(today, "continuing-later.md:today", "exec"), {})
    assert (tmp_path / "model.ckpt").exists()

    check = "\ntorch.save(learner.model.state_dict(), 'after.pt')\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    later = subprocess.run([sys.executable, "-c", next_month + check], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert later.returncode == 0, later.stderr

    namespace = {}
    from contextlib import redirect_stdout
    from io import StringIO

    printed = StringIO()
    with redirect_stdout(printed):
        exec(compile(one_session, "continuing-later.md:one-session", "exec"), namespace)
    assert later.stdout == printed.getvalue()
    assert later.stdout.startswith("after task 4: [")
    accuracies = eval(later.stdout.split(":", 1)[1])
    assert accuracies[3] > 80  # it learned the new task...
    assert min(accuracies[:3]) > 5  # ...and the replay kept something of the old ones
    after = torch.load(tmp_path / "after.pt", weights_only=True)
    for key, value in namespace["learner"].model.state_dict().items():
        assert torch.equal(after[key], value), key
