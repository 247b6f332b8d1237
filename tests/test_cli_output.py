"""What a user reads: tables that fit the terminal, a winner per scenario, a dry run that
creates nothing, one store for every run, and errors in the command line's words."""

import re

import pytest

from fake_runs import TINY_ARGS, fake_run, run_cli
from forgetless.results.store import RunStore
from forgetless.results.summary import TIED, WINNER, format_text, group_runs
from forgetless.strategies import STRATEGIES


def widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """A real, tiny comparison (3 strategies, 2 seeds, class-incremental) in a store."""
    import contextlib
    import io

    from forgetless.cli import main

    store = tmp_path_factory.mktemp("compared") / "runs.db"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(["compare", "--strategies", "ewc,er", "--scenario", "class", "--seeds", "2",
                  "--jobs", "1", "--no-report", "--store", str(store), *TINY_ARGS])
        except SystemExit as exit_:
            assert exit_.code in (0, None)
    return store


@pytest.mark.parametrize("command", [["list"], ["runs"], ["runs", "--table"], ["compare"],
                                     ["show"]])
def test_every_line_fits_100_columns_and_80_changes_the_layout(command, compared, capsys,
                                                               monkeypatch):
    if command == ["show"]:
        with RunStore(compared) as db:
            command = ["show", sorted(db.run_ids())[0][:8]]
    args = command + ([] if command == ["list"] else ["--store", str(compared)])
    if command == ["compare"]:  # every run is stored: it re-tables without training
        args += ["--strategies", "ewc,er", "--scenario", "class", "--seeds", "2", "--jobs", "1",
                 "--no-report", *TINY_ARGS]
    outputs = {}
    for columns in (100, 80):
        monkeypatch.setenv("COLUMNS", str(columns))
        status, out, err = run_cli(capsys, *args)
        assert status == 0, err
        assert widest(out) <= columns and widest(err) <= columns, (out, err)
        outputs[columns] = out
    assert outputs[100] != outputs[80]  # the width is read, not assumed


