"""Checkpoints: atomic writes, safe loads, clear errors, and a killed run that resumes to the
same accuracy matrix as an uninterrupted one."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from forgetless.checkpoint import (
    MAGIC,
    RunCheckpoints,
    decode,
    encode,
    load_checkpoint,
    save_checkpoint,
)
from forgetless.config import RunConfig
from forgetless.errors import CheckpointError
from forgetless.experiments.runner import run
from forgetless.learner import Learner
from forgetless.strategies import build_strategy

SRC = str(Path(__file__).resolve().parents[1] / "src")


def sample_state():
    generator = torch.Generator().manual_seed(0)
    return {"w": torch.randn(50, 20, generator=generator), "steps": 7, "names": ["a", "b"],
            "nested": {"mask": torch.rand(9, generator=generator) > 0.5, "none": None}}


def test_round_trip_is_bit_identical(tmp_path):
    state = sample_state()
    path = save_checkpoint(tmp_path / "a.ckpt", {"note": "x", "n": 3}, state)
    meta, loaded = load_checkpoint(path)
    assert meta == {"note": "x", "n": 3}
    assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["nested"]["mask"],
                                                                 state["nested"]["mask"])
    assert loaded["steps"] == 7 and loaded["names"] == ["a", "b"]
    assert loaded["nested"]["none"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]  # no temporary file left


def test_truncated_corrupt_and_foreign_files_get_clear_errors(tmp_path):
    data = encode({"k": 1}, sample_state())
    body_start = data.index(b"\n") + 1
    cases = {
        "truncated": data[:-100],
        "corrupt": data[:body_start + 900] + bytes([data[body_start + 900] ^ 0x01])
        + data[body_start + 901:],
        "not a forgetless checkpoint": b"hello world\n" + data[body_start:],
        "version 9": data.replace(MAGIC + b" 1 ", MAGIC + b" 9 ", 1),
    }
    for expected, damaged in cases.items():
        path = tmp_path / "bad.ckpt"
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=expected):
            load_checkpoint(path)
        assert path.read_bytes() == damaged  # loading never touches the file
    # A bit flipped inside a tensor would load silently with torch.load alone.
    assert len(cases["corrupt"]) == len(data)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.ckpt")


class Payload:
    """A pickle that would create a file when unpickled by an unsafe loader."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_malicious_file_with_a_valid_checksum_runs_nothing(tmp_path):
    import hashlib

    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"meta_json": "{}", "state": {"x": Payload(str(marker))}}, buffer)
    body = buffer.getvalue()
    header = b"%s 1 %s %d\n" % (MAGIC, hashlib.sha256(body).hexdigest().encode(), len(body))
    path = tmp_path / "evil.ckpt"
    path.write_bytes(header + body)
    with pytest.raises(CheckpointError, match="could not be read safely"):
        load_checkpoint(path)
    assert not marker.exists()
    # The unsafe loader would have run it: the test's payload is real.
    torch.load(io.BytesIO(body), weights_only=False)
    assert marker.exists()


