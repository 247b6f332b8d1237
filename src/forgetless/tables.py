"""Plain-text tables for the terminal: the accuracy matrix and metrics of a run."""

from __future__ import annotations


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
        text += f"\n({legend})"
    return text


def format_metrics(metrics: dict) -> str:
    names = [("acc", "ACC (final average accuracy)"), ("bwt", "BWT (backward transfer)"),
             ("forgetting", "average forgetting"), ("fwt", "FWT (forward transfer)"),
             ("learning_acc", "learning accuracy (diagonal)")]
    def value(v) -> str:  # None: undefined (FWT in class-incremental runs, of joint)
        return f"{'–':>7}" if v is None else f"{100 * v:7.2f} %"

    return "\n".join(f"{label:<32} {value(metrics[key])}" for key, label in names
                     if key in metrics)
