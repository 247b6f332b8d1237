"""The HTML report: escaping and well-formed figures, then the real page in headless Chromium
(Debian's `chromium`, driven directly by tests/browser.py).

Without Chromium the browser test is skipped with how to enable it, except under CI=true, where
it fails: CI must show the report works."""

import json
import math
import sqlite3
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image

from browser import crop, dump_dom, measure, require_chromium, screenshot
from fake_runs import BOUNDS, TINY, fake_run
from forgetless.experiments.compare import compare, plan
from forgetless.report import render, write_report
from forgetless.report.svg import heat_map, scatter, task_curves
from forgetless.results.store import RunStore

HOSTILE = "<script>alert('x')</script>&\"quoted\""


def svgs(page: str) -> list[str]:
    pieces, start = [], page.find("<svg")
    while start >= 0:
        end = page.index("</svg>", start) + len("</svg>")
        pieces.append(page[start:end])
        start = page.find("<svg", end)
    return pieces


def test_figures_are_well_formed_svg_with_the_values_in_place():
    matrix = [[0.99, 0.1, 0.0], [0.5, 0.98, 0.2], [0.25, 0.6, 0.97]]
    heat = ET.fromstring(heat_map(matrix, "m"))
    cells = [t.text for t in heat.iter("{http://www.w3.org/2000/svg}text")]
    assert {"99", "50", "25", "98", "60", "97"} <= set(cells)
    curves = ET.fromstring(task_curves(matrix, "c"))
    lines = list(curves.iter("{http://www.w3.org/2000/svg}polyline"))
    assert len(lines) == 2  # tasks 1 and 2 have a history after learning; task 3 is a point
    first = [tuple(map(float, p.split(","))) for p in lines[0].get("points").split()]
    assert [y for _, y in first] == sorted(y for _, y in first)  # 99 -> 50 -> 25 falls
    plot = ET.fromstring(scatter([{"x": 1.0, "y": 0.2, "label": "a", "family": "baseline"},
                                  {"x": 3.0, "y": 0.9, "label": "b", "family": "replay"}],
                                 "s", "time"))
    circles = list(plot.iter("{http://www.w3.org/2000/svg}circle"))
    (ax, ay), (bx, by) = [(float(c.get("cx")), float(c.get("cy"))) for c in circles]
    assert bx > ax and by < ay  # more time to the right, more ACC higher up


def test_text_from_configs_and_names_is_escaped():
    runs = [fake_run("naive", seed=s, descriptions=[HOSTILE] * 5) for s in (0, 1)] + [
        fake_run(HOSTILE, seed=0, family="replay", params={"note": HOSTILE})]
    page = render(runs, title=HOSTILE, source=HOSTILE)
    assert "<script" not in page and "alert('x')" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;quoted&quot;" in page
    for piece in svgs(page):
        ET.fromstring(piece)  # every figure parses as XML
    assert len(svgs(page)) == 3 + 2 * 2  # 3 cost plots, heat map + curves per strategy


def non_blank(image) -> float:
    """The share of pixels that are not the background white."""
    pixels = np.asarray(image.convert("RGB"), dtype=int)
    return float((np.abs(pixels - 255).sum(axis=2) > 30).mean())


# What the test reads from the page once it has loaded (see browser.measure).
READ_PAGE = """
  const rows = Array.from(document.querySelectorAll('table.comparison tbody tr'), tr => ({
    strategy: tr.dataset.strategy, acc: tr.dataset.acc,
    cells: Array.from(tr.querySelectorAll('td'), td => td.innerText)}));
  return {title: document.title, scripts: document.scripts.length, rows: rows,
          figures: rect('.figures'), heat: rect('figure.strategy svg')};
"""


def test_the_report_renders_in_chromium_with_the_stored_numbers(tmp_path):
    require_chromium()  # skip (or fail under CI=true) before training anything
    store_path = tmp_path / "runs.db"
    configs = plan(TINY, strategies=BOUNDS, scenarios=["class"], seeds=[0, 1])
    with RunStore(store_path) as store:
        compare(configs, store, jobs=1, progress=False)
        store.put(fake_run(HOSTILE, "class", 0, family="replay", params={"x": HOSTILE},
                           **{k: v for k, v in TINY.to_dict().items()
                              if k not in ("strategy", "scenario", "seed", "strategy_params")}))
        runs = store.select()
    page = write_report(runs, tmp_path / "report.html", title="browser test")
    whole = tmp_path / "whole-page.png"
    found = measure(page, READ_PAGE, width=1400, png=whole)
    seen = found.value
    assert seen["title"] == "browser test"
    assert found.errors == []  # no script error, failed load or console error
    assert seen["scripts"] == 0  # nothing injected
    figures = seen["figures"]
    assert figures["width"] > 600 and figures["height"] > 200
    assert non_blank(crop(whole, figures)) > 0.01
    assert non_blank(crop(whole, seen["heat"])) > 0.2  # the coloured cells of the heat map
    # The table holds the stored numbers: recomputed here from the SQLite file's matrices.
    with sqlite3.connect(store_path) as db:
        stored = {}
        for strategy, record in db.execute("SELECT strategy, record FROM runs"):
            matrix = np.array(json.loads(record)["accuracy_matrix"])
            stored.setdefault(strategy, []).append(matrix[-1].mean())
    rows = seen["rows"]
    assert sorted(r["strategy"] for r in rows) == sorted(stored)
    for row in rows:
        values = stored[row["strategy"]]
        cells = row["cells"]
        mean = np.mean(values)
        shown = f"{100 * mean:.1f}" + (f" ± {100 * np.std(values, ddof=1):.1f}"
                                       if len(values) > 1 else "")
        assert cells[3] == shown and cells[2] == str(len(values))
        assert math.isclose(float(row["acc"]), mean, abs_tol=1e-12)
    # The page as a user opens it (not the probed copy): a 1400 x 1000 window, drawn.
    dom = dump_dom(page)
    assert "<title>browser test</title>" in dom and "<script" not in dom
    window = screenshot(page, tmp_path / "report.png", width=1400, height=1000)
    with Image.open(window) as image:
        assert image.size == (1400, 1000) and non_blank(image) > 0.02
