"""Headless Chromium for the tests, driven directly: Debian's `chromium` binary, no driver, no
selenium. Each call starts a fresh browser with a new profile, loads a local HTML file, lets its
scripts run, and returns the DOM as it is then (`dump_dom`), a PNG of the window (`screenshot`),
or what a script measured in the page (`measure`).

Outside CI a machine without Chromium skips the calling test with a one-line reason; with
``CI=true`` a missing Chromium fails it. ``FORGETLESS_CHROMIUM=/path`` names another binary.

Usage::

    from browser import crop, dump_dom, measure, screenshot

    dom = dump_dom(page)                                   # the DOM after the page's scripts
    found = measure(page, "return document.querySelectorAll('svg').length")
    assert found.errors == [] and found.value > 0          # no console or load errors
    boxes = measure(page, "return rect('table.comparison')", png=tmp_path / "page.png")
    crop(tmp_path / "page.png", boxes.value)               # a PIL image of that element
    screenshot(page, tmp_path / "top.png", width=1400, height=1000)  # the window, unprobed

A ``script`` is the body of a function run on the ``load`` event of a copy of the page, with
``rect(selector)`` (the first match's box on the page, or null) and ``rects(selector)`` (all
matches) in scope; its return value must be JSON-serialisable (and its text must not hold
``</script>``). Errors are collected until the DOM is dumped. The copy's probe removes its own
``<script>`` before the page's scripts run, so ``document.scripts`` counts only the page's.

Layout: the page is laid out ``width`` px wide (at least MIN_WIDTH, Chromium's smallest window)
in every call. While the DOM is dumped the viewport is a little shorter than ``height`` (the
window's frame); the screenshot is taken after, at ``width`` x ``height``, so boxes measured in
the same call match the picture unless the page sizes things by the viewport's height (vh).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HOW_TO_ENABLE = ("install Debian's chromium (apt-get install chromium) or set "
                 "FORGETLESS_CHROMIUM=/path/to/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
         "--enable-logging=stderr", "--v=0")
TIMEOUT_S = 90
MIN_WIDTH = 500
PROBE_ID = "forgetless-probe"
# Runs first in <head>: records script errors, failed loads (capture phase), unhandled promise
# rejections, content-security-policy violations and console.error; on load runs the caller's
# function and writes {errors, value, ...} as JSON into a node, rewritten on any later error.
PROBE = """<script>(function () {
  document.currentScript.remove();
  var out = {errors: []}, node = null;
  function publish() { if (node) node.textContent = JSON.stringify(out); }
  function record(message) { out.errors.push(message); publish(); }  // late ones too
  addEventListener('error', function (e) {
    var t = e.target;
    record(t && t !== window ? 'failed to load ' + (t.src || t.href || t.tagName)
                             : String(e.message));
  }, true);
  addEventListener('unhandledrejection', function (e) { record(String(e.reason)); });
  addEventListener('securitypolicyviolation', function (e) {
    record('blocked by the content security policy: ' + e.blockedURI);
  });
  var consoleError = console.error;
  console.error = function () {
    record(Array.prototype.join.call(arguments, ' '));
    return consoleError.apply(console, arguments);
  };
  function box(node) {
    var r = node.getBoundingClientRect();
    return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height};
  }
  function rect(selector) { var n = document.querySelector(selector); return n && box(n); }
  function rects(selector) {
    return Array.prototype.map.call(document.querySelectorAll(selector), box);
  }
  addEventListener('load', function () {
    try { out.value = (function (rect, rects) { %s
      })(rect, rects); }
    catch (e) { out.script_error = String(e && e.stack || e); }
    out.page_width = document.documentElement.scrollWidth;
    out.page_height = document.documentElement.scrollHeight;
    node = document.createElement('pre');
    node.id = '%s'; node.hidden = true;
    document.documentElement.appendChild(node);
    publish();
  });
})();</script>"""


@dataclass(frozen=True)
class Measured:
    """What `measure` read from the page: the script's return value, every error the page
    raised (script errors, failed loads, rejected promises, CSP violations, console.error),
    and the page's full size in px."""

    value: object
    errors: list
    page_width: int
    page_height: int


def find_chromium() -> str | None:
    """``FORGETLESS_CHROMIUM`` if set, else the first Chromium on PATH, else None."""
    named = os.environ.get("FORGETLESS_CHROMIUM")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def require_chromium() -> str:
    """The Chromium binary; skips the calling test outside CI when there is none, fails in CI."""
    binary = find_chromium()
    if binary:
        return binary
    reason = f"the browser test needs headless Chromium: {HOW_TO_ENABLE}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI requires it: {reason}", pytrace=False)
    pytest.skip(reason)


