"""benchmarks/peers_avalanche.py without Avalanche: it skips in one line, and its table takes
the median of the per-pair time ratios (not the ratio of the medians)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "peers_avalanche.py"


def load_script():
    spec = importlib.util.spec_from_file_location("peers_avalanche", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_avalanche_it_skips_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--avalanche-python",
                           str(tmp_path / "no-python"), "--out", str(tmp_path / "out.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("skipped: no Python at")
    assert done.stderr == "" and not (tmp_path / "out.json").exists()


def test_table_takes_the_median_of_per_pair_ratios():
    script = load_script()

    def runs(seconds, acc, rss):
        return [{"seconds": s, "acc": acc, "peak_rss": rss} for s in seconds]

    # per pair 0.5, 2, 0.5: median 0.5; the ratio of the medians would be 4 / 2 = 2
    table = {"forgetless": {"naive": runs([1.0, 4.0, 10.0], 0.75, 500e6)},
             "avalanche": {"naive": runs([2.0, 2.0, 20.0], 0.8, 600e6)}}
    row = script.table(table, ["naive"])[2]
    assert row == "| naive | 0.50 | 0.750 | 0.800 | 500 | 600 |"
