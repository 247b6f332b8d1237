"""The SQLite results store: round trips, filters, refusals, and concurrent writers."""

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fake_runs import fake_run
from forgetless.errors import ConfigurationError
from forgetless.results.store import RunStore, protocol_key, variant_key

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"


def test_a_run_round_trips_exactly_and_filters_select_it(tmp_path):
    runs = [fake_run("naive", "class", 0), fake_run("naive", "task", 1),
            fake_run("er", "class", 0, family="replay", stores_raw_data=True,
                     strategy_bytes=123_456, params={"buffer_size": 200})]
    with RunStore(tmp_path / "runs.db") as store:
        for run in runs:
            assert store.put(run)
        assert len(store) == 3 and runs[2].run_id in store and "nope" not in store
        assert store.get(runs[2].run_id).to_dict() == runs[2].to_dict()
        assert store.get(runs[2].run_id[:6]).run_id == runs[2].run_id  # a prefix is enough
        assert [r.run_id for r in store.select(strategy="naive")] == [runs[0].run_id,
                                                                     runs[1].run_id]
        assert [r.run_id for r in store.select(scenario="class", family="replay")] == [
            runs[2].run_id]
        assert {r.run_id for r in store.select(strategy=["er", "naive"], seed=0)} == {
            runs[0].run_id, runs[2].run_id}
        assert store.select(strategy="ewc") == []
        many = store.get_many([runs[1].run_id, "absent", runs[0].run_id])
        assert set(many) == {runs[0].run_id, runs[1].run_id}
        assert many[runs[1].run_id].to_dict() == runs[1].to_dict()
        row = store.summaries(strategy="er")[0]
        assert row["acc"] == runs[2].metrics["acc"] and row["strategy_bytes"] == 123_456
        assert row["stores_raw_data"] == 1 and row["protocol"] == protocol_key(runs[2].config)
        mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_put_without_replace_keeps_the_first_record(tmp_path):
    first = fake_run("naive", acc=0.2)
    changed = fake_run("naive", acc=0.9)
    assert first.run_id == changed.run_id  # same config, different numbers
    with RunStore(tmp_path / "runs.db") as store:
        store.put(first)
        assert not store.put(changed, replace=False)
        assert store.get(first.run_id).metrics == first.metrics
        store.put(changed)
        assert store.get(first.run_id).metrics == changed.metrics
        assert len(store) == 1


def test_keys_group_seeds_into_variants_and_strategies_into_protocols():
    a0, a1 = fake_run("ewc", seed=0, params={"lam": 1}), fake_run("ewc", seed=1, params={"lam": 1})
    b0 = fake_run("ewc", seed=0, params={"lam": 9})
    other = fake_run("ewc", seed=0, params={"lam": 1}, epochs=3)
    assert variant_key(a0.config) == variant_key(a1.config) != variant_key(b0.config)
    assert protocol_key(a0.config) == protocol_key(b0.config) == protocol_key(
        fake_run("er", scenario="task").config)
    assert protocol_key(other.config) != protocol_key(a0.config)


def test_files_that_are_not_stores_are_refused_clearly(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("these are not the runs you are looking for" * 100)
    with pytest.raises(ConfigurationError, match="not a forgetless results store"):
        RunStore(text)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE things (x)")
    with pytest.raises(ConfigurationError, match="not a forgetless store"):
        RunStore(other)
    with pytest.raises(ConfigurationError, match="folder"):
        RunStore(tmp_path)
    with RunStore(tmp_path / "ok.db") as store:
        with pytest.raises(ConfigurationError, match="no run"):
            store.get("0123")
        with pytest.raises(ConfigurationError, match="cannot filter"):
            store.select(colour="blue")


WRITER = textwrap.dedent("""
    import sys
    sys.path[:0] = [{src!r}, {tests!r}]
    from fake_runs import fake_run
    from forgetless.results.store import RunStore
    store = RunStore(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    for seed in range(200):
        store.put(fake_run("writer" + sys.argv[2], seed=seed))
    print("done", flush=True)
""")


def test_two_processes_writing_200_runs_each_lose_nothing(tmp_path):
    path = tmp_path / "runs.db"
    RunStore(path).close()
    script = WRITER.format(src=str(SRC), tests=str(TESTS))
    writers = [subprocess.Popen([sys.executable, "-c", script, str(path), str(k)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for k in range(2)]
    for w in writers:
        assert w.stdout.readline().strip() == "ready"
    for w in writers:
        w.stdin.write("go\n")
        w.stdin.flush()
    for w in writers:
        out, _ = w.communicate(timeout=120)
        assert w.returncode == 0 and out.strip() == "done"
    with RunStore(path) as store:
        assert len(store) == 400
        for k in range(2):
            stored = store.select(strategy=f"writer{k}")
            assert sorted(r.config["seed"] for r in stored) == list(range(200))
            assert all(r.to_dict() == fake_run(f"writer{k}", seed=r.config["seed"]).to_dict()
                       for r in stored[:5])
    # The rows are plain SQLite that any tool can read.
    with sqlite3.connect(path) as db:
        record = json.loads(db.execute("SELECT record FROM runs LIMIT 1").fetchone()[0])
    assert "accuracy_matrix" in record


def test_a_plan_of_thousands_of_runs_reads_back_in_plan_order(tmp_path):
    """A large sweep's plan: 1,500 planned ids (more than SQLite allows in one expression),
    three of them stored, come back in plan order."""
    from forgetless.experiments.compare import Outcome, stored_results

    runs = [fake_run("naive", "class", seed) for seed in range(3)]
    planned = [f"{i:016x}" for i in range(1500)]
    planned[10], planned[700], planned[1400] = runs[2].run_id, runs[0].run_id, runs[1].run_id
    with RunStore(tmp_path / "runs.db") as store:
        for run in runs:
            store.put(run)
        found = stored_results(store, Outcome(planned=planned + [runs[0].run_id]))
    assert [r.run_id for r in found] == [runs[2].run_id, runs[0].run_id, runs[1].run_id]


def test_the_stored_runs_become_a_pandas_frame(tmp_path):
    pd = pytest.importorskip("pandas")
    from forgetless.results import to_frame

    runs = [fake_run("naive", seed=s, acc=0.2 + 0.01 * s) for s in range(2)] + [
        fake_run("ewc", family="regularization", acc=0.3, params={"lam": 10.0}),
        fake_run("er", scenario="task", family="replay", acc=0.9, stores_raw_data=True)]
    path = tmp_path / "runs.db"
    with RunStore(path) as store:
        for run in runs:
            store.put(run)
        frame = store.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 4
    by_id = frame.set_index("run_id")
    for run in runs:
        assert by_id.loc[run.run_id, "acc"] == pytest.approx(run.metrics["acc"])
        assert by_id.loc[run.run_id, "accuracy_matrix"] == run.accuracy_matrix
    assert by_id.loc[runs[2].run_id, "param.ewc.lam"] == 10.0
    assert frame["stores_raw_data"].dtype == bool and frame["stores_raw_data"].sum() == 1
    # Filtering and grouping as a notebook would, and the module-level helper.
    naive = to_frame(path, strategy="naive")
    assert list(naive["seed"]) == [0, 1] and naive["acc"].mean() == pytest.approx(0.205)
    assert set(to_frame(path).groupby("scenario")["strategy"].count().items()) == {
        ("class", 3), ("task", 1)}
    with pytest.raises(ConfigurationError, match="no results store"):
        to_frame(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()
