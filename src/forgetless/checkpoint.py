"""Checkpoints: a learner's whole state in one file, written atomically, loaded safely.

File format (version 1)::

    FORGETLESS-CHECKPOINT 1 <sha256 of the body, hex> <length of the body>\\n
    <body: torch.save({"meta_json": str, "state": Learner.state_dict()})>

- Writing never damages an existing file (``forgetless.storage.write_atomic``): a failure at
  any point removes the temporary file and leaves the old checkpoint as it was.
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
import re
import warnings
from pathlib import Path

import torch

from forgetless.checkpoint_meta import LEARNER_SETTINGS, check_learner_meta
from forgetless.errors import CheckpointError, ForgetlessError, ForgetlessWarning
from forgetless.storage import write_atomic

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
            f"the learner's state holds objects a safe load refuses ({refusal(error)}; only "
            "tensors, numbers, strings, lists and dicts are allowed); make the strategy's "
            "state_dict return only those.") from None
    digest = hashlib.sha256(body).hexdigest()
    return b"%s %d %s %d\n" % (MAGIC, VERSION, digest.encode(), len(body)) + body


def refusal(error: Exception) -> str:
    """What torch's safe loader refused, on one line: the refused global named in full (torch's
    message is several lines, and the name is on the last ones)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    found = re.search(r"GLOBAL ([^\s]+)", text)
    if found:
        return f"it refers to the Python object '{found.group(1)}', which a safe load refuses"
    found = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    line = found.group(1) if found else " ".join(text.split())
    return f"{type(error).__name__}: {line.strip()}" if line.strip() else type(error).__name__


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
            f"'{where}' could not be read safely ({refusal(error)}); it was not written by "
            "this forgetless or holds objects other than tensors and plain values, so it was "
            "not loaded.") from None
    return meta, state


def save_checkpoint(path: str | Path, meta: dict, state: dict) -> Path:
    """Encode and write atomically; returns the path."""
    return write_atomic(path, encode(meta, state), "the checkpoint")


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


def check_compatible(meta: dict, state: dict, learner, where: str) -> None:
    """Refuse a checkpoint whose strategy or architecture differs from ``learner``'s.

    The architecture is read from the saved tensors themselves, not from the metadata. A
    strategy that grows the model (PNN's columns) makes the saved model larger than a fresh
    one, so every tensor the fresh model has must be in the checkpoint with the same shape."""
    strategy = meta.get("strategy")
    saved = strategy.get("name") if isinstance(strategy, dict) else None
    current = learner.strategy.name
    if saved != current:
        raise CheckpointError(
            f"'{where}' was saved by a learner with strategy '{saved}', not '{current}'; load "
            "it with the same strategy (or let Learner.load rebuild it).")
    saved_model = _saved_model(state, where)
    for key, shape in model_signature(learner.model).items():
        tensor = saved_model.get(key)
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(
                f"'{where}' is of another architecture: it has no tensor '{key}'; build the "
                "model the checkpoint was saved with.")
        if list(tensor.shape) != shape:
            raise CheckpointError(
                f"'{where}' is of another architecture: '{key}' has shape "
                f"{tuple(tensor.shape)} there but {tuple(shape)} in this model; build the "
                "model the checkpoint was saved with.")


def _saved_model(state: dict, where: str) -> dict:
    """The saved model weights by name (what the checkpoint's architecture really is)."""
    saved = state.get("model") if isinstance(state, dict) else None
    if not isinstance(saved, dict):
        raise CheckpointError(f"'{where}' holds no model weights; it is not a learner's "
                              "checkpoint.")
    return saved


