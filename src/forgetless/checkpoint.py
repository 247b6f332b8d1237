"""Checkpoints: a learner's whole state in one file, written atomically, loaded safely.

File format (version 1)::

    FORGETLESS-CHECKPOINT 1 <sha256 of the body, hex> <length of the body>\\n
    <body: torch.save({"meta_json": str, "state": Learner.state_dict()})>

- Writing never damages an existing file: the bytes go to a temporary file in the same folder,
  which is flushed, fsync'ed and then renamed over the target (``os.replace`` is atomic), and
  the folder is fsync'ed so the rename survives a power cut. A failure at any point removes the
  temporary file and leaves the old checkpoint as it was.
- Loading never executes code from the file: the body is read with
  ``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers, and the
  metadata is JSON. The header's length and SHA-256 catch truncated and corrupted files (a bit
  flipped inside a tensor would otherwise load silently).
- What the file holds is checked against what it is loaded into (strategy, architecture, run)
  before any of it is applied, with a ``CheckpointError`` that says what differs.

``RunCheckpoints`` keeps the per-task checkpoints of one run (``forgetless run --checkpoint-dir
DIR``) and finds the last good one for ``--resume``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path

import torch

from forgetless.errors import CheckpointError, ForgetlessError

MAGIC = b"FORGETLESS-CHECKPOINT"
VERSION = 1
SUFFIX = ".ckpt"


# ---------------------------------------------------------------------- the file
def encode(meta: dict, state: dict) -> bytes:
    """The file's bytes for ``meta`` (JSON-able) and ``state`` (tensors, numbers, lists, dicts).

    The body is loaded back with the safe loader before anything is written, so a state that a
    safe load would refuse is reported now, naming what is wrong, not when resuming."""
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint metadata is not JSON-serialisable ({error}).") from None
    buffer = io.BytesIO()
    torch.save({"meta_json": meta_json, "state": state}, buffer)
    body = buffer.getvalue()
    try:
        torch.load(io.BytesIO(body), weights_only=True, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - any refusal means the state is not safe to save
        raise CheckpointError(
            "the learner's state holds objects a safe load refuses (only tensors, numbers, "
            "strings, lists and dicts are allowed); make the strategy's state_dict return only "
            f"those. Loader said: {str(error).splitlines()[0][:300]}"
        ) from None
    digest = hashlib.sha256(body).hexdigest()
    return b"%s %d %s %d\n" % (MAGIC, VERSION, digest.encode(), len(body)) + body


def decode(data: bytes, where: str = "checkpoint") -> tuple[dict, dict]:
    """``(meta, state)`` from a file's bytes, or a CheckpointError saying what is wrong."""
    newline = data.find(b"\n", 0, 200)
    header = data[:newline].split(b" ") if newline > 0 else []
    if len(header) != 4 or header[0] != MAGIC:
        raise CheckpointError(
            f"'{where}' is not a forgetless checkpoint (no checkpoint header); give a file "
            "written by learner.save or forgetless run --checkpoint-dir.")
    try:
        version, digest, length = int(header[1]), header[2].decode(), int(header[3])
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"'{where}' has a damaged checkpoint header.") from None
    if version != VERSION:
        raise CheckpointError(
            f"'{where}' is a version {version} checkpoint; this forgetless reads version "
            f"{VERSION}. Load it with the forgetless that wrote it.")
    body = data[newline + 1:]
    if len(body) != length:
        raise CheckpointError(
            f"'{where}' is truncated: {len(body)} of {length} bytes are there (the write was "
            "cut short, or the copy is incomplete); use an earlier checkpoint.")
    if hashlib.sha256(body).hexdigest() != digest:
        raise CheckpointError(
            f"'{where}' is corrupt: its contents do not match the checksum written with it; "
            "use an earlier checkpoint or a good copy.")
    try:
        payload = torch.load(io.BytesIO(body), weights_only=True, map_location="cpu")
        meta = json.loads(payload["meta_json"])
        state = payload["state"]
    except Exception as error:  # noqa: BLE001 - the body is not what this version writes
        raise CheckpointError(
            f"'{where}' could not be read safely ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}); it was not written by this forgetless or "
            "holds objects other than tensors and plain values.") from None
    return meta, state


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file: flush, fsync, rename, fsync the
    folder. On any failure the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
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


def save_checkpoint(path: str | Path, meta: dict, state: dict) -> Path:
    """Encode and write atomically; returns the path."""
    return write_atomic(path, encode(meta, state))