def test_wide_shows_every_column_with_full_headers(compared, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    status, out, _ = run_cli(capsys, "runs", "--store", str(compared), "--table", "--wide")
    assert status == 0
    for header in ("forgetting %", "peak memory", "strategy holds", "params added", "BWT %"):
        assert header in out
    assert widest(out.split("\n\n")[0]) > 80  # --wide does not fit itself to the terminal
    status, out, _ = run_cli(capsys, "runs", "--store", str(compared), "--table")
    assert "peak memory" not in out and "--wide shows all" in out


def test_list_has_no_docstring_markup(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    status, out, _ = run_cli(capsys, "list")
    assert status == 0 and "``" not in out and ":class:" not in out
    assert re.search(r"^generative-replay\s+replay\s+all\s+no\s+no\s+\S", out, re.M)


def _group(accs: dict[str, tuple[float, float]]):
    """One class-incremental group; strategy -> ACC of seed 0 and seed 1."""
    runs = [fake_run(name, seed=seed, acc=acc[seed],
                     family="baseline" if name in ("naive", "joint") else "replay")
            for name, acc in accs.items() for seed in (0, 1)]
    return group_runs(runs)


def test_the_winner_is_marked_and_a_difference_inside_the_seeds_spread_is_a_tie():
    groups = _group({"naive": (0.18, 0.20), "joint": (0.97, 0.97), "er": (0.80, 0.86),
                     "derpp": (0.84, 0.84), "agem": (0.60, 0.62)})
    marks = {r.strategy: r.mark for r in groups[0].rows}
    # derpp's mean (84.0) is the best; er (83.0, sd 4.2) is within the spread; joint is a bound.
    assert marks == {"derpp": WINNER, "er": TIED, "agem": "", "naive": "", "joint": ""}
    text = format_text(groups, width=100)
    assert "derpp *" in text and "er ~" in text and "not a win" in text
    # A clear gap and tight seeds: a single winner, nobody tied.
    clear = _group({"naive": (0.18, 0.20), "er": (0.80, 0.81), "derpp": (0.85, 0.86)})
    assert {r.strategy: r.mark for r in clear[0].rows} == {"derpp": WINNER, "er": "",
                                                             "naive": ""}


def test_dry_run_prints_the_plan_and_a_time_estimate_and_creates_nothing(tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "100")
    status, out, err = run_cli(capsys, "compare", "--dry-run")
    assert status == 0, err
    # every registered strategy in each scenario it serves, 3 seeds (counted, not typed: a new
    # strategy file changes the plan)
    served = [s for _, cls in STRATEGIES.items() for s in cls.scenarios
              if (not cls.needs_task_id or s == "task") and not cls.meant_for_pretrained]
    assert out.startswith(f"plan: {3 * len(served)} runs on split mnist")
    assert re.search(rf"class-incremental: {served.count('class')} strategies x 3 seeds: "
                     r".*generative-replay", out, re.S)
    assert re.search(r"on 2 worker\(s\): about \d+:\d\d on an idle machine", out)
    assert list(tmp_path.iterdir()) == []  # no store, no report


def test_a_run_is_stored_and_show_finds_it_by_a_prefix(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(capsys, "run", "--strategy", "EWC", "--scenario", "Class-IL",
                               "--quiet", *TINY_ARGS)
    assert status == 0, err
    run_id = re.search(r"run id (\w+), stored in forgetless-runs.db", out).group(1)
    with RunStore("forgetless-runs.db") as db:
        stored = db.get(run_id)
    assert stored.config["strategy"] == "ewc" and stored.config["scenario"] == "class"
    status, shown, err = run_cli(capsys, "show", run_id[:6])
    assert status == 0, err
    assert shown.startswith(f"run {run_id}: ewc on split digits, class-incremental")
    status, listed, _ = run_cli(capsys, "runs", "--strategy", "Ewc")
    assert run_id[:10] in listed and "1 run(s)" in listed
    status, _, err = run_cli(capsys, "report", "-o", "r.html")
    assert status == 0 and "ewc" in (tmp_path / "r.html").read_text(), err
    status, advice, err = run_cli(capsys, "advise", "--no-run")
    assert status == 0, err
    assert "measured on: class-incremental split digits" in advice
    assert "1. ewc (regularization): ACC" in advice  # the one stored run, no naive to compare
    assert "naive fine-tuning is not measured on this protocol" in advice
    # The same run typed in registered spelling has the same id: names are case-insensitive.
    status, again, _ = run_cli(capsys, "run", "--strategy", "ewc", "--quiet", "--no-store",
                               *TINY_ARGS)
    assert f"run id {run_id}" in again
    with RunStore("forgetless-runs.db") as db:
        assert len(db) == 1


def test_a_text_benchmark_is_named_without_the_image_source_it_never_reads(tmp_path, capsys):
    store = tmp_path / "runs.db"
    record = fake_run("ncm", benchmark="topics", tasks=3)  # source keeps its default, mnist
    with RunStore(store) as db:
        db.put(record)
    _, listed, _ = run_cli(capsys, "runs", "--store", str(store))
    row = next(line for line in listed.splitlines() if line.startswith(record.run_id[:10]))
    assert " topics " in row and "mnist" not in row
    _, shown, _ = run_cli(capsys, "show", record.run_id[:8], "--store", str(store))
    assert shown.startswith(f"run {record.run_id}: ncm on topics, class-incremental")


def test_an_ambiguous_prefix_lists_the_matches(tmp_path, capsys):
    runs = [fake_run("naive", seed=s) for s in range(40)]
    store = tmp_path / "runs.db"
    with RunStore(store) as db:
        for run in runs:
            db.put(run)
    prefix = next(r.run_id[0] for r in runs
                  if sum(o.run_id[0] == r.run_id[0] for o in runs) > 1)
    status, _, err = run_cli(capsys, "show", prefix, "--store", str(store))
    assert status == 2 and "several run ids" in err and "give more characters" in err
    assert sum(r.run_id[:12] in err for r in runs if r.run_id.startswith(prefix)) >= 2


@pytest.mark.parametrize("args, message", [
    (["runs", "--scenario", "klass"], "unknown scenario 'klass'. Did you mean 'class'?"),
    (["runs", "--strategy", "ewcc"], "unknown strategy 'ewcc'. Did you mean 'ewc'?"),
    (["runs", "--family", "replays"], "Did you mean 'replay'?"),
    (["report", "--benchmark", "splitt"], "Did you mean 'split'?"),
    (["run", "--strategy", "ewcc"], "Known strategies: "),
    (["run", "--source", "MNST"], "Did you mean 'mnist'?"),
    (["run", "--model", "MPL"], "Did you mean 'mlp'?"),
    (["run", "--source", "idx"], "give --data-dir DIR"),
])
def test_filters_and_names_are_checked_with_a_suggestion(args, message, tmp_path, capsys):
    store = tmp_path / "runs.db"
    with RunStore(store) as db:
        db.put(fake_run("naive"))
    status, out, err = run_cli(capsys, *args, "--store", str(store))
    assert status == 2 and message in err, err
    assert "data_dir=" not in err and "Traceback" not in err


def test_a_bad_option_fails_before_the_run_header(capsys):
    status, _, err = run_cli(capsys, "run", "--strategy", "foo", *TINY_ARGS)
    assert status == 2
    assert err.startswith("error: unknown strategy 'foo'") and " on split " not in err
    status, _, err = run_cli(capsys, "run", "--strategy", "naive", "--no-store", *TINY_ARGS)
    assert status == 0 and err.startswith("naive on split digits, class-incremental, 5 tasks")
