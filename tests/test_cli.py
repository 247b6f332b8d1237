"""The `forgetless` command as a user runs it: in a subprocess, with its exit codes."""

import json
import re
import subprocess
import sys

import pytest

FAST = ["--source", "digits", "--epochs", "1", "--quiet"]


def forgetless(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "forgetless.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_run_prints_the_forgetting_and_saves_a_record(tmp_path):
    out = tmp_path / "run.json"
    result = forgetless("run", "--benchmark", "split", "--scenario", "class", "--strategy",
                        "naive", "--source", "digits", "--epochs", "3", "--quiet",
                        "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "after   task 1" in result.stdout and "ACC (final average accuracy)" in result.stdout
    record = json.loads(out.read_text())
    matrix = record["accuracy_matrix"]
    assert len(matrix) == 5 and matrix[0][0] > 0.9 and matrix[-1][0] < 0.2

    shown = forgetless("show", str(out))
    assert shown.returncode == 0, shown.stderr
    assert f"run {record['run_id']}" in shown.stdout and "untrained" in shown.stdout
    assert f"{100 * matrix[-1][-1]:.1f}" in shown.stdout


def test_list_shows_strategies_with_their_constraints():
    result = forgetless("list")
    assert result.returncode == 0, result.stderr
    for name in ("naive", "joint", "cumulative", "split", "permuted", "rotated", "mnist"):
        assert name in result.stdout
    assert "raw: stores raw training samples" in result.stdout
    assert "tid: needs the task id" in result.stdout


def test_config_file_and_command_line_precedence(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('scenario = "domain"\nseed = 3\nepochs = 1\nsource = "digits"\n')
    out = tmp_path / "r.json"
    result = forgetless("run", "--config", str(config), "--seed", "4", "--quiet", "-o", str(out),
                        "--no-store")
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())["config"]
    assert (record["scenario"], record["seed"], record["epochs"]) == ("domain", 4, 1)


@pytest.mark.parametrize("args, message", [
    (["run", "--strategy", "ewcc"], "unknown strategy 'ewcc'"),
    (["run", "--benchmark", "splt"], "Did you mean 'split'"),
    (["run", "--scenario", "classes"], "Did you mean 'class'"),
    (["run", "--tasks", "3"], "do not divide into 3"),
    (["run", "--set", "lam"], "--set takes KEY=VALUE"),
    (["run", "--set", "lam=3"], "has no hyper-parameter 'lam'"),
    (["run", "--lr", "-1"], "learning rate must be positive"),
    (["run", "--source", "idx"], "give --data-dir DIR"),
    (["show", "/nonexistent/run.json"], "no run record"),
    (["show", "/"], "is a folder; give the JSON file"),
    (["compare", "--jobs", "0", "--dry-run"], "--jobs must be a positive whole number"),
    (["advise", "--benchmark", "splt", "--no-run"], "unknown benchmark 'splt'"),
])
def test_bad_input_gets_one_sentence_and_no_traceback(args, message, capsys):
    from forgetless.cli import main

    argv = [args[0], *FAST, *args[1:]] if args[0] == "run" else args
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert message in err and err.startswith("error: ") and "Traceback" not in err


def test_a_bad_input_in_a_real_process_exits_2_without_traceback():
    result = forgetless("run", "--strategy", "ewcc", *FAST)
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown strategy") and "Traceback" not in result.stderr


def test_help_is_quick_and_lists_commands():
    result = forgetless("--help")
    assert result.returncode == 0
    for name in ("run", "list", "show", "compare", "runs", "report", "advise", "sweep"):
        assert re.search(rf"^\s+{name}\s", result.stdout, re.M), f"{name} not listed"