def load_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """``(meta, state)`` of a checkpoint file, loaded safely."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at '{path}'.") from None
    except IsADirectoryError:
        raise CheckpointError(f"'{path}' is a folder; give the checkpoint file.") from None
    return decode(data, str(path))


# ---------------------------------------------------------------------- checks
def model_signature(model: torch.nn.Module) -> dict[str, list[int]]:
    """Every tensor of the model's state by name, with its shape."""
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def check_compatible(meta: dict, learner, where: str) -> None:
    """Refuse a checkpoint whose strategy or architecture differs from ``learner``'s.

    A strategy that grows the model (PNN's columns) makes the saved model larger than a fresh
    one, so every tensor the fresh model has must be in the checkpoint with the same shape."""
    saved, current = meta.get("strategy", {}).get("name"), learner.strategy.name
    if saved != current:
        raise CheckpointError(
            f"'{where}' was saved by a learner with strategy '{saved}', not '{current}'; load "
            "it with the same strategy (or let Learner.load rebuild it).")
    signature = meta.get("model_signature", {})
    for key, shape in model_signature(learner.model).items():
        if key not in signature:
            raise CheckpointError(
                f"'{where}' is of another architecture: it has no tensor '{key}'; build the "
                "model the checkpoint was saved with.")
        if signature[key] != shape:
            raise CheckpointError(
                f"'{where}' is of another architecture: '{key}' has shape "
                f"{tuple(signature[key])} there but {tuple(shape)} in this model; build the "
                "model the checkpoint was saved with.")


def restore(learner, meta: dict, state: dict, where: str) -> None:
    """Check and load ``state`` into ``learner``; any failure is a CheckpointError."""
    check_compatible(meta, learner, where)
    try:
        learner.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        message = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        raise CheckpointError(f"'{where}' does not fit this learner: {message}") from None


