"""The report's SVG figures and HTML pieces, without a browser: well-formed SVG, untrained
heat-map cells that do not look like data, a legend that names (and escapes) every point, an
explicit zero on the log axis, task curves that stay apart, accuracy against steps with the task
switches marked (the stability gap), the lesson panel and the sorting script."""

import re
import xml.etree.ElementTree as ET

import pytest

from fake_runs import continual_record, fake_run, with_continual
from forgetless.report import render
from forgetless.report.html import SORT_SCRIPT
from forgetless.report.svg import heat_map, scatter, stability_gap, task_curves
from forgetless.results.lesson import lesson

NS = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert('x')</script>&\"quoted\""


def elements(svg: str, tag: str, kind: str | None = None) -> list:
    found = ET.fromstring(svg).iter(NS + tag)
    return [e for e in found if kind is None or e.get("class") == kind]


def test_untrained_cells_are_hatched_and_carry_no_number():
    matrix = [[0.99, 0.37, 0.41], [0.5, 0.98, 0.43], [0.25, 0.6, 0.97]]
    svg = heat_map(matrix, "m")
    texts = {t.text for t in elements(svg, "text")}
    assert {"99", "50", "25", "98", "60", "97"} <= texts
    assert not {"37", "41", "43"} & texts  # above the diagonal: not trained yet, not shown
    untrained = elements(svg, "rect", "untrained")
    assert len(untrained) == 3 and len(elements(svg, "rect", "trained")) == 6
    assert all(r.find(NS + "title").text == "not trained yet" for r in untrained)
    cells = {(float(r.get("x")), float(r.get("y"))) for r in untrained}
    trained = sorted({(float(r.get("x")), float(r.get("y")))
                      for r in elements(svg, "rect", "trained")})
    columns, rows = sorted({x for x, _ in trained}), sorted({y for _, y in trained})
    assert cells == {(columns[j], rows[i]) for i in range(3) for j in range(3) if j > i}
    assert len(elements(svg, "line")) >= 3 * 5  # diagonal strokes across each untrained cell
    assert "not trained yet" in texts  # the key under the map


def test_the_scatter_legend_names_every_point_escaped_with_its_own_marker():
    points = [{"x": 1.0 + k / 10, "y": 0.2, "label": label, "family": family}
              for k, (label, family) in enumerate(
                  [("naive", "baseline"), ("ewc", "regularization"), ("si", "regularization"),
                   ("mas", "regularization"), (HOSTILE, "replay"), ("er", "replay")])]
    points.append({"x": None, "y": 0.5, "label": "icarl", "family": "replay"})
    svg = scatter(points, "t", "time")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    legend = [t.text for t in elements(svg, "text", "legend")]
    assert legend == [p["label"] for p in points[:-1]] + ["icarl (not measured)"]
    assert "naive" not in [t.text for t in elements(svg, "text") if t.get("class") != "legend"]
    drawn = [e for tag in ("circle", "rect", "polygon", "path") for e in elements(svg, tag)
             if e.get("class") == "point"]
    assert len(drawn) == 6  # the unmeasured point is in the legend only
    styles = {(p["family"], p["marker"]) for p in points}
    assert len(styles) == len(points)  # colour (family) and marker name one strategy
    # No label sits in the plot: every text right of the y axis and above the x axis is the
    # title or a legend entry, and the legend starts right of the plot area.
    axis = next(ln for ln in elements(svg, "line") if ln.get("y1") != ln.get("y2"))
    plot_right = max(float(ln.get("x2")) for ln in elements(svg, "line")
                     if ln.get("y1") == ln.get("y2") and ln.get("stroke") == "#111827")
    assert float(axis.get("x1")) < plot_right
    assert all(float(t.get("x")) > plot_right for t in elements(svg, "text", "legend"))


