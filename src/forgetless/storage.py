"""Writing to disk without losing anything, and saying in one line what went wrong.

- ``check_writable``: run by every command that writes, before it trains anything, so a run
  does not train for minutes and then die on an unwritable ``--output``. It creates nothing:
  it writes and removes a small probe file in the target's folder, which must exist (a
  mistyped folder is refused, not created; ``--checkpoint-dir`` itself may be new).
- ``write_atomic``: the one way files are written (run records, reports, tables,
  checkpoints). The bytes go to a temporary file beside the target, which is flushed, fsync'ed
  and renamed over the target (``os.replace`` is atomic), and the folder is fsync'ed so the
  rename survives a power cut. On any error the temporary file and the folders this call
  created are removed, and the target is as it was.
- ``storage_error``: an ``OSError`` as a ``StorageError`` that names the path and the fix.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from forgetless.errors import StorageError

#: Bytes the preflight probe writes: less free space than this is a full disk.
PROBE_BYTES = 64 * 1024

_FULL = "the disk is full; free some space or give a path on another disk"
_DENIED = "permission denied; give a path you may write to"
_REASONS = {
    errno.ENOSPC: _FULL,
    errno.EDQUOT: "the disk quota is used up; free some space or give a path on another disk",
    errno.EFBIG: "the file would be larger than this filesystem allows; give a path on "
                 "another disk",
    errno.EROFS: "the filesystem is read-only; give a path on a writable disk",
    errno.EACCES: _DENIED,
    errno.EPERM: _DENIED,
    errno.EISDIR: "it is a folder; give a file name",
    errno.ENAMETOOLONG: "the name is too long; give a shorter path",
}


def _blocking_file(path: Path) -> Path | None:
    """The first part of ``path`` that exists but is a file where a folder is needed."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def storage_error(error: OSError, path: str | Path, what: str = "file") -> StorageError:
    """``error`` (raised while writing ``path``) as one sentence with the fix."""
    if isinstance(error, StorageError):
        return error
    path = Path(path)
    if error.errno in (errno.ENOTDIR, errno.EEXIST, errno.ENOENT) and \
            (blocker := _blocking_file(path)) is not None:
        reason = f"'{blocker}' is a file, not a folder; move it away or give another path"
    elif error.errno in _REASONS:
        reason = _REASONS[error.errno]
    else:
        reason = f"{error.strerror or error}; give another path"
    return StorageError(f"cannot write {what} '{path}': {reason}.")


def check_writable(path: str | Path | None, what: str = "file", *, folder: bool = False,
                   in_place: bool = False) -> None:
    """Refuse, before any work, a ``path`` that cannot be written; None is nothing to check.

    ``folder``: the path is a folder to write files into (``--checkpoint-dir``).
    ``in_place``: the file itself is modified, not replaced (a SQLite store), so an existing
    one must be writable too."""
    if path is None:
        return
    path = Path(path)
    try:
        _check_writable(path, what, folder, in_place)
    except StorageError:
        raise
    except OSError as error:  # e.g. a folder on the way that this user may not enter
        raise storage_error(error, path, what) from None


def _check_writable(path: Path, what: str, folder: bool, in_place: bool) -> None:
    if path.is_dir() and not folder:
        raise StorageError(f"cannot write {what} '{path}': it is a folder; give a file name.")
    if path.exists() and folder and not path.is_dir():
        raise StorageError(f"cannot write {what} '{path}': it is a file; give a folder.")
    blocker = _blocking_file(path)
    if blocker is not None:
        raise StorageError(f"cannot write {what} '{path}': '{blocker}' is a file, not a "
                           "folder; move it away or give another path.")
    parent = path.parent  # a folder (--checkpoint-dir) may be new, but not its parent
    if not parent.exists():  # a mistyped folder must be noticed, not created
        raise StorageError(f"cannot write {what} '{path}': the folder '{parent}' does not exist; "
                           f"create it first (mkdir -p {parent}) or give another path.")
    if in_place and path.exists():
        os.close(os.open(path, os.O_WRONLY))  # opened for writing, not truncated or changed
    probe = (path if folder and path.exists() else parent) / \
        f".forgetless-probe-{os.getpid()}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, bytes(PROBE_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir()
    return missing


def _remove_folders(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def write_atomic(path: str | Path, data: bytes | str, what: str = "file") -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` atomically; returns the path. Any failure is
    a StorageError naming the path, with nothing left behind and ``path`` untouched."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    created: list[Path] = []
    try:
        created = _make_folders(path.parent)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        _remove_folders(created)
        if isinstance(error, OSError):
            raise storage_error(error, path, what) from None
        raise
    fsync_folder(path.parent)
    return path


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some systems cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
