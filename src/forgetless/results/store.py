"""The results store: every run recorded in one SQLite file, keyed by its run id.

A row holds the whole ``RunResult`` as JSON (accuracy matrix, metrics, costs, resolved config,
environment) plus a few columns copied out of it for filtering and listing. The database runs in
WAL mode with a generous busy timeout, so several processes can write at once without losing a
row; each write is one short ``BEGIN IMMEDIATE`` transaction.

Two derived keys group runs for tables:

- ``protocol``: a hash of the resolved config without the strategy, its hyper-parameters, the
  scenario and the seed -- the benchmark, model and training budget that runs are compared on;
- ``variant``: a hash of the resolved config without the seed -- one table row (its seeds are
  averaged).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from forgetless.config import run_id as config_hash
from forgetless.errors import ConfigurationError, ForgetlessError, StorageError
from forgetless.results.run_result import RunResult
from forgetless.storage import storage_error

#: The default store, in the current directory.
DEFAULT_STORE = "forgetless-runs.db"
STORE_VERSION = 1
#: What a writer waits for another writer's transaction, in seconds.
BUSY_TIMEOUT_S = 120

_COLUMNS = {  # column -> SQL type; every one is filled from the RunResult by ``_row``
    "run_id": "TEXT PRIMARY KEY",
    "created": "TEXT",
    "strategy": "TEXT",
    "family": "TEXT",
    "benchmark": "TEXT",
    "source": "TEXT",
    "scenario": "TEXT",
    "tasks": "INTEGER",
    "seed": "INTEGER",
    "protocol": "TEXT",
    "variant": "TEXT",
    "acc": "REAL",
    "forgetting": "REAL",
    "bwt": "REAL",
    "fwt": "REAL",
    "train_seconds": "REAL",
    "peak_rss_bytes": "INTEGER",
    "strategy_bytes": "INTEGER",
    "parameters_added": "INTEGER",
    "stores_raw_data": "INTEGER",
    "needs_task_id": "INTEGER",
    "record": "TEXT NOT NULL",
}
#: Columns ``select`` filters on.
FILTERS = ("strategy", "family", "benchmark", "source", "scenario", "tasks", "seed", "protocol",
           "variant", "run_id")


#: Config fields ``to_frame`` copies next to the listing columns.
FRAME_CONFIG = ("model", "epochs", "iterations", "batch_size", "lr", "optimizer")


def to_frame(path: str | Path = DEFAULT_STORE, **filters):
    """``forgetless.results.to_frame("forgetless-runs.db", scenario="class")``: the stored runs
    as a pandas DataFrame (see ``RunStore.to_frame``); the store must exist."""
    if not Path(path).is_file():
        raise ConfigurationError(f"no results store at '{path}'; run `forgetless compare` "
                                 "first, or give the store's path.")
    with RunStore(path) as store:
        return store.to_frame(**filters)


def protocol_key(config: dict) -> str:
    """What runs are compared on: the config without strategy, scenario and seed."""
    rest = {k: v for k, v in config.items()
            if k not in ("strategy", "strategy_params", "scenario", "seed")}
    return config_hash(rest)


def variant_key(config: dict) -> str:
    """One strategy with one set of hyper-parameters on one protocol and scenario (any seed)."""
    return config_hash({k: v for k, v in config.items() if k != "seed"})


def _row(result: RunResult) -> dict:
    config, info, costs, metrics = (result.config, result.strategy_info, result.costs,
                                    result.metrics)
    return {
        "run_id": result.run_id,
        "created": result.created,
        "strategy": config.get("strategy"),
        "family": info.get("family"),
        "benchmark": config.get("benchmark"),
        "source": config.get("source"),
        "scenario": config.get("scenario"),
        "tasks": len(result.accuracy_matrix),
        "seed": config.get("seed"),
        "protocol": protocol_key(config),
        "variant": variant_key(config),
        "acc": metrics.get("acc"),
        "forgetting": metrics.get("forgetting"),
        "bwt": metrics.get("bwt"),
        "fwt": metrics.get("fwt"),
        "train_seconds": costs.get("train_seconds_total"),
        "peak_rss_bytes": costs.get("peak_rss_bytes"),
        "strategy_bytes": costs.get("strategy_bytes"),
        "parameters_added": costs.get("parameters_added"),
        "stores_raw_data": int(bool(info.get("stores_raw_data"))),
        "needs_task_id": int(bool(info.get("needs_task_id"))),
        "record": result.to_json(),
    }


class RunStore:
    """A SQLite file of run records. ``RunStore("runs.db")`` creates it when missing.

    Safe to use from several processes at once (each opens its own ``RunStore``).
    ``readonly=True`` only reads, so a store on read-only media (or one this user may not
    write) can still be listed and reported."""

    def __init__(self, path: str | Path = DEFAULT_STORE, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if self.path.is_dir():
            raise ConfigurationError(f"the store '{self.path}' is a folder; give a file name "
                                     "such as forgetless-runs.db.")
        try:
            self._db = self._open_readonly() if readonly else self._open()
        except sqlite3.DatabaseError as error:
            raise self._error(error) from None
        try:
            self._check()
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise storage_error(error, self.path, "the store") from None
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            db.close()
            raise
        return db

    def _open_readonly(self) -> sqlite3.Connection:
        """``mode=ro``; where even the WAL's shared-memory file cannot be created (read-only
        media), ``immutable=1``, which reads the file as it is, without locks."""
        uri = self.path.resolve().as_uri()
        for flags in ("mode=ro", "immutable=1"):
            db = sqlite3.connect(f"{uri}?{flags}", uri=True, timeout=BUSY_TIMEOUT_S,
                                 isolation_level=None)
            try:
                db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return db
            except sqlite3.OperationalError as error:
                db.close()
                if getattr(error, "sqlite_errorname", "") != "SQLITE_CANTOPEN":
                    raise
        raise sqlite3.OperationalError(f"cannot open '{self.path}' even as immutable")

    def _error(self, error: sqlite3.DatabaseError) -> ForgetlessError:
        """A SQLite error as one sentence: a disk problem (full, read-only, unopenable) says
        that stored runs are intact and how to go on; anything else is not a store."""
        name = getattr(error, "sqlite_errorname", "")
        if name.startswith("SQLITE_FULL"):
            return StorageError(
                f"the disk holding the store '{self.path}' is full; the runs already stored "
                "are intact: free some space (or give another --store) and run the same "
                "command again to continue.")
        if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM",
                            "SQLITE_AUTH")):
            return StorageError(
                f"cannot write the store '{self.path}' ({error}): it is on read-only media or "
                "not yours to write; give a writable --store (`forgetless runs` and "
                "`forgetless report` can still read this one).")
        if name.startswith("SQLITE_IOERR"):
            return StorageError(f"the disk failed while writing the store '{self.path}' "
                                f"({error}); check the disk, or give another --store.")
        return ConfigurationError(f"'{self.path}' is not a forgetless results store ({error}); "
                                  "give another --store file.")

    def _check(self) -> None:
        """Create the table in a new store; refuse a SQLite file of another kind."""
        if self.readonly:
            try:
                self._check_version()
            except sqlite3.DatabaseError as error:
                raise self._error(error) from None
            return
        with self._transaction():
            if not self._check_version():
                columns = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS.items())
                self._db.execute(f"CREATE TABLE runs ({columns})")
                for column in ("strategy", "scenario", "protocol", "variant"):
                    self._db.execute(f"CREATE INDEX runs_{column} ON runs ({column})")
                self._db.execute(f"PRAGMA user_version = {STORE_VERSION}")

    def _check_version(self) -> bool:
        """Whether the file holds a store of this version (False: an empty SQLite file)."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 and not tables and not self.readonly:
            return False
        if version != STORE_VERSION or "runs" not in tables:
            raise ConfigurationError(
                f"'{self.path}' is a SQLite file but not a forgetless store of version "
                f"{STORE_VERSION} (it has version {version}); give another --store file.")
        return True

    @contextmanager
    def _transaction(self):
        """One ``BEGIN IMMEDIATE`` transaction: all of it is written, or none (a full disk
        rolls it back and leaves the runs already stored as they were)."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite may already have rolled it back
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise
        except sqlite3.DatabaseError as error:
            raise self._error(error) from None

    # ------------------------------------------------------------------ writing
    def put(self, result: RunResult, replace: bool = True) -> bool:
        """Record ``result``; with ``replace=False`` an existing run id is kept. Returns whether
        the row was written."""
        row = _row(result)
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._transaction():
            cursor = self._db.execute(f"{verb} INTO runs ({names}) VALUES ({marks})",
                                      list(row.values()))
        return cursor.rowcount > 0

    def delete(self, run_ids: Iterable[str]) -> int:
        ids = list(run_ids)
        with self._transaction():
            cursor = self._db.executemany("DELETE FROM runs WHERE run_id = ?",
                                          [(i,) for i in ids])
        return cursor.rowcount

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def __contains__(self, run_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() \
            is not None

    def run_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT run_id FROM runs")}

    def distinct(self, column: str) -> set:
        """The values a filter column holds, e.g. ``distinct("strategy")``."""
        if column not in FILTERS:
            raise ConfigurationError(f"cannot list '{column}'; columns: {', '.join(FILTERS)}.")
        return {r[0] for r in self._db.execute(f"SELECT DISTINCT {column} FROM runs")}

    def get(self, run_id: str) -> RunResult:
        """One run by id (a unique prefix is enough); an ambiguous prefix lists its matches."""
        rows = self._db.execute("SELECT run_id, strategy, scenario, seed, record FROM runs "
                                "WHERE run_id LIKE ? ESCAPE '\\' ORDER BY run_id LIMIT 6",
                                (_escape_like(run_id) + "%",)).fetchall()
        if not rows:
            raise ConfigurationError(f"no run in '{self.path}' has an id starting with "
                                     f"'{run_id}'; `forgetless runs` lists the ids.")
        if len(rows) > 1:
            shown = "; ".join(f"{r[0][:12]} ({r[1]} {r[2]} seed {r[3]})" for r in rows[:5])
            more = ", and more" if len(rows) > 5 else ""
            raise ConfigurationError(f"'{run_id}' is the start of several run ids in "
                                     f"'{self.path}': {shown}{more}; give more characters.")
        return RunResult.from_dict(json.loads(rows[0][4]))

    def get_many(self, run_ids: Iterable[str]) -> dict[str, RunResult]:
        """The stored runs among ``run_ids`` (full ids), by id; missing ones are left out."""
        ids, found = list(dict.fromkeys(run_ids)), {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self._db.execute(f"SELECT run_id, record FROM runs WHERE run_id IN "
                                    f"({', '.join('?' for _ in chunk)})", chunk)
            found.update((rid, RunResult.from_dict(json.loads(record))) for rid, record in rows)
        return found

    def _where(self, filters: dict) -> tuple[str, list]:
        clauses, values = [], []
        for key, wanted in filters.items():
            if wanted is None or wanted == () or wanted == []:
                continue
            if key not in FILTERS:
                raise ConfigurationError(f"cannot filter runs by '{key}'; filters: "
                                         f"{', '.join(FILTERS)}.")
            wanted = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) \
                else [wanted]
            if key in ("run_id", "protocol", "variant"):  # ids: prefixes are enough
                clauses.append("(" + " OR ".join(f"{key} LIKE ? ESCAPE '\\'"
                                                 for _ in wanted) + ")")
                values.extend(_escape_like(str(w)) + "%" for w in wanted)
            else:
                clauses.append(f"{key} IN ({', '.join('?' for _ in wanted)})")
                values.extend(wanted)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", values

    def select(self, **filters) -> list[RunResult]:
        """Stored runs matching every filter (a value or a list of accepted values), oldest
        first. ``select(strategy="ewc", scenario=["task", "class"])``."""
        where, values = self._where(filters)
        rows = self._db.execute(f"SELECT record FROM runs{where} ORDER BY created, run_id",
                                values).fetchall()
        return [RunResult.from_dict(json.loads(r[0])) for r in rows]

    def summaries(self, **filters) -> list[dict]:
        """The listing columns (no record) of the matching runs, oldest first."""
        where, values = self._where(filters)
        names = [c for c in _COLUMNS if c != "record"]
        rows = self._db.execute(f"SELECT {', '.join(names)} FROM runs{where} "
                                "ORDER BY created, run_id", values).fetchall()
        return [dict(zip(names, r, strict=True)) for r in rows]

    def to_frame(self, **filters):
        """The matching runs as a pandas DataFrame, one row per run, oldest first: the listing
        columns (run id, strategy, family, scenario, ACC, forgetting, costs, ...), the training
        budget from the config, each hyper-parameter as ``param.<strategy>.<name>``, and the
        accuracy matrix. Needs pandas: ``pip install "forgetless[pandas]"``."""
        try:
            import pandas as pd
        except ModuleNotFoundError:
            raise ConfigurationError('to_frame needs pandas: pip install "forgetless[pandas]".') \
                from None
        rows = []
        for run in self.select(**filters):
            row = {k: v for k, v in _row(run).items() if k != "record"}
            config = run.config
            row.update({k: config.get(k) for k in FRAME_CONFIG})
            row.update({f"param.{k}": v for k, v in config.get("strategy_params", {}).items()})
            row["accuracy_matrix"] = run.accuracy_matrix
            rows.append(row)
        frame = pd.DataFrame(rows)
        for column in ("stores_raw_data", "needs_task_id"):
            if column in frame:
                frame[column] = frame[column].astype(bool)
        return frame

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