def test_zero_bytes_get_their_own_tick_left_of_an_axis_break():
    points = [{"x": 0, "y": 0.2, "label": "naive", "family": "baseline"},
              {"x": 120_000, "y": 0.8, "label": "er", "family": "replay"},
              {"x": 5_000_000, "y": 0.3, "label": "ewc", "family": "regularization"}]
    svg = scatter(points, "held", "bytes", log_x=True,
                  x_format=lambda v: "0 B" if v == 0 else f"{v:g} B")
    naive = next(c for c in elements(svg, "circle", "point"))
    zero_tick = next(t for t in elements(svg, "text") if t.text == "0 B")
    assert float(zero_tick.get("x")) == float(naive.get("cx"))
    log_ticks = [float(t.get("x")) for t in elements(svg, "text")
                 if t.text and t.text.endswith(" B") and t.text != "0 B"]
    assert log_ticks and min(log_ticks) > float(naive.get("cx")) + 30
    breaks = [ln for ln in elements(svg, "line") if ln.get("stroke-width") == "1.2"]
    assert len(breaks) == 2 and all(float(naive.get("cx")) < float(ln.get("x1"))
                                    < min(log_ticks) for ln in breaks)
    no_zero = scatter(points[1:], "held", "bytes", log_x=True, x_format=lambda v: f"{v:g} B")
    assert "0 B" not in [t.text for t in elements(no_zero, "text")]
    assert not [ln for ln in elements(no_zero, "line") if ln.get("stroke-width") == "1.2"]


def test_task_curves_that_coincide_stay_apart_and_differ_in_colour_and_dash():
    matrix = [[1.0 if j <= i else 0.0 for j in range(5)] for i in range(5)]  # all at 100%
    svg = task_curves(matrix, "c")
    lines = elements(svg, "polyline", "task-curve")
    assert len(lines) == 4
    assert len({(ln.get("stroke"), ln.get("stroke-dasharray")) for ln in lines}) == 4
    heights = [{round(float(p.split(",")[1]), 1) for p in ln.get("points").split()}
               for ln in lines]
    assert all(len(h) == 1 for h in heights)  # each stays flat: no forgetting drawn
    levels = sorted(h.pop() for h in heights)
    assert all(b - a >= 1.5 for a, b in zip(levels, levels[1:], strict=False))
    assert levels[-1] - levels[0] <= 8  # a few pixels, not a different value
    legend = [t.text for t in elements(svg, "text", "legend")]
    assert legend == [f"task {j}" for j in range(1, 6)]


def test_the_page_opens_with_the_lesson_and_its_only_script_is_the_constant_sorter():
    runs = [fake_run("naive", "class", s, acc=0.2, forgetting=0.75) for s in (0, 1)] + [
        fake_run("naive", "task", s, acc=0.9, forgetting=0.05) for s in (0, 1)] + [
        fake_run(HOSTILE, "class", s, family="replay", acc=0.8, forgetting=0.1,
                 stores_raw_data=True, strategy_bytes=1000) for s in (0, 1)]
    page = render(runs)
    panel = page.index("<section class='lesson'")
    assert panel < page.index("<section class='group'")
    assert page.index("class-incremental —") < page.index("task-incremental —")
    from html import escape

    for sentence in lesson(runs).sentences:
        assert escape(sentence, quote=True) in page
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    assert scripts == [SORT_SCRIPT]
    assert "alert(" not in page.replace(escape("alert("), "")
    assert "http://" not in SORT_SCRIPT and "https://" not in SORT_SCRIPT
    assert re.search(r"<div class='table-scroll'><table class='comparison sortable'", page)
    assert "ACC against peak memory" not in page


def polyline_points(line) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in line.get("points").split()]


