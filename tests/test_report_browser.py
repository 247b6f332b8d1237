"""The HTML report: escaping and well-formed figures, then the real page in headless Chromium
(Debian's `chromium` and `chromium-driver`, driven by selenium with /usr/bin/chromedriver).

The browser test fails, never skips, when Chromium is missing: CI must show the report works."""

import io
import json
import math
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from fake_runs import BOUNDS, TINY, fake_run
from forgetless.experiments.compare import compare, plan
from forgetless.report import render, write_report
from forgetless.report.svg import heat_map, scatter, task_curves
from forgetless.results.store import RunStore

HOSTILE = "<script>alert('x')</script>&\"quoted\""
CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")


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


def find_browser():
    chromium = next((shutil.which(c) for c in CHROMIUM if shutil.which(c)), None)
    driver = next((shutil.which(c) for c in CHROMEDRIVER if shutil.which(c)), None)
    assert chromium and driver, (
        "the report's browser test needs headless Chromium: apt-get install -y chromium "
        "chromium-driver (and pip install selenium)")
    return chromium, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    yield session
    session.quit()


def non_blank(png: bytes) -> float:
    """The share of pixels that are not the background white."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    return float((np.abs(pixels - 255).sum(axis=2) > 30).mean())


def test_the_report_renders_in_chromium_with_the_stored_numbers(browser, tmp_path):
    from selenium.webdriver.common.by import By

    store_path = tmp_path / "runs.db"
    configs = plan(TINY, strategies=BOUNDS, scenarios=["class"], seeds=[0, 1])
    with RunStore(store_path) as store:
        compare(configs, store, jobs=1, progress=False)
        store.put(fake_run(HOSTILE, "class", 0, family="replay", params={"x": HOSTILE},
                           **{k: v for k, v in TINY.to_dict().items()
                              if k not in ("strategy", "scenario", "seed", "strategy_params")}))
        runs = store.select()
    page = write_report(runs, tmp_path / "report.html", title="browser test")
    browser.get(page.resolve().as_uri())
    assert browser.title == "browser test"
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    assert browser.execute_script("return document.scripts.length") == 0  # nothing injected
    figures = browser.find_element(By.CSS_SELECTOR, ".figures")
    assert figures.size["width"] > 600 and figures.size["height"] > 200
    assert non_blank(figures.screenshot_as_png) > 0.01
    heat = browser.find_element(By.CSS_SELECTOR, "figure.strategy svg")
    assert non_blank(heat.screenshot_as_png) > 0.2  # the coloured cells of the heat map
    # The table holds the stored numbers: recomputed here from the SQLite file's matrices.
    with sqlite3.connect(store_path) as db:
        stored = {}
        for strategy, record in db.execute("SELECT strategy, record FROM runs"):
            matrix = np.array(json.loads(record)["accuracy_matrix"])
            stored.setdefault(strategy, []).append(matrix[-1].mean())
    rows = browser.find_elements(By.CSS_SELECTOR, "table.comparison tbody tr")
    assert sorted(r.get_attribute("data-strategy") for r in rows) == sorted(stored)
    for row in rows:
        values = stored[row.get_attribute("data-strategy")]
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        mean = np.mean(values)
        shown = f"{100 * mean:.1f}" + (f" ± {100 * np.std(values, ddof=1):.1f}"
                                       if len(values) > 1 else "")
        assert cells[3] == shown and cells[2] == str(len(values))
        assert math.isclose(float(row.get_attribute("data-acc")), mean, abs_tol=1e-12)
    shot = Path(tmp_path / "report.png")
    shot.write_bytes(browser.get_screenshot_as_png())
    assert non_blank(shot.read_bytes()) > 0.02
