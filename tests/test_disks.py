"""Disks, paths and files: a path that cannot be written, a full disk or read-only media end in
one line that names the path and the fix, exit status 2, before any training, with nothing
half-written left behind and nothing already stored lost.

Read-only and full disks are real: a 1 MiB tmpfs mounted for the test (root, as in CI). Where
mounting is not allowed those tests are skipped with the reason; the in-process tests at the end
cover the same errors by making the system calls fail."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest

from fake_runs import TINY_ARGS, fake_run, run_cli
from forgetless.errors import StorageError
from forgetless.learner import Learner
from forgetless.results.store import RunStore
from forgetless.storage import check_writable, write_atomic

COMPARE = ["compare", *TINY_ARGS, "--strategies", "naive", "--no-references", "--seeds", "1",
           "--scenario", "class", "--jobs", "1", "--quiet"]


class Disk:
    """A small real filesystem: fill it, free it, make it read-only, list what is on it."""

    def __init__(self, path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, bytes(4096))
        except OSError as error:
            assert error.errno == errno.ENOSPC
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink()

    def readonly(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def files(self) -> dict[str, bytes]:
        """Every file on the disk (the filler by size only), with its bytes."""
        return {str(p.relative_to(self.path)): (p.read_bytes() if p != self.filler
                                                 else str(p.stat().st_size).encode())
                for p in sorted(self.path.rglob("*")) if p.is_file()}


@pytest.fixture
def disk(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = os.geteuid() == 0 and shutil.which("mount") is not None and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
        capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("a real full or read-only disk needs a tmpfs mount (root, as in CI); the "
                    "in-process tests below cover the same errors")
    yield Disk(folder)
    subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture
def store_with_runs(tmp_path):
    path = tmp_path / "good.db"
    with RunStore(path) as store:
        for seed in (0, 1):
            store.put(fake_run(seed=seed))
    return path


def stored(path) -> dict[str, str]:
    with RunStore(path, readonly=True) as store:
        return {r.run_id: r.to_json() for r in store.select()}


# ---------------------------------------------------------------------- before any training
WRITERS = {  # name -> (the command, the option under test, the file or folder it names)
    "run --output": (["run", *TINY_ARGS, "--quiet"], "--output", "run.json"),
    "run --checkpoint-dir": (["run", *TINY_ARGS, "--quiet"], "--checkpoint-dir", "ck"),
    "compare --store": (COMPARE, "--store", "runs.db"),
    "compare --report": (COMPARE, "--report", "report.html"),
    "compare --csv": (COMPARE, "--csv", "table.csv"),
    "compare --markdown": (COMPARE, "--markdown", "table.md"),
    "runs --csv": (["runs"], "--csv", "table.csv"),
    "runs --markdown": (["runs"], "--markdown", "table.md"),
    "report --output": (["report"], "--output", "report.html"),
}
PROBLEMS = {  # name -> what the error says
    "a file in place of a folder": "is a file, not a folder; move it away or give another path",
    "read-only": "the filesystem is read-only; give a path on a writable disk",
    "read-only, missing parent": "does not exist; create it first (mkdir -p",
    "a missing folder": "does not exist; create it first (mkdir -p",
    "full": "the disk is full; free some space or give a path on another disk",
}


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("writer", WRITERS)
def test_an_unwritable_path_is_refused_in_one_line_before_training(
        writer, problem, request, tmp_path, store_with_runs, capsys, monkeypatch):
    command, option, name = WRITERS[writer]
    if problem == "a file in place of a folder":
        (tmp_path / "blocker").write_text("keep me")
        target, disk = tmp_path / "blocker" / name, None
    elif problem == "a missing folder":  # on a writable disk: a typo, refused, not created
        (tmp_path / "blocker").write_text("keep me")
        target, disk = tmp_path / "mistyped" / name, None
    else:
        disk = request.getfixturevalue("disk")
        (disk.path / "earlier.json").write_text("an earlier result")
        target = disk.path / ("missing" if "missing" in problem else "") / name
        if problem == "full":
            disk.fill()
        else:
            disk.readonly()
    before = disk.files() if disk else (tmp_path / "blocker").read_text()
    runs_before = stored(store_with_runs)

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking where it writes")

    monkeypatch.setattr(Learner, "fit", no_training)
    monkeypatch.chdir(tmp_path)
    others = [] if command[0] == "run" else ["--store", str(store_with_runs)]
    if command is COMPARE:
        others += ["--report", str(tmp_path / "ok.html")]
    status, out, err = run_cli(capsys, *command, *others, option, str(target))

    assert status == 2, err
    assert err.startswith(f"error: cannot write {option} '{target}': "), err
    assert PROBLEMS[problem] in err and err.count("\n") == 1 and "Traceback" not in err
    assert (disk.files() if disk else (tmp_path / "blocker").read_text()) == before
    assert stored(store_with_runs) == runs_before
    assert not (tmp_path / "ok.html").exists() and not (tmp_path / "mistyped").exists()


# ---------------------------------------------------------------------- the results store
def test_a_store_on_read_only_media_is_listed_and_reported(disk, tmp_path, capsys):
    with RunStore(disk.path / "runs.db") as store:
        for seed in (0, 1):
            store.put(fake_run(seed=seed))
    disk.readonly()
    before = disk.files()

    status, out, err = run_cli(capsys, "runs", "--store", str(disk.path / "runs.db"))
    assert status == 0, err
    assert fake_run(seed=0).run_id[:10] in out and fake_run(seed=1).run_id[:10] in out
    assert "2 run(s)" in out
    report = tmp_path / "report.html"
    status, out, err = run_cli(capsys, "report", "--store", str(disk.path / "runs.db"), "-o",
                               str(report))
    assert status == 0, err
    assert fake_run(seed=1).run_id in report.read_text()

    status, _, err = run_cli(capsys, *COMPARE, "--store", str(disk.path / "runs.db"))
    assert status == 2 and "read-only" in err and err.count("\n") == 1
    assert disk.files() == before


def test_the_disk_filling_during_compare_keeps_the_stored_runs_and_the_next_compare_continues(
        disk, tmp_path, capsys, monkeypatch):
    path = disk.path / "runs.db"
    with RunStore(path) as store:
        store.put(fake_run(seed=7))
    before = stored(path)
    put = RunStore.put

    def put_on_a_full_disk(self, result, replace=True):
        disk.fill()  # the disk fills while the run trains
        return put(self, result, replace)

    monkeypatch.setattr(RunStore, "put", put_on_a_full_disk)
    status, out, err = run_cli(capsys, *COMPARE, "--store", str(path), "--no-report")
    assert status == 2, err
    assert err == (f"error: the disk holding the store '{path}' is full; the runs already "
                   "stored are intact: free some space (or give another --store) and run the "
                   "same command again to continue.\n")
    disk.free()
    assert stored(path) == before

    monkeypatch.undo()
    status, out, err = run_cli(capsys, *COMPARE, "--store", str(path), "--no-report")
    assert status == 0, err
    after = stored(path)
    assert len(after) == 2 and {k: after[k] for k in before} == before


# ---------------------------------------------------------------------- a write that fails
def test_a_run_record_and_a_report_on_a_disk_full_at_write_time_leave_no_temporary_file(
        disk, store_with_runs, capsys, monkeypatch):
    import forgetless.report.html as html

    record, page = disk.path / "run.json", disk.path / "report.html"
    record.write_text("the previous record")
    page.write_text("the previous report")
    fit, render = Learner.fit, html.render

    def fit_then_fill(self, *args, **kwargs):
        result = fit(self, *args, **kwargs)
        disk.fill()
        return result

    monkeypatch.setattr(Learner, "fit", fit_then_fill)
    status, out, err = run_cli(capsys, "run", *TINY_ARGS, "--tasks", "5", "--quiet", "-o",
                               str(record))
    assert status == 2, err
    assert err == (f"error: cannot write the run record '{record}': the disk is full; free "
                   "some space or give a path on another disk.\n")
    disk.free()
    assert disk.files() == {"run.json": b"the previous record",
                            "report.html": b"the previous report"}

    monkeypatch.setattr(html, "render", lambda *a, **k: (disk.fill(), render(*a, **k))[1])
    status, out, err = run_cli(capsys, "report", "--store", str(store_with_runs), "-o",
                               str(page))
    assert status == 2 and "cannot write the report" in err and "disk is full" in err
    disk.free()
    assert disk.files() == {"run.json": b"the previous record",
                            "report.html": b"the previous report"}


# ---------------------------------------------------------------------- without a mount
@pytest.mark.parametrize("code, reason", [
    (errno.ENOSPC, "the disk is full; free some space or give a path on another disk"),
    (errno.EROFS, "the filesystem is read-only; give a path on a writable disk"),
    (errno.EACCES, "permission denied; give a path you may write to"),
])
def test_write_atomic_removes_its_temporary_file_and_new_folders_on_any_error(
        code, reason, tmp_path, monkeypatch):
    old = tmp_path / "old.json"
    old.write_text("old")
    new = tmp_path / "new" / "deeper" / "x.json"

    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    for target in (old, new):
        with pytest.raises(StorageError) as caught:
            write_atomic(target, "x" * 10_000, "the record")
        assert str(caught.value) == f"cannot write the record '{target}': {reason}."
        assert isinstance(caught.value, OSError)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["old.json"] and old.read_text() == "old"


@pytest.mark.parametrize("code, reason", [
    (errno.ENOSPC, "the disk is full"), (errno.EROFS, "the filesystem is read-only")])
def test_check_writable_probes_without_leaving_anything(code, reason, tmp_path, monkeypatch):
    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    check_writable(tmp_path / "b.json", "--output")
    check_writable(tmp_path / "new", "--checkpoint-dir", folder=True)  # a new folder is fine
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match=f"cannot write --output '.*b.json': {reason}"):
        check_writable(tmp_path / "b.json", "--output")
    with pytest.raises(StorageError, match="it is a folder; give a file name"):
        check_writable(tmp_path, "--output")
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="it is a file; give a folder"):
        check_writable(tmp_path / "file", "--checkpoint-dir", folder=True)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