# ---------------------------------------------------------------------- one run's checkpoints
class RunCheckpoints:
    """The per-task checkpoints of one run in ``folder``: ``task-001.ckpt``, ``task-002.ckpt``…
    (the number is the count of tasks trained). The newest ``keep`` are kept."""

    PATTERN = re.compile(r"^task-(\d+)\.ckpt$")

    def __init__(self, folder: str | Path, run_id: str, keep: int = 2) -> None:
        self.folder, self.run_id, self.keep = Path(folder), run_id, max(1, int(keep))
        if self.folder.exists() and not self.folder.is_dir():
            raise CheckpointError(f"--checkpoint-dir '{self.folder}' is a file; give a folder.")

    def files(self) -> list[Path]:
        """Checkpoint files, newest (most tasks trained) first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir()
                 if (m := self.PATTERN.match(p.name))]
        return [p for _, p in sorted(found, reverse=True)]

    def save(self, learner, meta: dict) -> Path:
        """Checkpoint ``learner`` after its latest task; prune the oldest beyond ``keep``."""
        meta = {**meta, "run_id": self.run_id}
        path = learner.save(self.folder / f"task-{len(learner.tasks_learned):03d}{SUFFIX}",
                            **meta)
        for old in self.files()[self.keep:]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> tuple[Path, dict, dict] | None:
        """The newest checkpoint that loads and belongs to this run, or None when there is none.

        A damaged newest file (possible only if the disk itself failed) falls back to the one
        before; a checkpoint of another run is an error, not something to skip silently."""
        problems = []
        for path in self.files():
            try:
                meta, state = load_checkpoint(path)
            except ForgetlessError as error:
                problems.append(str(error))
                continue
            if meta.get("run_id") != self.run_id:
                raise CheckpointError(
                    f"'{path}' belongs to run {meta.get('run_id')}, but this command configures "
                    f"run {self.run_id}; resume with the same options, or give another "
                    "--checkpoint-dir.")
            return path, meta, state
        if problems:
            raise CheckpointError("no checkpoint in '" + str(self.folder) + "' could be read: "
                                  + "; ".join(problems))
        return None

    def resume(self, learner) -> Path | None:
        """Load the newest checkpoint into ``learner``; the path, or None when there is none."""
        for leftover in self.folder.glob(".task-*.tmp"):  # a write cut short by a kill
            leftover.unlink(missing_ok=True)
        found = self.latest()
        if found is None:
            return None
        path, meta, state = found
        restore(learner, meta, state, str(path))
        return path


# ---------------------------------------------------------------------- a learner's file
LEARNER_SETTINGS = ("epochs", "iterations", "batch_size", "lr", "optimizer_name", "momentum",
                    "weight_decay", "reset_optimizer", "seed", "eval_batch_size")


def _json_or_none(value):
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


def learner_meta(learner) -> dict:
    """What rebuilds ``learner`` without its code: settings, model spec, strategy parts and
    hyper-parameters, scenario and the tasks it knows (ids, classes, descriptions)."""
    parts = [{"name": part.name, "hyperparameters": _json_or_none(part.hyperparameters())}
             for part in learner.strategy.parts]
    known = learner.stream_tasks
    return {
        "kind": "learner",
        "learner": {k: getattr(learner, k) for k in LEARNER_SETTINGS},
        "model": _json_or_none(learner.model_spec),
        "strategy": {"name": learner.strategy.name, "parts": parts},
        "scenario": None if learner.scenario is None else learner.scenario.value,
        "num_outputs": None if learner.output_mask is None else learner.output_mask.num_outputs,
        "input_shape": list(known[0].train_x.shape[1:]) if known else None,
        "tasks": [{"task_id": t.task_id, "classes": [int(c) for c in t.classes],
                   "description": t.description} for t in known],
        "model_signature": model_signature(learner.model),
    }


def save_learner(learner, path: str | Path, **meta) -> Path:
    """``learner.save(path)``: its state and how to rebuild it, written atomically."""
    return save_checkpoint(path, {**learner_meta(learner), **meta}, learner.state_dict())


def _rebuild_model(meta: dict, where: str):
    spec = meta.get("model")
    if not spec:
        raise CheckpointError(
            f"'{where}' does not say how to build its model (it was not made by build_model); "
            "pass the same architecture: Learner.load(path, model=...).")
    from forgetless.models import build_model

    return build_model(spec["name"], tuple(spec["input_shape"]), spec["num_outputs"],
                       **spec["options"])


def _rebuild_strategy(meta: dict, where: str):
    parts = meta.get("strategy", {}).get("parts", [])
    if not parts or not all(p.get("name") and p.get("hyperparameters") is not None
                            for p in parts):
        raise CheckpointError(
            f"'{where}' holds a strategy that cannot be rebuilt by name (unregistered, or with "
            "hyper-parameters that are not plain values); pass it: "
            "Learner.load(path, strategy=...).")
    from forgetless.strategies import build_strategy

    settings = {f"{p['name']}.{k}": v for p in parts for k, v in p["hyperparameters"].items()}
    return build_strategy("+".join(p["name"] for p in parts), settings)


def _adopt_known_tasks(learner, meta: dict) -> None:
    """Without the old stream: the scenario, the head and placeholders (no data) for the tasks
    the learner knew, so new tasks continue the numbering and the output mask."""
    from forgetless.data.stream import Scenario, Task
    from forgetless.models.heads import OutputMask

    if meta.get("scenario") is None:
        return
    learner.scenario = Scenario.parse(meta["scenario"])
    learner.output_mask = OutputMask(learner.scenario, meta["num_outputs"], learner.device,
                                     learner.strategy.trains_whole_head)
    shape = tuple(meta["input_shape"])
    for info in meta["tasks"]:
        empty_x, empty_y = torch.empty(0, *shape), torch.empty(0, dtype=torch.long)
        learner._know(Task(info["task_id"], empty_x, empty_y, empty_x, empty_y,
                           tuple(info["classes"]), info["description"]))


def load_learner(cls, path: str | Path, *, stream=None, model=None, strategy=None,
                 device="cpu", progress=None):
    """``Learner.load``: rebuild from the file (or the given parts) and restore its state."""
    meta, state = load_checkpoint(path)
    where = str(path)
    if meta.get("kind") != "learner":
        raise CheckpointError(f"'{where}' is a checkpoint but not of a learner.")
    if model is None:
        model = _rebuild_model(meta, where)
    if strategy is None:
        strategy = _rebuild_strategy(meta, where)
    elif isinstance(strategy, str):
        from forgetless.strategies import build_strategy

        strategy = build_strategy(strategy)
    settings = dict(meta["learner"])
    settings["optimizer"] = settings.pop("optimizer_name")
    learner = cls(model, strategy, device=device, progress=progress, **settings)
    if stream is not None:
        if meta.get("scenario") not in (None, stream.scenario.value):
            raise CheckpointError(
                f"'{where}' was saved in a {meta['scenario']}-incremental run; the stream given "
                f"is {stream.scenario.value}-incremental.")
        learner.bind(stream)
    else:
        _adopt_known_tasks(learner, meta)
    restore(learner, meta, state, where)
    return learner