def test_a_failed_write_leaves_the_good_file_untouched(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.ckpt", {"v": 1}, sample_state())
    good = path.read_bytes()

    with pytest.raises(CheckpointError, match="safe load refuses"):  # unsafe state: refused
        save_checkpoint(path, {"v": 2}, {"x": Payload(str(tmp_path / "never"))})

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk is full"):
        save_checkpoint(path, {"v": 3}, {"w": torch.zeros(10)})
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert load_checkpoint(path)[0] == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.ckpt"]


def tiny_learner(stream, strategy="ewc", hidden=(32,), seed=0):
    from forgetless.models import build_model

    torch.manual_seed(seed)
    model = build_model("mlp", stream.input_shape, stream.num_outputs, hidden=hidden)
    learner = Learner(model, build_strategy(strategy), iterations=5, batch_size=16, seed=seed)
    learner.bind(stream)
    return learner


def test_other_architecture_or_strategy_is_refused_before_loading(digits_streams, tmp_path):
    stream = digits_streams["class"]
    learner = tiny_learner(stream)
    learner.learn(stream[0])
    path = learner.save(tmp_path / "l.ckpt")
    good = path.read_bytes()

    other = tiny_learner(stream, hidden=(16,))
    with pytest.raises(CheckpointError, match=r"another architecture.*\(32, 64\).*\(16, 64\)"):
        Learner.load(path, model=other.model)
    with pytest.raises(CheckpointError, match="strategy 'ewc', not 'si'"):
        Learner.load(path, strategy="si")
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a forgetless checkpoint"):
        Learner.load(tmp_path / "junk.ckpt")
    assert path.read_bytes() == good
    assert Learner.load(path).tasks_learned == [0]


def small_config(**changes):
    values = dict(source="digits", strategy="ewc+er", iterations=12, batch_size=32,
                  model_options={"hidden": [32]}, reset_optimizer=False, tasks=5, seed=3)
    values.update(changes)
    return RunConfig(**values)


class Crash(Exception):
    pass


class CrashAfter:
    """A logger that interrupts the run after ``tasks`` tasks (a crash, in-process)."""

    def __init__(self, tasks):
        self.tasks = tasks

    def start(self, experiment):
        pass

    def log_task(self, learner):
        if len(learner.tasks_learned) == self.tasks:
            raise Crash()

    def finish(self, result):
        pass


def test_resume_after_a_crash_returns_the_uninterrupted_matrix(tmp_path):
    torch.set_num_threads(1)
    config = small_config()
    reference = run(config, progress=False)
    folder = tmp_path / "ck"
    with pytest.raises(Crash):
        run(config, progress=False, checkpoint_dir=folder, loggers=[CrashAfter(3)])
    assert [p.name for p in RunCheckpoints(folder, "").files()] == ["task-003.ckpt",
                                                                    "task-002.ckpt"]
    resumed = run(config, progress=False, checkpoint_dir=folder, resume=True)
    assert resumed.accuracy_matrix == reference.accuracy_matrix
    assert resumed.untrained_accuracy == reference.untrained_accuracy
    assert len(resumed.costs["train_seconds"]) == 5 and resumed.costs["steps"] == [12] * 5
    assert resumed.run_id == reference.run_id

    # A resume after the last task trains nothing and still returns the whole matrix.
    again = run(config, progress=False, checkpoint_dir=folder, resume=True)
    assert again.accuracy_matrix == reference.accuracy_matrix
    assert again.costs["train_seconds"] == resumed.costs["train_seconds"]

    with pytest.raises(CheckpointError, match="belongs to run"):
        run(small_config(seed=4), progress=False, checkpoint_dir=folder, resume=True)


def test_resume_without_a_checkpoint_dir_is_an_error():
    from forgetless.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="--resume needs --checkpoint-dir"):
        run(small_config(), progress=False, resume=True)


def cli(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "forgetless.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


RUN = ["run", "--source", "digits", "--strategy", "ewc+er", "--keep-optimizer", "--iterations",
       "200", "--hidden", "64", "--seed", "5", "--quiet"]


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_matrix(tmp_path):
    torch.set_num_threads(1)
    folder = tmp_path / "ck"
    rng = random.Random()
    # Checkpoints that exist when the kill comes; at least two tasks of 200 steps remain, so the
    # run cannot finish during the short random delay below.
    kill_after = rng.randint(1, 3)
    process = cli(*RUN, "--checkpoint-dir", str(folder), "-o", str(tmp_path / "killed.json"))
    deadline = time.monotonic() + 240
    target = folder / f"task-{kill_after:03d}.ckpt"
    while not target.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.1))
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed.json").exists()

    resumed = cli(*RUN, "--checkpoint-dir", str(folder), "--resume", "-o",
                  str(tmp_path / "resumed.json"))
    _, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err.decode()

    reference = run(RunConfig(source="digits", strategy="ewc+er", reset_optimizer=False,
                              iterations=200, model_options={"hidden": [64]}, seed=5),
                    progress=False)
    record = json.loads((tmp_path / "resumed.json").read_text())
    assert record["run_id"] == reference.run_id
    assert record["accuracy_matrix"] == reference.accuracy_matrix, f"killed after {kill_after}"


