"""Plain-text tables for the terminal: the accuracy matrix and metrics of a run, and tables
fitted to the terminal's width (``fit_columns``: the least important columns go first)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def format_table(headers: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """Columns padded to their widest cell; ``align`` is one 'l' or 'r' per column."""
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if a == "l" else str(c).rjust(w)
                         for c, w, a in zip(cells, widths, align, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def format_accuracy_matrix(matrix, descriptions=None, untrained=None) -> str:
    """Rows: after training task i; columns: accuracy (%) on task j. The diagonal is what a task
    reached right after it was learned; the last row is what is left at the end."""
    t = len(matrix)
    headers = ["after"] + [f"task {j + 1}" for j in range(t)]
    rows = []
    if untrained is not None:
        rows.append(["untrained"] + [f"{100 * a:.1f}" for a in untrained])
    for i, row in enumerate(matrix):
        rows.append([f"task {i + 1}"] + [f"{100 * a:.1f}" for a in row])
    text = format_table(headers, rows)
    if descriptions:
        legend = "; ".join(f"task {j + 1}: {d}" for j, d in enumerate(descriptions))
        text += "\n" + wrap(f"({legend})", terminal_width())
    return text


def _percentages(values: dict, names: list[tuple[str, str]]) -> str:
    """One line per (key, label) of ``names`` present in ``values``: the label, the value in
    percent ("–" for None: undefined, e.g. FWT in class-incremental runs, of joint)."""
    def value(v) -> str:
        return f"{'–':>7}" if v is None else f"{100 * v:7.2f} %"

    return "\n".join(f"{label:<32} {value(values[key])}" for key, label in names
                     if key in values)


def format_metrics(metrics: dict) -> str:
    return _percentages(metrics, [
        ("acc", "ACC (final average accuracy)"), ("bwt", "BWT (backward transfer)"),
        ("forgetting", "average forgetting"), ("fwt", "FWT (forward transfer)"),
        ("learning_acc", "learning accuracy (diagonal)")])


def evaluation_interval(record: dict) -> str:
    """How often a continual-evaluation record was taken, in words."""
    every = record.get("every")
    if every == "auto":
        return "at an interval sized to the training time, dense after each switch,"
    return f"every {every} steps"


def format_continual(record: dict, summary: dict) -> str:
    """A continual-evaluation record (``RunResult.continual``) and its metrics
    (``continual_metrics.summarize_continual``): min-ACC, WC-ACC, the dip of each task just
    left when the next one starts, and what evaluating cost."""
    lines = [_percentages(summary, [("min_acc", "min-ACC (worst on old tasks)"),
                                    ("wc_acc", "WC-ACC (worst case)"),
                                    ("mean_dip_depth", "mean dip at a task switch")])]
    dips = [d for d in summary["dips"] if d["task"] == d["switch"] - 1]
    if dips:
        def percent(v: float) -> str:
            return f"{100 * v:.1f}"

        rows = [[f"task {d['switch'] + 1}", f"task {d['task'] + 1}", percent(d["before"]),
                 percent(d["minimum"]), percent(d["depth"]), str(d["steps_to_minimum"]),
                 "–" if d["recovery_steps"] is None else str(d["recovery_steps"])]
                for d in dips]
        lines += ["", format_table(["new task", "old task", "before %", "lowest %", "dip %",
                                    "lowest at", "half back at"], rows, align="llrrrrr"),
                  wrap("lowest at, half back at: steps after the switch; –: half of the dip "
                       "not regained within the task.", terminal_width())]
    seconds, training = record.get("seconds"), record.get("train_seconds")
    cost = (f" ({100 * seconds / training:.0f}% of the training time)"
            if seconds is not None and training else "")
    lines.append(wrap(f"continual evaluation {evaluation_interval(record)} on "
                      f"{record.get('eval_samples')} test samples per task: "
                      f"{len(record['steps'])} evaluations, {seconds or 0:.2f} s{cost}.",
                      terminal_width()))
    return "\n".join(lines)


# ---------------------------------------------------------------------- fitting a terminal
#: What a table is fitted to when the terminal's width is unknown (a pipe, a file).
DEFAULT_WIDTH = 100


def terminal_width() -> int:
    """The terminal's columns (``COLUMNS`` wins, as ``shutil.get_terminal_size`` reads it),
    else ``DEFAULT_WIDTH``."""
    import shutil

    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


@dataclass
class Column:
    """One column of a fitted table: its header, how a cell is made from an item, its
    alignment, and ``drop`` -- columns with a higher value are left out first when the table
    is too wide (0: never dropped)."""

    header: str
    cell: Callable[[Any], str]
    align: str = "r"
    drop: int = 0


def table_width(headers: list[str], rows: list[list[str]]) -> int:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    return sum(widths) + 2 * (len(widths) - 1)


def fit_columns(columns: list[Column], items: list, width: int | None) -> tuple[
        list[Column], list[Column]]:
    """(kept, dropped): the columns of ``items`` that fit ``width`` characters, dropping the
    highest ``drop`` first; ``width`` None keeps every column."""
    kept = list(columns)
    dropped: list[Column] = []
    while width is not None:
        rows = [[c.cell(item) for c in kept] for item in items]
        if table_width([c.header for c in kept], rows) <= width:
            break
        candidates = [c for c in kept if c.drop > 0]
        if not candidates:
            break
        worst = max(candidates, key=lambda c: c.drop)
        kept.remove(worst)
        dropped.insert(0, worst)
    return kept, dropped


def format_columns(columns: list[Column], items: list) -> str:
    return format_table([c.header for c in columns], [[c.cell(i) for c in columns] for i in items],
                        align="".join(c.align for c in columns))


def wrap(text: str, width: int | None, indent: str = "") -> str:
    """A paragraph wrapped to ``width`` (None: left as one line); continuation lines start with
    ``indent``."""
    import textwrap

    if width is None:
        return text
    return "\n".join(textwrap.wrap(text, width, subsequent_indent=indent,
                                    break_on_hyphens=False) or [""])

