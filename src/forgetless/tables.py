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


def format_metrics(metrics: dict) -> str:
    names = [("acc", "ACC (final average accuracy)"), ("bwt", "BWT (backward transfer)"),
             ("forgetting", "average forgetting"), ("fwt", "FWT (forward transfer)"),
             ("learning_acc", "learning accuracy (diagonal)")]
    def value(v) -> str:  # None: undefined (FWT in class-incremental runs, of joint)
        return f"{'–':>7}" if v is None else f"{100 * v:7.2f} %"

    return "\n".join(f"{label:<32} {value(metrics[key])}" for key, label in names
                     if key in metrics)


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

