"""One self-contained HTML page for a set of stored runs: no network, styles inline, one small
inline script of our own (sorting the tables; the page reads the same without it).

At the top, the lesson (``forgetless.results.lesson``); then per protocol and scenario, where
forgetting is worst first: the comparison table (grouped by family; click a header to sort),
ACC against cost (train time, bytes the strategy holds), per strategy its accuracy-matrix
heat map and per-task curves, and, for runs evaluated every few steps, each task's accuracy
during training (the stability gap). Every piece of text that comes from a config, a strategy
name or a task description is escaped; the script is a constant and takes no data.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from pathlib import Path

from forgetless.continual_metrics import summarize_continual
from forgetless.report import svg
from forgetless.results.lesson import Lesson, lesson, worst_first
from forgetless.results.run_result import RunResult
from forgetless.results.summary import (
    NOTE,
    Group,
    group_runs,
    headers,
    human_bytes,
    notes,
    row_cells,
    shown_metrics,
)
from forgetless.tables import evaluation_interval

FAMILY_NOTES = {
    "baseline": "references: naive fine-tuning (forgets) and joint / cumulative training (bounds)",
    "regularization": "penalise moving weights that mattered for old tasks; stores no data",
    "replay": "rehearse stored or generated samples of old tasks",
    "architecture": "give each task its own parameters and freeze old ones",
    "weight-space": "interpolate or merge whole weight vectors after each task; stores no data",
    "parameter-efficient": "train small added adapters (LoRA) and freeze the pretrained weights",
    "frozen-features": "never train the model; classify its features by per-class statistics",
    "hybrid": "compositions of several strategies",
}

STYLE = """
body { font-family: sans-serif; margin: 24px; color: #111827; background: #ffffff; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 36px; }
.meta, .note { color: #4b5563; font-size: 13px; }
section.lesson { border: 1px solid #fdba74; background: #fff7ed; border-radius: 8px;
  padding: 4px 18px 10px; max-width: 1000px; }
section.lesson h2 { margin-top: 12px; } section.lesson h3 { font-size: 15px; margin: 12px 0 4px; }
section.lesson p, section.lesson li { font-size: 14px; line-height: 1.45; }
section.lesson ul { margin: 4px 0; padding-left: 22px; }
.table-scroll { max-width: 100%; overflow-x: auto; }
table.comparison { border-collapse: collapse; font-size: 13px; margin: 12px 0; }
table.comparison th, table.comparison td { border-bottom: 1px solid #e5e7eb; padding: 4px 8px;
  text-align: right; white-space: nowrap; }
table.comparison th { cursor: pointer; user-select: none; background: #f9fafb; }
table.comparison th:hover { background: #eef2ff; }
table.comparison th[aria-sort=descending]::after { content: " \\25BC"; font-size: 9px; }
table.comparison th[aria-sort=ascending]::after { content: " \\25B2"; font-size: 9px; }
table.comparison:not(.sorted) tr.same-family .family-name { visibility: hidden; }
table.comparison th:nth-child(-n+2), table.comparison td:nth-child(-n+2),
table.comparison td:nth-last-child(-n+2), table.comparison th:nth-last-child(-n+2) {
  text-align: left; }
table.comparison:not(.sorted) tr.family-start td { border-top: 2px solid #9ca3af; }
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


#: Sorts every ``table.sortable`` by the clicked column: numbers (units B/kB/MB/GB, "x", "±"
#: read off the cell's text) largest first, words A to Z, a second click reverses, missing
#: values ("–") last; the first column restores the grouped order. A constant: it reads no data.
SORT_SCRIPT = r"""
(function () {
  var UNITS = {kB: 1e3, MB: 1e6, GB: 1e9};
  function key(cell) {
    var text = cell.textContent.trim();
    var m = /^(-?[0-9][0-9,]*(?:\.[0-9]+)?)\s*(B|kB|MB|GB|x)?(?:\s|$)/.exec(text);
    if (m) return parseFloat(m[1].replace(/,/g, "")) * (UNITS[m[2]] || 1);
    return text === "" || text === "\u2013" ? null : text.toLowerCase();
  }
  function order(a, b, sign) {
    if (a === null || b === null) return a === b ? 0 : (a === null ? 1 : -1);
    return a < b ? -sign : (a > b ? sign : 0);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var body = table.tBodies[0], heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(body.rows, function (row, i) { row.dataset.order = i; });
    Array.prototype.forEach.call(heads, function (head, column) {
      head.tabIndex = 0;
      function sort() {
        var rows = Array.prototype.slice.call(body.rows), sign = 0, state = null;
        if (column > 0) {
          var was = head.getAttribute("aria-sort");
          var numeric = rows.some(function (r) {
            return typeof key(r.cells[column]) === "number";
          });
          sign = was === "descending" ? 1 : (was === "ascending" ? -1 : (numeric ? -1 : 1));
          state = sign < 0 ? "descending" : "ascending";
        }
        rows.sort(function (a, b) {
          return (sign ? order(key(a.cells[column]), key(b.cells[column]), sign) : 0)
            || a.dataset.order - b.dataset.order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        if (state) head.setAttribute("aria-sort", state);
        table.classList.toggle("sorted", state !== null);
      }
      head.addEventListener("click", sort);
      head.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sort(); }
      });
    });
  });
})();
"""


def _table(group: Group) -> str:
    names, metrics = headers(group), shown_metrics(group.continual)
    head = (f"<th title='back to the grouped order'>{_e(names[0])}</th>"
            + "".join(f"<th title='sort by {_e(h)}'>{_e(h)}</th>" for h in names[1:]))
    lines, previous = [], None
    for row in group.rows:
        cells = row_cells(row, metrics)
        start = row.family != previous
        previous = row.family
        data = {"strategy": row.strategy, "label": row.label, "family": row.family,
                "seeds": " ".join(map(str, row.seeds)), "run-ids": " ".join(row.run_ids)}
        for metric in metrics:
            if metric in row.stats:
                data[metric.replace("_", "-")] = repr(row.stats[metric].mean)
        attributes = " ".join(f"data-{k}='{_e(v)}'" for k, v in data.items())
        swatch = f"<span class='swatch' style='background:{svg.family_color(row.family)}'></span>"
        tds = [f"<td><span class='family-name'>{swatch}{_e(cells[0])}</span></td>"] + [
            f"<td>{_e(c)}</td>" for c in cells[1:]]
        lines.append(f"<tr class='{'family-start' if start else 'same-family'}' {attributes}>"
                     + "".join(tds) + "</tr>")
    return (f"<div class='table-scroll'><table class='comparison sortable' "
            f"data-scenario='{_e(group.scenario)}' data-protocol='{_e(group.protocol)}'>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table></div>")


def _cost_figures(group: Group) -> str:
    """ACC against train time and against the bytes the strategy itself holds (a run's peak
    memory is mostly the interpreter and the data, the same for every strategy, so it is not
    plotted). One marker per row, the same in both plots."""
    base = [{"y": r.stats["acc"].mean, "label": r.label, "family": r.family} for r in group.rows]
    svg.assign_markers(base)
    time = [dict(p, x=r.time_ratio) for p, r in zip(base, group.rows, strict=True)]
    held = [dict(p, x=r.strategy_bytes) for p, r in zip(base, group.rows, strict=True)]
    return "".join([
        svg.scatter(time, "ACC against train time", "train time (x naive)",
                    x_format=lambda v: f"{v:g}x"),
        svg.scatter(held, "ACC against bytes the strategy holds",
                    "bytes held beyond the model (log scale; 0 B left of the break)",
                    log_x=True, x_format=human_bytes),
    ])


def _plane(group: Group) -> str:
    """For a pretrained language model on a stream whose task 0 is its prior skills: the
    learning-forgetting plane (``svg.learning_forgetting_plane``)."""
    rows = [r for r in group.rows if r.objective == "language_modelling"]
    if not rows or len(rows[0].mean_matrix) < 2:
        return ""
    curves = [{"label": r.label, "family": r.family,
               "points": [(r.mean_matrix[i][i], r.mean_matrix[i][0])
                          for i in range(1, len(r.mean_matrix))]} for r in rows]
    prior = rows[0].untrained[0] if rows[0].untrained else None
    return svg.learning_forgetting_plane(curves, prior, "Learning against forgetting")


def _lesson_panel(found: Lesson, groups: list[Group]) -> str:
    """The summary at the top: the lesson's sentences, a link to the table they come from."""
    if not found.findings:
        return ""
    target = next((i for i, g in enumerate(groups) if (g.protocol, g.scenario)
                   == (found.protocol, found.scenario)), 0)
    parts = ["<section class='lesson' id='lesson'>",
             f"<h2>The lesson: {_e(found.scenario)}-incremental, where naive forgets most</h2>",
             "<p class='findings'>" + " ".join(_e(s) for s in found.findings) + "</p>"]
    for heading, items, kind in (("Best per constraint", found.choices, "choices"),
                                 ("Caveats", found.caveats, "caveats")):
        if items:
            parts.append(f"<h3>{heading}</h3><ul class='{kind}'>"
                         + "".join(f"<li>{_e(s)}</li>" for s in items) + "</ul>")
    parts.append(f"<p class='note'>Computed from the runs of <a href='#group-{target}'>the "
                 "first table</a>: a bound (joint, cumulative) is a reference, never a choice; "
                 "a difference inside the seeds' spread (mean ± sd intervals overlap) is not a "
                 "win.</p></section>")
    return "".join(parts)


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


def _stability_gap_section(group: Group) -> str:
    """Per strategy with a continual-evaluation record, every task's accuracy against training
    steps for one seed (``svg.stability_gap``); "" when no row has a record."""
    rows = [r for r in group.rows if r.continual]
    if not rows:
        return ""
    def percent(value) -> str:
        return "–" if value is None else f"{100 * value:.1f} %"

    cards = []
    for row in rows:
        record = row.continual_record
        found = summarize_continual(record)
        cards.append(
            f"<figure class='strategy' data-strategy='{_e(row.strategy)}'>"
            f"<figcaption><span class='swatch' style='background:"
            f"{svg.family_color(row.family)}'></span><b>{_e(row.label)}</b>, seed "
            f"{_e(row.continual_seed)}: min-ACC {_e(percent(found['min_acc']))}, WC-ACC "
            f"{_e(percent(found['wc_acc']))}, mean dip {_e(percent(found['mean_dip_depth']))}"
            f"</figcaption>"
            + svg.stability_gap(record, f"{row.label}: accuracy during training")
            + f"<div class='params'>evaluated {len(record.get('steps', []))} times "
            f"{_e(evaluation_interval(record))} on "
            f"{_e(record.get('eval_samples'))} test samples per task</div></figure>")
    return ("<section class='stability-gap'><h3>Accuracy during training: the stability gap"
            "</h3><p class='note'>Each task's accuracy (%) on a fixed subset of its test set, "
            "evaluated every few training steps and at every task end, for one seed of each "
            "strategy (its first with a record); dashed vertical lines: a new task starts. An "
            "old task that drops right after a line and climbs back is the stability gap (De "
            "Lange, van de Ven & Tuytelaars 2023), which the end-of-task matrices, measured "
            "only at the lines, do not show. Mean dip: how far the task just left falls after "
            "a switch, averaged over switches.</p>"
            f"<div class='strategies'>{''.join(cards)}</div></section>")


def render(runs: list[RunResult], title: str = "forgetless comparison",
           source: str = "") -> str:
    """The HTML page for ``runs``."""
    groups = worst_first(group_runs(runs))
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
    parts.append(_lesson_panel(lesson(runs), groups))
    if not groups:
        parts.append("<p>No runs to report.</p>")
    for index, group in enumerate(groups):
        parts += [f"<section class='group' id='group-{index}'>", f"<h2>{_e(group.title)}</h2>",
                  _table(group),
                  f"<div class='figures'>{_plane(group)}{_cost_figures(group)}</div>",
                  "<h3>Forgetting, strategy by strategy</h3>",
                  "<p class='note'>Heat map: accuracy on task j (columns) after training task i "
                  "(rows), mean over seeds; hatched cells are tasks not trained yet. Curves: "
                  "each task's accuracy from when it was learned (its own colour, dash and "
                  "marker; tasks are drawn a pixel or two apart so that equal values stay "
                  "visible, a marker's tooltip has the exact value); a falling line is "
                  "forgetting.</p>",
                  f"<div class='strategies'>{_strategy_cards(group)}</div>",
                  _stability_gap_section(group), "</section>"]
    parts.append(f"<p class='note'>{_e(notes(groups, NOTE))}</p>"
                 f"<script>{SORT_SCRIPT}</script></body></html>")
    return "".join(parts)


def write_report(runs: list[RunResult], path: str | Path, title: str = "forgetless comparison",
                 source: str = "") -> Path:
    """Write the page atomically (nothing half-written) and return its path."""
    from forgetless.storage import write_atomic

    return write_atomic(path, render(runs, title, source), "the report")