def test_the_stability_gap_draws_every_task_against_steps_with_the_switches_marked():
    record = continual_record(tasks=3, steps_per_task=10, every=2)  # steps 0, 2, ..., 30
    svg = stability_gap(record, "gap")
    lines = elements(svg, "polyline", "accuracy-curve")
    assert len(lines) == 3
    # Each task's line starts at its first evaluation: 16, 11 and 6 evaluations from steps
    # 0, 10 and 20 on; its colour and dash are the task's, as in the end-of-task curves.
    assert [len(polyline_points(ln)) for ln in lines] == [16, 11, 6]
    curves = elements(task_curves([[0.5] * 3] * 3, "c"), "polyline", "task-curve")
    assert [(ln.get("stroke"), ln.get("stroke-dasharray")) for ln in lines[:2]] == [
        (ln.get("stroke"), ln.get("stroke-dasharray")) for ln in curves]
    assert len({ln.get("stroke") for ln in lines}) == 3
    # The x axis: pixels are linear in steps, from the y axis (step 0).
    axis = next(ln for ln in elements(svg, "line") if ln.get("x1") == ln.get("x2")
                and ln.get("stroke") == "#111827")
    x_of = {s: x for s, (x, _) in zip(record["steps"], polyline_points(lines[0]), strict=True)}
    assert x_of[0] == float(axis.get("x1"))
    per_step = (x_of[30] - x_of[0]) / 30
    assert per_step > 5 and all(x == pytest.approx(x_of[0] + per_step * s, abs=0.11)
                                for s, x in x_of.items())
    # Task switches: one dashed vertical line at each later task's start (steps 10 and 20),
    # where that task's line begins; none at step 0.
    switches = elements(svg, "line", "task-switch")
    assert [float(ln.get("x1")) for ln in switches] == [x_of[10], x_of[20]]
    assert all(ln.get("x1") == ln.get("x2") and ln.get("stroke-dasharray") for ln in switches)
    assert [polyline_points(ln)[0][0] for ln in lines[1:]] == [x_of[10], x_of[20]]
    # The y axis is accuracy in percent: task 1 at 90% (step 10), dipping to 50% (step 12).
    bottom, top = float(axis.get("y2")), float(axis.get("y1"))
    ys = [y for _, y in polyline_points(lines[0])]
    assert ys[5] == pytest.approx(bottom - 0.9 * (bottom - top), abs=0.11)
    assert ys[6] == pytest.approx(bottom - 0.5 * (bottom - top), abs=0.11)
    texts = [t.text for t in elements(svg, "text")]
    assert "training steps" in texts and "accuracy %" in texts
    legend = [t.text for t in elements(svg, "text", "legend")]
    assert legend == ["task 1", "task 2", "task 3", "task switch"]
    assert all(float(t.get("x")) > x_of[30] for t in elements(svg, "text", "legend"))


def test_the_report_has_a_stability_gap_section_only_for_runs_with_a_record():
    seed_0 = continual_record(tasks=5, dip=0.4)
    seed_1 = continual_record(tasks=5, dip=0.2)
    runs = [with_continual(fake_run("er", "class", 0, family="replay"), seed_0),
            with_continual(fake_run("er", "class", 1, family="replay"), seed_1),
            with_continual(fake_run(HOSTILE, "class", 0, family="replay")),
            fake_run("naive", "class", 0), fake_run("naive", "task", 0)]
    page = render(runs)
    heading = "Accuracy during training: the stability gap"
    assert page.count(heading) == 1  # the class-incremental group; not the task one
    section = page[page.index("<section class='stability-gap'>"):]
    section = section[:section.index("</section>")]
    figures = re.findall(r"<svg.*?</svg>", section, re.DOTALL)
    assert [ET.fromstring(f).get("class") for f in figures] == ["stability-gap"] * 2  # no naive
    # One seed per strategy, the first: ER's figure is seed 0's record (its dip: 40 points).
    er = section[section.index("data-strategy='er'"):]
    assert "seed 0: min-ACC 50.0 %" in er and "mean dip 40.0 %" in er
    assert "<script>alert" not in page and "&lt;script&gt;alert" in section
    assert heading not in render([r for r in runs if not r.continual])
