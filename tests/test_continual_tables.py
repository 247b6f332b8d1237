"""min-ACC and WC-ACC in the comparison tables and `forgetless show`: shown (recomputed from
the record, mean ± sd over seeds) where runs have a continual-evaluation record, absent where
none has one."""

import csv
import io
import json
import re

import pytest

from fake_runs import fake_run, run_cli, with_continual
from forgetless.report import render
from forgetless.results.summary import (
    CSV_COLUMNS,
    HEADERS,
    format_text,
    group_runs,
    to_csv,
    to_markdown,
)


def two_tasks(task_0_at_the_end: float, task_1_at_the_end: float) -> dict:
    """Two tasks of 10 steps, evaluated at steps 0, 10 and 20: min-ACC is task 0's accuracy at
    step 20 (the only evaluation after its end), WC-ACC = (that + task 1's at 20) / 2."""
    return {"every": 10, "eval_samples": 50, "steps": [0, 10, 20],
            "accuracy": [[0.1, None], [0.9, 0.1], [task_0_at_the_end, task_1_at_the_end]],
            "task_starts": [0, 10], "task_ends": [10, 20], "seconds": 0.5,
            "train_seconds": 5.0}


@pytest.fixture
def runs():
    """ER evaluated every few steps (seed 0: min-ACC 0.40, WC-ACC 0.60; seed 1: 0.50, 0.75);
    naive without a record."""
    er = [with_continual(fake_run("er", "class", seed, family="replay", tasks=2), record)
          for seed, record in ((0, two_tasks(0.4, 0.8)), (1, two_tasks(0.5, 1.0)))]
    er[1].continual["metrics"]["min_acc"] = 0.99  # a stale stored value: recomputed, not shown
    return er + [fake_run("naive", "class", seed, tasks=2) for seed in (0, 1)]


def table_rows(text: str) -> dict[str, dict[str, str]]:
    """The rows of the first plain-text table in ``text`` (every family named: one row per
    family here), by strategy and header; cells are two or more spaces apart."""
    lines = text.splitlines()
    headers = re.split(r"\s{2,}", lines[1].strip())
    rows = {}
    for line in lines[3:]:
        if not line.strip():
            break
        cells = dict(zip(headers, re.split(r"\s{2,}", line.strip()), strict=True))
        rows[cells["strategy"].split()[0]] = cells
    return rows


def test_the_tables_show_min_acc_and_wc_acc_as_mean_and_sd_over_seeds(runs):
    groups = group_runs(runs)
    wide = format_text(groups, wide=True, width=100)
    headers = HEADERS[:7] + ["min-ACC %", "WC-ACC %"] + HEADERS[7:]  # after FWT
    assert re.split(r"\s{2,}", wide.splitlines()[1].strip()) == headers
    rows = table_rows(wide)
    er, naive = rows["er"], rows["naive"]
    # min-ACC: mean of 0.40 and 0.50 = 45.0, sd sqrt(2 * 0.05^2) = 7.1; WC-ACC: mean of 0.60
    # and 0.75 = 67.5, sd sqrt(2 * 0.075^2) = 10.6.
    assert (er["min-ACC %"], er["WC-ACC %"]) == ("45.0 ± 7.1", "67.5 ± 10.6")
    assert (naive["min-ACC %"], naive["WC-ACC %"]) == ("–", "–")  # no record: undefined
    assert "De Lange" in wide  # the note says what the new columns are
    narrow = table_rows(format_text(groups, width=100))
    assert (narrow["er"]["min-ACC %"], narrow["er"]["WC-ACC %"]) == ("45.0 ± 7.1", "67.5 ± 10.6")
    markdown = to_markdown(groups)
    assert "| min-ACC % | WC-ACC % |" in markdown and "| 45.0 ± 7.1 | 67.5 ± 10.6 |" in markdown
    assert markdown.splitlines()[3].count("--:") == len(headers) - 4  # last two left-aligned
    rows = {r["strategy"]: r for r in csv.DictReader(io.StringIO(to_csv(groups)))}
    assert float(rows["er"]["min_acc_mean"]) == pytest.approx(0.45)
    assert float(rows["er"]["wc_acc_mean"]) == pytest.approx(0.675)
    assert rows["naive"]["min_acc_mean"] == "" and rows["naive"]["acc_mean"] != ""


def test_the_report_table_has_the_columns_too(runs):
    page = render(runs)
    assert "<th title='sort by min-ACC %'>min-ACC %</th>" in page
    assert "<td>45.0 ± 7.1</td><td>67.5 ± 10.6</td>" in page
    assert "data-min-acc='0.45" in page


def test_runs_without_a_record_show_no_continual_column(runs):
    plain = [r for r in runs if not r.continual]
    groups = group_runs(plain)
    for text in (format_text(groups, width=100), format_text(groups, wide=True, width=100),
                 to_markdown(groups), render(plain)):
        assert "min-ACC" not in text and "WC-ACC" not in text and "De Lange" not in text
    assert to_csv(groups).splitlines()[0].split(",") == CSV_COLUMNS
    assert "stability gap" not in render(plain)


def test_show_prints_the_worst_case_metrics_and_the_dips(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    path = tmp_path / "er.json"
    path.write_text(runs[0].to_json())
    status, out, err = run_cli(capsys, "show", str(path))
    assert status == 0, err
    lines = out.splitlines()
    # Seed 0: min-ACC 0.40; WC-ACC (0.40 + 0.80) / 2 = 0.60; task 1 falls from 0.90 (step 10)
    # to 0.40 (step 20, 10 steps after the switch) and is not half back within task 2.
    assert "min-ACC (worst on old tasks)       40.00 %" in lines
    assert "WC-ACC (worst case)                60.00 %" in lines
    assert "mean dip at a task switch          50.00 %" in lines
    dip = lines[lines.index(next(ln for ln in lines if ln.startswith("new task"))) + 2]
    assert dip.split() == ["task", "2", "task", "1", "90.0", "40.0", "50.0", "10", "–"]
    assert ("continual evaluation every 10 steps on 50 test samples per task: 3 evaluations, "
            "0.50 s (10% of the training time).") in " ".join(out.split())
    assert max(len(ln) for ln in lines) <= 80
    path.write_text(runs[-1].to_json())
    status, out, _ = run_cli(capsys, "show", str(path))
    assert status == 0 and "min-ACC" not in out and "continual evaluation" not in out
    assert json.loads(runs[-1].to_json())["continual"] == {}