def test_decode_rejects_empty_data():
    with pytest.raises(CheckpointError, match="not a forgetless checkpoint"):
        decode(b"")


# ---------------------------------------------------------------------- never lose a run
def test_another_run_in_the_same_checkpoint_dir_is_refused_unless_overwrite(tmp_path):
    torch.set_num_threads(1)
    folder = tmp_path / "ck"
    first = run(small_config(), progress=False, checkpoint_dir=folder)
    saved = {p.name: p.read_bytes() for p in folder.iterdir()}
    other = small_config(seed=4)
    with pytest.raises(CheckpointError) as refused:
        run(other, progress=False, checkpoint_dir=folder)
    message = str(refused.value)
    assert f"holds checkpoints of another run ({first.run_id})" in message
    for choice in ("--resume", "another --checkpoint-dir", "--overwrite"):
        assert choice in message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == saved  # nothing lost

    again = run(small_config(), progress=False, checkpoint_dir=folder)  # the same run: allowed
    assert again.accuracy_matrix == first.accuracy_matrix
    second = run(other, progress=False, checkpoint_dir=folder, overwrite=True)
    owners = RunCheckpoints(folder, second.run_id).owners()
    assert sorted(p.name for p in owners) == ["task-005.ckpt", "task-004.ckpt"][::-1]
    assert set(owners.values()) == {second.run_id}


def test_the_cli_names_the_choices_and_overwrite_deletes_the_other_run(tmp_path, capsys):
    from fake_runs import run_cli

    folder = tmp_path / "ck"
    args = ["run", "--source", "digits", "--iterations", "2", "--hidden", "8", "--quiet",
            "--checkpoint-dir", str(folder)]
    assert run_cli(capsys, *args)[0] == 0
    saved = {p.name: p.read_bytes() for p in folder.iterdir()}
    status, _, err = run_cli(capsys, *args, "--seed", "1")
    assert status == 2 and err.startswith("error: --checkpoint-dir") and err.count("\n") == 1
    assert "--overwrite to delete them" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == saved
    status, out, err = run_cli(capsys, *args, "--seed", "1", "--overwrite")
    assert status == 0, err
    assert not set(saved.items()) & {(p.name, p.read_bytes()) for p in folder.iterdir()}


def test_resume_with_no_checkpoint_says_so_and_trains_from_the_start(tmp_path, capsys):
    from fake_runs import run_cli
    from forgetless.errors import ForgetlessWarning

    folder = tmp_path / "mistyped"
    with pytest.warns(ForgetlessWarning, match=f"--resume: no checkpoint in '{folder}'"):
        result = run(small_config(tasks=5), progress=False, checkpoint_dir=folder, resume=True)
    assert len(result.accuracy_matrix) == 5
    status, out, err = run_cli(capsys, "run", "--source", "digits", "--iterations", "2",
                               "--quiet", "--checkpoint-dir", str(tmp_path / "other"),
                               "--resume")
    assert status == 0
    assert err.startswith(f"warning: --resume: no checkpoint in '{tmp_path / 'other'}'")
    assert err.count("\n") == 1 and "run id" in out


def test_an_unreadable_newest_checkpoint_is_skipped_with_a_warning(digits_streams, tmp_path):
    from forgetless.errors import ForgetlessWarning

    stream = digits_streams["class"]
    learner = tiny_learner(stream)
    checkpoints = RunCheckpoints(tmp_path, "r1")
    for task in stream.tasks[:2]:
        learner.learn(task)
        checkpoints.save(learner, {})
    newest = tmp_path / "task-002.ckpt"
    newest.write_bytes(newest.read_bytes()[:-10])
    with pytest.warns(ForgetlessWarning) as warned:
        path, meta, _ = checkpoints.latest()
    assert path.name == "task-001.ckpt" and meta["run_id"] == "r1"
    assert len(warned) == 1 and f"'{newest}' is truncated" in str(warned[0].message)
    assert "resuming from" in str(warned[0].message)