def _run(page: Path, extra: list[str], width: int, height: int, budget_ms: int) -> str:
    if width < MIN_WIDTH:
        raise ValueError(f"width={width}: Chromium lays pages out at least {MIN_WIDTH} px wide; "
                         f"pass width >= {MIN_WIDTH}")
    with tempfile.TemporaryDirectory(prefix="forgetless-chromium-") as profile:
        command = [require_chromium(), *FLAGS, f"--user-data-dir={profile}",
                   f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}",
                   *extra, Path(page).resolve().as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                              cwd=profile)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def dump_dom(page: str | Path, *, width: int = 1400, height: int = 1000,
             budget_ms: int = 5000) -> str:
    """The serialised DOM of ``page`` after its scripts ran (``budget_ms`` of virtual time)."""
    return _run(Path(page), ["--dump-dom"], width, height, budget_ms)


def screenshot(page: str | Path, png: str | Path, *, width: int = 1400, height: int = 1000,
               budget_ms: int = 5000) -> Path:
    """A PNG of the ``width`` x ``height`` window showing ``page`` from its top, written to
    ``png``; for the whole page use ``measure(..., png=...)``."""
    png = Path(png).resolve()
    _run_with_screenshot(Path(page), [], width, height, budget_ms, png)
    return png


def _run_with_screenshot(page: Path, extra: list[str], width: int, height: int,
                         budget_ms: int, png: Path) -> str:
    png.unlink(missing_ok=True)
    out = _run(page, [*extra, f"--screenshot={png}"], width, height, budget_ms)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {png}")
    return out


def with_probe(source: str, script: str) -> str:
    """``source`` with the probe running ``script`` inserted as the first thing in <head>."""
    probe = PROBE % (script, PROBE_ID)
    head = re.search(r"<head\b[^>]*>", source, re.IGNORECASE)
    if head:
        return source[:head.end()] + probe + source[head.end():]
    opening = re.search(r"<html\b[^>]*>", source, re.IGNORECASE)
    at = opening.end() if opening else 0
    return source[:at] + f"<head>{probe}</head>" + source[at:]


def _probed(copy: Path, width: int, height: int, budget_ms: int, png: Path | None) -> dict:
    if png is None:
        dom = _run(copy, ["--dump-dom"], width, height, budget_ms)
    else:
        dom = _run_with_screenshot(copy, ["--dump-dom"], width, height, budget_ms, png)
    found = re.search(rf'<pre id="{PROBE_ID}" hidden="">(.*?)</pre>', dom, re.DOTALL)
    if not found:
        raise RuntimeError(f"the probe wrote nothing into {copy}: did the page load?")
    out = json.loads(html.unescape(found.group(1)))
    if "script_error" in out:
        raise RuntimeError(f"the measuring script failed: {out['script_error']}")
    return out


def measure(page: str | Path, script: str = "return null", *, width: int = 1400,
            height: int | None = None, png: str | Path | None = None,
            budget_ms: int = 5000) -> Measured:
    """Run ``script`` (a function body) on ``page``'s load event in a probed copy of the page
    beside it (so relative links resolve) and return what it measured; the copy is removed.
    With ``png``, the same browser then writes a screenshot there, ``width`` x ``height``
    (default: the whole page), so the boxes measured locate elements in it (see `crop`)."""
    page = Path(page)
    png = Path(png).resolve() if png is not None else None
    copy = page.with_name(f".{page.stem}.probe{page.suffix}")
    copy.write_text(with_probe(page.read_text(encoding="utf-8"), script), encoding="utf-8")
    try:
        whole_page = png is not None and height is None
        out = _probed(copy, width, height or 1000, budget_ms, None if whole_page else png)
        if whole_page:  # the page's height is known only after a first load
            out = _probed(copy, width, out["page_height"], budget_ms, png)
    finally:
        copy.unlink(missing_ok=True)
    return Measured(out.get("value"), out["errors"], out["page_width"], out["page_height"])


def crop(png: str | Path, box: dict):
    """The part of a screenshot inside ``box`` ({x, y, width, height} in px), as a PIL image."""
    from PIL import Image

    left, top = round(box["x"]), round(box["y"])
    return Image.open(png).convert("RGB").crop(
        (left, top, left + round(box["width"]), top + round(box["height"])))
