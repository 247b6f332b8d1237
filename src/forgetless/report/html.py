"""One self-contained HTML page for a set of stored runs: no script, no network, styles inline.

Per protocol and scenario: the comparison table (grouped by family), ACC against cost (train
time, memory held), and per strategy its accuracy-matrix heat map and per-task curves. Every
piece of text that comes from a config, a strategy name or a task description is escaped.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from forgetless.report import svg
from forgetless.results.run_result import RunResult
from forgetless.results.summary import (
    HEADERS,
    METRICS,
    NOTE,
    Group,
    group_runs,
    human_bytes,
    row_cells,
)

FAMILY_NOTES = {
    "baseline": "references: naive fine-tuning (forgets) and joint / cumulative training (bounds)",
    "regularization": "penalise moving weights that mattered for old tasks; stores no data",
    "replay": "rehearse stored or generated samples of old tasks",
    "architecture": "give each task its own parameters and freeze old ones",
    "hybrid": "compositions of several strategies",
}

STYLE = """
body { font-family: sans-serif; margin: 24px; color: #111827; background: #ffffff; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 36px; }
.meta, .note { color: #4b5563; font-size: 13px; }
table.comparison { border-collapse: collapse; font-size: 13px; margin: 12px 0; }
table.comparison th, table.comparison td { border-bottom: 1px solid #e5e7eb; padding: 4px 8px;
  text-align: right; white-space: nowrap; }
table.comparison th:nth-child(-n+2), table.comparison td:nth-child(-n+2),
table.comparison td:nth-last-child(-n+2), table.comparison th:nth-last-child(-n+2) {
  text-align: left; }
tr.family-start td { border-top: 2px solid #9ca3af; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px;
  border-radius: 2px; }
.figures, .strategies { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure.strategy { margin: 0; padding: 8px; border: 1px solid #e5e7eb; border-radius: 6px; }
figure.strategy figcaption { font-size: 13px; margin-bottom: 4px; }
.params { font-size: 11px; color: #4b5563; max-width: 480px; }
ul.families { font-size: 13px; list-style: none; padding-left: 0; }
"""


def _e(text) -> str:
    return escape(str(text), quote=True)


def _table(group: Group) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in HEADERS)
    lines, previous = [], None
    for row in group.rows:
        cells = row_cells(row)
        start = row.family != previous
        if not start:
            cells[0] = ""
        previous = row.family
        data = {"strategy": row.strategy, "label": row.label, "family": row.family,
                "seeds": " ".join(map(str, row.seeds)), "run-ids": " ".join(row.run_ids)}
        for metric in METRICS:
            data[metric] = repr(row.stats[metric].mean)
        attributes = " ".join(f"data-{k}='{_e(v)}'" for k, v in data.items())
        swatch = (f"<span class='swatch' style='background:{svg.family_color(row.family)}'>"
                  "</span>") if start else ""
        tds = [f"<td>{swatch}{_e(cells[0])}</td>"] + [f"<td>{_e(c)}</td>" for c in cells[1:]]
        lines.append(f"<tr class='{'family-start' if start else 'same-family'}' {attributes}>"
                     + "".join(tds) + "</tr>")
    return (f"<table class='comparison' data-scenario='{_e(group.scenario)}' "
            f"data-protocol='{_e(group.protocol)}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(lines)}</tbody></table>")


def _cost_figures(group: Group) -> str:
    points_time = [{"x": r.time_ratio, "y": r.stats["acc"].mean, "label": r.label,
                    "family": r.family} for r in group.rows]
    points_memory = [{"x": r.strategy_bytes, "y": r.stats["acc"].mean, "label": r.label,
                      "family": r.family} for r in group.rows]
    points_peak = [{"x": r.peak_rss_bytes / 1e6 if not math.isnan(r.peak_rss_bytes) else None,
                    "y": r.stats["acc"].mean, "label": r.label, "family": r.family}
                   for r in group.rows]
    return "".join([
        svg.scatter(points_time, "ACC against train time", "train time (x naive)",
                    x_format=lambda v: f"{v:g}x"),
        svg.scatter(points_memory, "ACC against memory the strategy holds",
                    "bytes held (log scale)", log_x=True, x_format=human_bytes),
        svg.scatter(points_peak, "ACC against peak memory of the run", "peak RSS (MB)"),
    ])


def _strategy_cards(group: Group) -> str:
    cards = []
    for row in group.rows:
        params = ", ".join(f"{k} = {v}" for k, v in sorted(row.strategy_params.items()))
        tasks = "; ".join(f"task {j + 1}: {d}" for j, d in enumerate(row.task_descriptions))
        cards.append(
            f"<figure class='strategy' data-strategy='{_e(row.strategy)}'>"
            f"<figcaption><span class='swatch' style='background:"
            f"{svg.family_color(row.family)}'></span><b>{_e(row.label)}</b> ({_e(row.family)}"
            f"), ACC {_e(row.stats['acc'].percent())} %, mean of {len(row.seeds)} seed(s)"
            f"</figcaption>"
            + svg.heat_map(row.mean_matrix, f"{row.label}: accuracy matrix")
            + svg.task_curves(row.mean_matrix, f"{row.label}: each task over the stream")
            + f"<div class='params'>{_e(params or 'no hyper-parameters')}</div>"
            f"<div class='params'>{_e(tasks)}</div></figure>")
    return "".join(cards)


def render(runs: list[RunResult], title: str = "forgetless comparison",
           source: str = "") -> str:
    """The HTML page for ``runs``."""
    groups = group_runs(runs)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    from forgetless import __version__

    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{_e(title)}</h1>",
             f"<p class='meta'>{len(runs)} runs{' from ' + _e(source) if source else ''}; "
             f"generated {_e(now)} by forgetless {_e(__version__)}.</p>"]
    families = sorted({r.family for g in groups for r in g.rows},
                      key=lambda f: list(svg.FAMILY_COLORS).index(f)
                      if f in svg.FAMILY_COLORS else 99)
    if families:
        parts.append("<ul class='families'>" + "".join(
            f"<li><span class='swatch' style='background:{svg.family_color(f)}'></span>"
            f"<b>{_e(f)}</b>: {_e(FAMILY_NOTES.get(f, ''))}</li>" for f in families) + "</ul>")
    if not groups:
        parts.append("<p>No runs to report.</p>")
    for index, group in enumerate(groups):
        parts += [f"<section class='group' id='group-{index}'>", f"<h2>{_e(group.title)}</h2>",
                  _table(group), f"<div class='figures'>{_cost_figures(group)}</div>",
                  "<h3>Forgetting, strategy by strategy</h3>",
                  "<p class='note'>Heat map: accuracy on task j (columns) after training task i "
                  "(rows), mean over seeds. Curves: each task's accuracy from when it was "
                  "learned; a falling line is forgetting.</p>",
                  f"<div class='strategies'>{_strategy_cards(group)}</div></section>"]
    parts.append(f"<p class='note'>{_e(NOTE)}</p></body></html>")
    return "".join(parts)


def write_report(runs: list[RunResult], path: str | Path, title: str = "forgetless comparison",
                 source: str = "") -> Path:
    """Write the page atomically (nothing half-written) and return its path."""
    from forgetless.storage import write_atomic

    return write_atomic(path, render(runs, title, source), "the report")