def damaged_copy(path: Path, tmp_path: Path, change) -> Path:
    """``path``'s checkpoint with its metadata edited by ``change(meta)`` (checksum valid)."""
    meta, state = load_checkpoint(path)
    change(meta)
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(encode(meta, state))
    return damaged


@pytest.mark.parametrize("change, message", [
    (lambda m: m["learner"].update(bogus=1), r"'learner' has unknown keys 'bogus'"),
    (lambda m: m["learner"].update(lr="fast"), r"'learner.lr' must be a number, not 'fast'"),
    (lambda m: m["learner"].pop("seed"), r"'learner.seed' is missing"),
    (lambda m: m["model"]["options"].update(width=3), r"asks for a model this forgetless "
                                                       r"refuses: model 'mlp'.*width"),
    (lambda m: m["model"].update(num_outputs="10"), r"'model.num_outputs' must be a positive"),
    (lambda m: m["strategy"]["parts"][0]["hyperparameters"].update(lamb=1.0),
     r"asks for a strategy this forgetless refuses: .*lamb"),
    (lambda m: m.update(num_outputs=10 ** 9), r"'num_outputs' is 1000000000, but the saved "
                                               r"output mask has 10 units"),
    (lambda m: m["tasks"][0].update(classes=[0, 10 ** 9]), r"'tasks\[0\].classes' must be "
                                                            r"output units 0..9"),
    (lambda m: m.update(tasks=m["tasks"] * 3), r"lists 15 tasks, but the saved output mask "
                                                r"has 5"),
])
def test_damaged_metadata_is_refused_before_anything_is_built(change, message, digits_streams,
                                                              tmp_path):
    learner = tiny_learner(digits_streams["class"])
    learner.learn(digits_streams["class"][0])
    damaged = damaged_copy(learner.save(tmp_path / "l.ckpt"), tmp_path, change)
    with pytest.raises(CheckpointError, match=message):
        Learner.load(damaged)


def test_a_model_larger_than_the_saved_weights_is_never_allocated(digits_streams, tmp_path):
    """hidden=[60000, 60000] would allocate 14 GB; under a 3 GiB address-space limit, building
    it would fail with an allocation error instead of the CheckpointError."""
    learner = tiny_learner(digits_streams["class"])
    damaged = damaged_copy(learner.save(tmp_path / "l.ckpt"), tmp_path,
                           lambda m: m["model"]["options"].update(hidden=[60000, 60000]))
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            "from forgetless.learner import Learner\n"
            "from forgetless.errors import CheckpointError\n"
            "try:\n"
            f"    Learner.load({str(damaged)!r})\n"
            "except CheckpointError as error:\n"
            "    print(error)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": SRC}, timeout=120)
    assert result.returncode == 0, result.stderr[-500:]
    wanted = 64 * 60000 + 60000 + 60000 * 60000 + 60000 + 60000 * 10 + 10  # 8x8 in, 10 out
    saved = 64 * 32 + 32 + 32 * 10 + 10
    assert f"describes a model of {wanted:,} values but holds weights for only {saved:,};" in \
        result.stdout


class Shell:
    """A pickle that would run a shell command when unpickled by an unsafe loader."""

    def __reduce__(self):
        return (os.system, ("true",))


def test_the_refused_global_is_named_in_full(tmp_path):
    refused = f"'{os.system.__module__}.system'"
    with pytest.raises(CheckpointError, match=f"safe load refuses .*{refused}"):
        save_checkpoint(tmp_path / "x.ckpt", {}, {"x": Shell()})
    import hashlib

    buffer = io.BytesIO()
    torch.save({"meta_json": "{}", "state": {"x": Shell()}}, buffer)
    body = buffer.getvalue()
    path = tmp_path / "evil.ckpt"
    path.write_bytes(b"%s 1 %s %d\n" % (MAGIC, hashlib.sha256(body).hexdigest().encode(),
                                        len(body)) + body)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert f"it refers to the Python object {refused}, which a safe load refuses" in message
    assert "\n" not in message and "\x1b" not in message and message.endswith("not loaded.")
