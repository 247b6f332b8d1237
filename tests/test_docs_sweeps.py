"""docs/sweeps.md's examples run as written: the grid trains the runs the page says, the tuning
example chooses a value from its grid and runs it on the full stream."""

import re
from pathlib import Path

from fake_runs import run_cli
from forgetless.results.store import RunStore

PAGE = Path(__file__).resolve().parents[1] / "docs" / "sweeps.md"


def examples() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)


def test_the_grid_example_trains_six_runs_and_a_second_sweep_trains_none(tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text(examples()[0])
    store = str(tmp_path / "runs.db")
    status, out, err = run_cli(capsys, "sweep", str(grid), "--dry-run")
    assert status == 0, err
    assert "6 runs" in out and not (tmp_path / "runs.db").exists()
    status, out, err = run_cli(capsys, "sweep", str(grid), "--store", store, "--jobs", "1",
                               "--quiet")
    assert status == 0, err
    with RunStore(store) as db:
        runs = db.select()
    assert sorted((r.config["strategy"], r.config["strategy_params"].get("ewc.lam"),
                   r.config["seed"]) for r in runs) == [
        ("ewc", 10, 0), ("ewc", 10, 1), ("ewc", 100, 0), ("ewc", 100, 1),
        ("naive", None, 0), ("naive", None, 1)]
    status, out, err = run_cli(capsys, "sweep", str(grid), "--store", store, "--jobs", "1",
                               "--quiet")
    assert status == 0 and "0 runs trained, 6 already in" in out


def test_the_tuning_example_chooses_from_its_grid_and_runs_the_full_stream(tmp_path, capsys):
    tune = tmp_path / "tune.toml"
    tune.write_text(examples()[1])
    status, out, err = run_cli(capsys, "sweep", str(tune), "--dry-run")
    assert status == 0, err
    assert "tuning runs (first_tasks)" in out and "4 runs" in out
    store = str(tmp_path / "runs.db")
    status, out, err = run_cli(capsys, "sweep", str(tune), "--store", store, "--jobs", "1",
                               "--quiet")
    assert status == 0, err
    chosen = re.search(r"ewc\s+class\s+ewc\.lam=(\d+)",
                       out.split("chosen hyper-parameters")[1])
    assert chosen and chosen.group(1) in ("10", "1000")
    with RunStore(store) as db:
        final = [r for r in db.select() if len(r.accuracy_matrix) == 5]
        tuning = [r for r in db.select() if len(r.accuracy_matrix) == 2]
    assert len(tuning) == 4 and len(final) == 2
    assert {r.config["strategy_params"]["ewc.lam"] for r in final} == {int(chosen.group(1))}
