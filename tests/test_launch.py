"""``forgetless run --nproc N`` and ``torchrun``: one run as several processes, rank 0 speaking
for them; the result is the single process's (``forgetless.distributed``)."""

import json
import subprocess
import sys

import pytest

from forgetless.errors import ConfigurationError
from forgetless.launch import _wait, check_nproc, without_nproc

RUN = ["run", "--strategy", "ewc", "--iterations", "15", "--batch-size", "64", "--quiet"]


def forgetless(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "forgetless.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_two_processes_give_the_single_process_run_and_rank_zero_alone_records_it(tmp_path):
    store = tmp_path / "runs.db"
    one = forgetless(*RUN, "-o", str(tmp_path / "one.json"), "--no-store", cwd=tmp_path)
    two = forgetless(*RUN, "--nproc", "2", "-o", str(tmp_path / "two.json"), "--store",
                     str(store), cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    single, ranks = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert ranks["environment"]["processes"] == 2 and single["environment"]["processes"] == 1
    assert ranks["run_id"] == single["run_id"]  # the number of processes is not the run's
    for row_one, row_two in zip(single["accuracy_matrix"], ranks["accuracy_matrix"],
                                strict=True):
        assert row_two == pytest.approx(row_one, abs=0.01)  # float rounding: 1 point
    assert two.stdout.count("ACC (final average accuracy)") == 1  # one rank printed
    listed = forgetless("runs", "--store", str(store), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(single["run_id"][:8]) == 1  # stored once


@pytest.mark.parametrize("first, then", [(["--nproc", "2"], []), ([], ["--nproc", "2"])])
def test_a_checkpoint_resumes_on_another_number_of_processes(tmp_path, first, then):
    folder = tmp_path / "ck"
    whole = forgetless(*RUN, *first, "--checkpoint-dir", str(folder), "--no-store",
                       "-o", str(tmp_path / "whole.json"), cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    newest = sorted(folder.glob("task-*"))[-1]
    assert newest.name == "task-005.ckpt"
    newest.unlink()  # as if the run had stopped after its fourth task
    resumed = forgetless(*RUN, *then, "--checkpoint-dir", str(folder), "--resume",
                         "--no-store", "-o", str(tmp_path / "resumed.json"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("whole", "resumed"))
    assert b["accuracy_matrix"][:4] == a["accuracy_matrix"][:4]  # the rows it did not retrain
    assert b["accuracy_matrix"][4] == pytest.approx(a["accuracy_matrix"][4], abs=0.01)


def test_torchrun_environment_is_joined_the_same_way(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "2", "-m", "forgetless.cli"]
    result = subprocess.run([*torchrun, *RUN, "-o", str(tmp_path / "r.json"), "--no-store"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["environment"]["processes"] == 2


def test_the_children_get_the_command_without_nproc():
    assert without_nproc(["run", "--nproc", "2", "--seed", "1"]) == ["run", "--seed", "1"]
    assert without_nproc(["run", "--nproc=4", "-q"]) == ["run", "-q"]


def test_a_bad_process_count_is_one_sentence():
    with pytest.raises(ConfigurationError, match="positive whole number"):
        check_nproc(0)
    with pytest.raises(ConfigurationError, match="at most"):
        check_nproc(10_000)
    result = forgetless("run", "--nproc", "0", "--no-store")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--nproc must be a positive whole number" in result.stderr


class _Child:
    """A finished or running child process, as ``_wait`` sees it."""

    def __init__(self, code, message=b""):
        import tempfile

        self.code, self.stopped = code, False
        self.stderr_file = tempfile.TemporaryFile()
        self.stderr_file.write(message)

    def poll(self):
        return None if self.code is None and not self.stopped else (self.code or -15)

    def send_signal(self, _signal):
        self.stopped = True

    def wait(self, timeout=None):
        return self.poll()


def test_a_failing_rank_stops_the_others_and_says_which(capsys):
    children = [_Child(None), _Child(3, b"Traceback...\nRuntimeError: out of memory")]
    assert _wait(children) == 3
    assert children[0].stopped
    assert "rank 1 of 2 failed (exit 3): RuntimeError: out of memory" in capsys.readouterr().err