def restore(learner, meta: dict, state: dict, where: str) -> None:
    """Check and load ``state`` into ``learner``; any failure is a CheckpointError."""
    check_compatible(meta, state, learner, where)
    try:
        learner.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError,
            IndexError) as error:
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
        from forgetless import distributed

        meta = {**meta, "run_id": self.run_id}
        path = save_learner(learner, self.folder / f"task-{len(learner.tasks_learned):03d}"
                            f"{SUFFIX}", **meta)
        if distributed.world().is_main:
            for old in self.files()[self.keep:]:
                old.unlink(missing_ok=True)
        distributed.barrier()
        return path

    def owners(self) -> dict[Path, str | None]:
        """Each checkpoint file and the run id it belongs to (None: it cannot be read)."""
        found = {}
        for path in self.files():
            try:
                found[path] = load_checkpoint(path)[0].get("run_id")
            except ForgetlessError:
                found[path] = None
        return found

    def claim(self, overwrite: bool = False) -> None:
        """Before a run starts afresh here: refuse a folder that holds another run's
        checkpoints (this run's would delete them as it prunes), or with ``overwrite`` delete
        them first."""
        owners = self.owners()
        others = [path for path, owner in owners.items() if owner != self.run_id]
        if not others:
            return
        if overwrite:
            from forgetless import distributed

            if distributed.world().is_main:  # every rank read the folder; one deletes
                for path in others:
                    path.unlink(missing_ok=True)
            distributed.barrier()
            return
        names = sorted({owners[p] or f"unreadable {p.name}" for p in others})
        raise CheckpointError(
            f"--checkpoint-dir '{self.folder}' holds checkpoints of another run "
            f"({', '.join(names)}), and this command configures run {self.run_id}; to continue "
            "that run, repeat its options with --resume; otherwise give another "
            "--checkpoint-dir, or --overwrite to delete them.")

    def latest(self) -> tuple[Path, dict, dict] | None:
        """The newest checkpoint that loads and belongs to this run, or None when there is none.

        A damaged newest file (possible only if the disk itself failed) falls back to the one
        before, with a warning that names it; a checkpoint of another run is an error, not
        something to skip."""
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
            for problem in problems:
                warnings.warn(f"skipped a newer checkpoint that cannot be read, resuming from "
                              f"'{path}' instead: {problem}", ForgetlessWarning, stacklevel=2)
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
    """``learner.save(path)``: its state and how to rebuild it, written atomically. In a process
    group every rank must call it: each builds the state (a sharded buffer is gathered from all
    of them), rank 0 alone writes it, and the others wait until the file is there."""
    from forgetless import distributed

    state, written = learner.state_dict(), Path(path)
    if distributed.world().is_main:
        written = save_checkpoint(path, {**learner_meta(learner), **meta}, state)
    distributed.barrier()
    return written


def _built(what: str, where: str, build):
    """``build()``, with a refusal of the checkpoint's settings as a CheckpointError."""
    try:
        return build()
    except (ForgetlessError, TypeError, ValueError, RuntimeError) as error:
        # a constructor's own refusal of a damaged option (hidden=[-1]) is the file's fault too
        reason = (str(error) or type(error).__name__).splitlines()[0]
        raise CheckpointError(f"'{where}' asks for a {what} this forgetless refuses: "
                              f"{reason}") from None


def _rebuild_model(meta: dict, state: dict, where: str):
    """The model the metadata describes, built first on the meta device (no memory) and
    compared with the saved weights, so a size the file did not save is never allocated."""
    spec = meta.get("model")
    if not spec:
        raise CheckpointError(
            f"'{where}' does not say how to build its model (it was not made by build_model); "
            "pass the same architecture: Learner.load(path, model=...).")
    from forgetless.models import build_model

    def build():
        return build_model(spec["name"], tuple(spec["input_shape"]), spec["num_outputs"],
                           **spec["options"])

    with torch.device("meta"):
        shapes_only = _built("model", where, build)
    wanted = sum(t.numel() for t in shapes_only.state_dict().values())
    saved = sum(t.numel() for t in _saved_model(state, where).values()
                if isinstance(t, torch.Tensor))
    if wanted > saved:  # a strategy may wrap or grow the model, never shrink it
        raise CheckpointError(
            f"'{where}' describes a model of {wanted:,} values but holds weights for only "
            f"{saved:,}; the file is damaged: use an earlier checkpoint or a good copy.")
    return build()


def _rebuild_strategy(meta: dict, where: str):
    parts = meta["strategy"]["parts"]
    if not parts or not all(p["hyperparameters"] is not None for p in parts):
        raise CheckpointError(
            f"'{where}' holds a strategy that cannot be rebuilt by name (unregistered, or with "
            "hyper-parameters that are not plain values); pass it: "
            "Learner.load(path, strategy=...).")
    from forgetless.strategies import build_strategy

    settings = {f"{p['name']}.{k}": v for p in parts for k, v in p["hyperparameters"].items()}
    return _built("strategy", where,
                  lambda: build_strategy("+".join(p["name"] for p in parts), settings))


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
    if not isinstance(meta, dict) or meta.get("kind") != "learner":
        raise CheckpointError(f"'{where}' is a checkpoint but not of a learner.")
    check_learner_meta(meta, state, where)
    if model is None:
        model = _rebuild_model(meta, state, where)
    if strategy is None:
        strategy = _rebuild_strategy(meta, where)
    elif isinstance(strategy, str):
        from forgetless.strategies import build_strategy

        strategy = build_strategy(strategy)
    settings = dict(meta["learner"])
    settings["optimizer"] = settings.pop("optimizer_name")
    learner = _built("learner", where, lambda: cls(model, strategy, device=device,
                                                   progress=progress, **settings))
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
