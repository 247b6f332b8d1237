"""Small inline SVG figures, written by hand: no plotting library, no script, every text escaped.

- ``heat_map``: an accuracy matrix, one cell per (after task i, task j), value printed;
- ``task_curves``: each task's accuracy from when it was learned to the end of the stream
  (forgetting is a falling line);
- ``scatter``: one point per strategy (e.g. ACC against train time), coloured by family.
"""

from __future__ import annotations

import math
from html import escape

FAMILY_COLORS = {"baseline": "#6b7280", "regularization": "#2563eb", "replay": "#ea580c",
                 "architecture": "#16a34a", "hybrid": "#9333ea"}
TASK_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf")
FONT = "font-family='sans-serif'"


def family_color(family: str) -> str:
    return FAMILY_COLORS.get(family, "#111827")


def _text(x: float, y: float, text: str, size: int = 11, anchor: str = "middle",
          extra: str = "") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' {FONT}"
            f"{' ' + extra if extra else ''}>{escape(str(text))}</text>")


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(title, quote=True)}'>"
            f"<title>{escape(title)}</title>"
            f"<rect width='{width}' height='{height}' fill='#ffffff'/>" + "".join(body) + "</svg>")


def _blend(value: float) -> str:
    """0 -> white, 1 -> dark blue."""
    value = min(max(value, 0.0), 1.0)
    low, high = (255, 255, 255), (8, 69, 148)
    r, g, b = (round(lo + (hi - lo) * value) for lo, hi in zip(low, high, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heat_map(matrix: list[list[float]], title: str, cell: int = 34) -> str:
    """Rows: after training task i; columns: accuracy (%) on task j."""
    t = len(matrix)
    left, top = 58, 46
    width, height = max(left + t * cell + 8, 7 * len(title) + 10), top + t * cell + 10
    body = [_text(width / 2, 13, title, 12, extra="font-weight='bold'"),
            _text(left + t * cell / 2, 28, "accuracy on task j (%)", 10)]
    for j in range(t):
        body.append(_text(left + j * cell + cell / 2, top - 4, f"{j + 1}", 10))
    for i, row in enumerate(matrix):
        body.append(_text(left - 4, top + i * cell + cell / 2 + 4, f"after {i + 1}", 10, "end"))
        for j, value in enumerate(row):
            x, y = left + j * cell, top + i * cell
            ink = "#ffffff" if value > 0.55 else "#111827"
            body.append(f"<rect x='{x}' y='{y}' width='{cell - 1}' height='{cell - 1}' "
                        f"fill='{_blend(value)}'/>")
            body.append(_text(x + cell / 2, y + cell / 2 + 4, f"{100 * value:.0f}", 10,
                              extra=f"fill='{ink}'"))
    return _svg(width, height, body, title)


def _axes(left, top, w, h, x_ticks, y_ticks, x_label, y_label) -> list[str]:
    """Axis lines, ticks (position, text) already in pixels, and labels."""
    body = [f"<line x1='{left}' y1='{top + h}' x2='{left + w}' y2='{top + h}' stroke='#111827'/>",
            f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + h}' stroke='#111827'/>"]
    for x, label in x_ticks:
        body.append(f"<line x1='{x:.1f}' y1='{top + h}' x2='{x:.1f}' y2='{top + h + 4}' "
                    "stroke='#111827'/>")
        body.append(_text(x, top + h + 15, label, 10))
    for y, label in y_ticks:
        body.append(f"<line x1='{left - 4}' y1='{y:.1f}' x2='{left + w}' y2='{y:.1f}' "
                    "stroke='#e5e7eb'/>")
        body.append(_text(left - 6, y + 3, label, 10, "end"))
    body.append(_text(left + w / 2, top + h + 30, x_label, 10))
    body.append(_text(12, top + h / 2, y_label, 10,
                      extra=f"transform='rotate(-90 12 {top + h / 2:.1f})'"))
    return body


def task_curves(matrix: list[list[float]], title: str, width: int = 300,
                height: int = 210) -> str:
    """One line per task j: its accuracy after training task i, for i >= j."""
    t = len(matrix)
    left, top, right, bottom = 42, 22, 56, 38
    w, h = width - left - right, height - top - bottom

    def px(i: int) -> float:
        return left + (w * i / (t - 1) if t > 1 else w / 2)

    def py(value: float) -> float:
        return top + h * (1 - min(max(value, 0.0), 1.0))

    body = [_text(left + w / 2, 13, title, 12, extra="font-weight='bold'")]
    body += _axes(left, top, w, h, [(px(i), str(i + 1)) for i in range(t)],
                  [(py(v / 100), str(v)) for v in (0, 25, 50, 75, 100)],
                  "after training task", "accuracy %")
    for j in range(t):
        color = TASK_COLORS[j % len(TASK_COLORS)]
        points = " ".join(f"{px(i):.1f},{py(matrix[i][j]):.1f}" for i in range(j, t))
        if t - j > 1:
            body.append(f"<polyline points='{points}' fill='none' stroke='{color}' "
                        "stroke-width='2'/>")
        body.append(f"<circle cx='{px(j):.1f}' cy='{py(matrix[j][j]):.1f}' r='3' "
                    f"fill='{color}'><title>task {j + 1}</title></circle>")
        if j < 12:  # the legend, right of the plot
            y = top + 6 + 14 * j
            body.append(f"<line x1='{left + w + 8}' y1='{y - 4}' x2='{left + w + 20}' "
                        f"y2='{y - 4}' stroke='{color}' stroke-width='2'/>")
            body.append(_text(left + w + 24, y, f"task {j + 1}", 10, "start"))
    return _svg(width, height, body, title)


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks, value = [round(first, 10)], first
    while value < high - step * 1e-9:  # the last tick reaches or passes ``high``
        value += step
        ticks.append(round(value, 10))
    return ticks


def scatter(points: list[dict], title: str, x_label: str, y_label: str = "ACC %",
            log_x: bool = False, x_format=None, width: int = 420, height: int = 300) -> str:
    """``points``: dicts with ``x``, ``y`` (a fraction, drawn as %), ``label`` and ``family``.

    ``log_x`` draws x on a log10 scale (values below the smallest positive one are clamped to
    it, so a zero cost still shows)."""
    x_format = x_format or (lambda v: f"{v:g}")
    left, top, right, bottom = 46, 24, 56, 40
    w, h = width - left - right, height - top - bottom
    xs = [p["x"] for p in points if p["x"] is not None and not math.isnan(p["x"])]
    body = [_text(left + w / 2, 14, title, 12, extra="font-weight='bold'")]
    if not xs:
        body.append(_text(width / 2, height / 2, "no cost measured", 11))
        return _svg(width, height, body, title)
    if log_x:
        floor = min([x for x in xs if x > 0] or [1.0])
        transform = lambda v: math.log10(max(v, floor))  # noqa: E731
        low, high = math.floor(transform(min(xs))), math.ceil(transform(max(xs)))
        high = max(high, low + 1)
        ticks = [(float(e), x_format(10.0 ** e)) for e in range(int(low), int(high) + 1)]
    else:
        transform = float  # type: ignore[assignment]
        values = _nice_ticks(0.0, max(xs) * 1.05)
        low, high = values[0], values[-1]
        ticks = [(v, x_format(v)) for v in values]

    def px(v: float) -> float:
        return left + w * (transform(v) - low) / (high - low)

    def ptx(t: float) -> float:
        return left + w * (t - low) / (high - low)

    ys = [p["y"] for p in points if p["x"] is not None and not math.isnan(p["x"])]
    y_low = min(0.9, math.floor(10 * min(ys)) / 10)  # the y axis starts near the lowest ACC
    y_ticks = [v for v in _nice_ticks(100 * y_low, 100.0, 5) if 100 * y_low <= v <= 100]

    def py(v: float) -> float:
        return top + h * (1 - (min(max(v, y_low), 1.0) - y_low) / (1.0 - y_low))

    body += _axes(left, top, w, h, [(ptx(t), text) for t, text in ticks],
                  [(py(v / 100), f"{v:g}") for v in y_ticks], x_label, y_label)
    for p in points:
        if p["x"] is None or math.isnan(p["x"]):
            continue
        x, y = px(p["x"]), py(p["y"])
        color = family_color(p.get("family", ""))
        tip = f"{p['label']}: {100 * p['y']:.1f}% at {x_format(p['x'])}"
        body.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='5' fill='{color}' "
                    f"fill-opacity='0.85'><title>{escape(tip)}</title></circle>")
        body.append(_text(x + 7, y - 6, p["label"], 10, "start", extra=f"fill='{color}'"))
    return _svg(width, height, body, title)
