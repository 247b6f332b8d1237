"""Small inline SVG figures, written by hand: no plotting library, no script, every text escaped.

- ``heat_map``: an accuracy matrix, one cell per (after task i, task j), value printed; cells of
  tasks not trained yet (above the diagonal) are hatched and carry no number;
- ``task_curves``: each task's accuracy from when it was learned to the end of the stream
  (forgetting is a falling line), each task with its own colour, dash and marker;
- ``stability_gap``: each task's accuracy against training steps from a continual-evaluation
  record, task switches as dashed vertical lines (the dip after a switch is the stability gap);
- ``scatter``: one marker per strategy (e.g. ACC against train time), coloured by family, shaped
  per strategy and named in a legend beside the plot -- no label sits in the plot, so none can
  cover another.

Texts never overlap by construction: legend rows are ``LEGEND_ROW`` pixels apart (more than a
line of ``LEGEND_FONT``-pixel text), and tick labels that would run into their neighbour (by a
conservative estimate of text width) are left out.
"""

from __future__ import annotations

import math
from html import escape

FAMILY_COLORS = {"baseline": "#6b7280", "regularization": "#2563eb", "replay": "#ea580c",
                 "architecture": "#16a34a", "weight-space": "#0d9488", "hybrid": "#9333ea",
                 "parameter-efficient": "#ca8a04", "frozen-features": "#be185d"}
TASK_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf")
#: Marker shapes, in the order strategies of one family (or tasks of one stream) take them.
SHAPES = ("circle", "square", "triangle", "diamond", "triangle-down", "plus", "cross", "star")
#: Dash patterns of the task curves (SVG stroke-dasharray; "" is a solid line).
DASHES = ("", "6 3", "2 2", "8 3 2 3", "4 4", "1 3", "10 2", "3 2 1 2")
FONT = "font-family='sans-serif'"
LEGEND_FONT, LEGEND_ROW = 10, 15
#: An upper bound on the width of one character of 10 px sans-serif text, in pixels.
CHAR_WIDTH = 6.5
UNTRAINED_FILL, HATCH = "#f3f4f6", "#c7cbd1"


def family_color(family: str) -> str:
    return FAMILY_COLORS.get(family, "#111827")


def _text(x: float, y: float, text: str, size: int = 11, anchor: str = "middle",
          extra: str = "") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' {FONT}"
            f"{' ' + extra if extra else ''}>{escape(str(text))}</text>")


def _svg(width: float, height: float, body: list[str], title: str, kind: str = "") -> str:
    width, height = math.ceil(width), math.ceil(height)
    named = f" class='{kind}'" if kind else ""
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(title, quote=True)}'"
            f"{named}>"
            f"<title>{escape(title)}</title>"
            f"<rect width='{width}' height='{height}' fill='#ffffff'/>" + "".join(body) + "</svg>")


def marker(shape: str, x: float, y: float, color: str, size: float = 5.0, filled: bool = True,
           tip: str = "", kind: str = "") -> str:
    """One marker centred on (x, y); ``size`` is its half-width, ``tip`` becomes a tooltip and
    ``kind`` its class."""
    paint = (f"fill='{color}' fill-opacity='0.85' stroke='#ffffff' stroke-width='0.8'"
             if filled else f"fill='#ffffff' stroke='{color}' stroke-width='1.6'")
    s = size
    if shape == "circle":
        element = f"<circle cx='{x:.1f}' cy='{y:.1f}' r='{s:.1f}' {paint}"
    elif shape == "square":
        element = (f"<rect x='{x - s * 0.85:.1f}' y='{y - s * 0.85:.1f}' width='{1.7 * s:.1f}' "
                   f"height='{1.7 * s:.1f}' {paint}")
    elif shape in ("plus", "cross"):
        k = 0.8 if shape == "cross" else 1.0
        arms = ((-s * k, -s * k, s * k, s * k), (-s * k, s * k, s * k, -s * k)) \
            if shape == "cross" else ((-s, 0, s, 0), (0, -s, 0, s))
        path = " ".join(f"M{x + a:.1f},{y + b:.1f} L{x + c:.1f},{y + d:.1f}"
                        for a, b, c, d in arms)
        element = f"<path d='{path}' fill='none' stroke='{color}' stroke-width='2.2'"
    else:
        corners = {
            "triangle": ((0, -1.15), (1, 0.75), (-1, 0.75)),
            "triangle-down": ((0, 1.15), (1, -0.75), (-1, -0.75)),
            "diamond": ((0, -1.2), (1.2, 0), (0, 1.2), (-1.2, 0)),
            "star": tuple((math.sin(math.pi * k / 5) * (1.2 if k % 2 == 0 else 0.5),
                           -math.cos(math.pi * k / 5) * (1.2 if k % 2 == 0 else 0.5))
                          for k in range(10)),
        }[shape]
        points = " ".join(f"{x + s * a:.1f},{y + s * b:.1f}" for a, b in corners)
        element = f"<polygon points='{points}' {paint}"
    if kind:
        element += f" class='{kind}'"
    return element + (f"><title>{escape(tip)}</title></{element[1:element.index(' ')]}>"
                      if tip else "/>")


def marker_style(index: int) -> tuple[str, bool]:
    """The ``index``-th (shape, filled) pair: every shape filled, then every shape hollow."""
    return SHAPES[index % len(SHAPES)], (index // len(SHAPES)) % 2 == 0


def assign_markers(points: list[dict]) -> None:
    """Give each point without a ``marker`` the next (shape, filled) of its family, so a colour
    and a shape together name one strategy."""
    used: dict[str, int] = {}
    for point in points:
        family = point.get("family", "")
        index = used.get(family, 0)
        used[family] = index + 1
        point.setdefault("marker", marker_style(index))


def _blend(value: float) -> str:
    """0 -> white, 1 -> dark blue."""
    value = min(max(value, 0.0), 1.0)
    low, high = (255, 255, 255), (8, 69, 148)
    r, g, b = (round(lo + (hi - lo) * value) for lo, hi in zip(low, high, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _hatched_cell(x: float, y: float, size: float, kind: str = "untrained") -> list[str]:
    """A grey cell crossed by diagonal lines: clearly not a measured value."""
    body = [f"<rect class='{kind}' x='{x}' y='{y}' width='{size}' height='{size}' "
            f"fill='{UNTRAINED_FILL}'><title>not trained yet</title></rect>"]
    step = size / 4
    for k in range(1, 8):  # lines x + y = c across the square, clipped by hand
        c = k * step
        x1, y1 = x + max(0.0, c - size), y + min(c, size)
        x2, y2 = x + min(c, size), y + max(0.0, c - size)
        body.append(f"<line x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' "
                    f"stroke='{HATCH}' stroke-width='1'/>")
    return body


def heat_map(matrix: list[list[float]], title: str, cell: int = 34) -> str:
    """Rows: after training task i; columns: accuracy (%) on task j. Cells above the diagonal
    (task j not trained yet) are hatched and carry no number."""
    t = len(matrix)
    left, top = 58, 46
    width = max(left + t * cell + 8, 7 * len(title) + 10)
    height = top + t * cell + 10 + (18 if t > 1 else 0)
    body = [_text(width / 2, 13, title, 12, extra="font-weight='bold'"),
            _text(left + t * cell / 2, 28, "accuracy on task j (%)", 10)]
    for j in range(t):
        body.append(_text(left + j * cell + cell / 2, top - 4, f"{j + 1}", 10))
    for i, row in enumerate(matrix):
        body.append(_text(left - 4, top + i * cell + cell / 2 + 4, f"after {i + 1}", 10, "end"))
        for j, value in enumerate(row):
            x, y = left + j * cell, top + i * cell
            if j > i:
                body += _hatched_cell(x, y, cell - 1)
                continue
            ink = "#ffffff" if value > 0.55 else "#111827"
            body.append(f"<rect class='trained' x='{x}' y='{y}' width='{cell - 1}' "
                        f"height='{cell - 1}' fill='{_blend(value)}'/>")
            body.append(_text(x + cell / 2, y + cell / 2 + 4, f"{100 * value:.0f}", 10,
                              extra=f"fill='{ink}'"))
    if t > 1:
        y = top + t * cell + 6
        body += _hatched_cell(left, y, 12, "key")
        body.append(_text(left + 18, y + 10, "not trained yet", 10, "start"))
    return _svg(width, height, body, title, "heat-map")


def _fits(ticks: list[tuple[float, str]], gap: float = 6.0) -> list[tuple[float, str]]:
    """The x tick labels left after dropping each one that would touch the last one kept."""
    kept, right = [], -math.inf
    for x, label in sorted(ticks):
        half = CHAR_WIDTH * len(label) / 2
        if x - half >= right + gap:
            kept.append((x, label))
            right = x + half
    return kept


def _axes(left, top, w, h, x_ticks, y_ticks, x_label, y_label) -> list[str]:
    """Axis lines, ticks (position, text) already in pixels, and labels."""
    body = [f"<line x1='{left}' y1='{top + h}' x2='{left + w}' y2='{top + h}' stroke='#111827'/>",
            f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + h}' stroke='#111827'/>"]
    labelled = {x for x, _ in _fits(x_ticks)}
    for x, label in x_ticks:
        body.append(f"<line x1='{x:.1f}' y1='{top + h}' x2='{x:.1f}' y2='{top + h + 4}' "
                    "stroke='#111827'/>")
        if x in labelled:
            body.append(_text(x, top + h + 15, label, 10))
    for y, label in y_ticks:
        body.append(f"<line x1='{left - 4}' y1='{y:.1f}' x2='{left + w}' y2='{y:.1f}' "
                    "stroke='#e5e7eb'/>")
        body.append(_text(left - 6, y + 3, label, 10, "end"))
    body.append(_text(left + w / 2, top + h + 30, x_label, 10))
    body.append(_text(12, top + h / 2, y_label, 10,
                      extra=f"transform='rotate(-90 12 {top + h / 2:.1f})'"))
    return body


def _legend(x: float, top: float, entries: list[tuple[str, str]]) -> tuple[list[str], float]:
    """One row per (symbol drawn around the origin, label), ``LEGEND_ROW`` pixels apart from
    ``top``, starting at ``x``: the elements and the width they take."""
    body, longest = [], 0
    for k, (symbol, label) in enumerate(entries):
        y = top + LEGEND_ROW * k
        body.append(f"<g transform='translate({x + 9:.1f} {y:.1f})'>{symbol}</g>")
        body.append(_text(x + 22, y + LEGEND_FONT * 0.35, label, LEGEND_FONT, "start",
                          extra="class='legend'"))
        longest = max(longest, len(str(label)))
    return body, 22 + CHAR_WIDTH * longest + 6


#: Pixels between two tasks' curves where their values are equal.
LIFT = 1.6
#: The y ticks of a plot of accuracy in percent.
PERCENT_TICKS = (0, 25, 50, 75, 100)


def _task_style(j: int) -> tuple[str, str]:
    """Task j's colour and dash attribute ("" for a solid line), the same in every figure."""
    dash = DASHES[j % len(DASHES)]
    return TASK_COLORS[j % len(TASK_COLORS)], f" stroke-dasharray='{dash}'" if dash else ""


def _polyline(kind: str, points: list[tuple[float, float]], color: str, width: float,
              dashing: str = "", tip: str = "") -> str:
    """A line through ``points`` (pixels), of class ``kind``; ``tip`` becomes a tooltip."""
    element = (f"<polyline class='{kind}' points='"
               + " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
               + f"' fill='none' stroke='{color}' stroke-width='{width}'{dashing}")
    return element + (f"><title>{escape(tip)}</title></polyline>" if tip else "/>")


def _task_sample(j: int, with_marker: bool = True) -> str:
    """Task j's legend symbol: a short line in its colour and dash, with its marker."""
    color, dashing = _task_style(j)
    line = f"<line x1='-9' y1='0' x2='9' y2='0' stroke='{color}' stroke-width='1.8'{dashing}/>"
    shape, filled = marker_style(j)
    return line + (marker(shape, 0, 0, color, 3.2, filled) if with_marker else "")


def task_curves(matrix: list[list[float]], title: str, width: int = 310,
                height: int = 210) -> str:
    """One line per task j: its accuracy after training task i, for i >= j.

    Tasks differ in colour, dash and marker. Curves that coincide (several tasks at 100%) would
    hide one another, so task j is drawn ``LIFT`` px per task above or below its value (at most
    a few px; each marker's tooltip has the exact value) and its markers a few px sideways."""
    t = len(matrix)
    left, top, right, bottom = 42, 22, 72, 38
    w, h = width - left - right, height - top - bottom
    dodge = min(2.5, (w / max(t - 1, 1)) / (2 * t))  # px between two tasks' markers

    def px(i: int, j: int = -1) -> float:
        base = left + (w * i / (t - 1) if t > 1 else w / 2)
        return base if j < 0 else base + dodge * (j - (t - 1) / 2)

    lift = min(LIFT, 8.0 / t)

    def py(value: float, j: float = (t - 1) / 2) -> float:
        return top + h * (1 - min(max(value, 0.0), 1.0)) - lift * (j - (t - 1) / 2)

    body = [_text(left + w / 2, 13, title, 12, extra="font-weight='bold'")]
    body += _axes(left, top, w, h, [(px(i), str(i + 1)) for i in range(t)],
                  [(py(v / 100), str(v)) for v in PERCENT_TICKS],
                  "after training task", "accuracy %")
    entries = []
    for j in range(t):
        color, dashing = _task_style(j)
        shape, filled = marker_style(j)
        points = [(px(i, j), py(matrix[i][j], j)) for i in range(j, t)]
        if len(points) > 1:
            body.append(_polyline("task-curve", points, color, 1.6, dashing))
        for i, (x, y) in zip(range(j, t), points, strict=True):
            body.append(marker(shape, x, y, color, 2.6, filled,
                               tip=f"task {j + 1} after task {i + 1}: "
                                   f"{100 * matrix[i][j]:.1f}%", kind="point"))
        entries.append((_task_sample(j), f"task {j + 1}"))
    legend, _ = _legend(left + w + 16, top + 4, entries[:12])  # right of the dodged markers
    body += legend
    return _svg(width, max(height, top + 4 + LEGEND_ROW * min(t, 12)), body, title,
                "task-curves")


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


def _measured(value) -> bool:
    return value is not None and not math.isnan(value)


#: With ``log_x``, where a zero sits (pixels right of the y axis) and where the log scale
#: starts, with an axis break between them.
ZERO_AT, LOG_FROM = 14, 64


def scatter(points: list[dict], title: str, x_label: str, y_label: str = "ACC %",
            log_x: bool = False, x_format=None, width: int = 300, height: int = 260) -> str:
    """``points``: dicts with ``x``, ``y`` (a fraction, drawn as %), ``label``, ``family`` and
    optionally ``marker`` (shape, filled); a legend to the right names every point.

    ``log_x`` draws x on a log10 scale; zeros (which a log scale cannot show) get their own
    tick left of an axis break, labelled ``x_format(0)``."""
    x_format = x_format or (lambda v: f"{v:g}")
    left, top, bottom = 46, 24, 40
    w, h = width - left - 12, height - top - bottom
    shown = [p for p in points if _measured(p["x"])]
    body = [_text(left + w / 2, 14, title, 12, extra="font-weight='bold'")]
    if not shown:
        body.append(_text(width / 2, height / 2, "no cost measured", 11))
        return _svg(width, height, body, title, "scatter")
    assign_markers(points)
    xs = [p["x"] for p in shown]
    zeros = log_x and any(x <= 0 for x in xs)
    if log_x:
        positive = [x for x in xs if x > 0] or [1.0]
        low = math.floor(math.log10(min(positive)))
        high = max(math.ceil(math.log10(max(positive))), low + 1)
        start = LOG_FROM if zeros else 0

        def px(v: float) -> float:
            if v <= 0:
                return left + ZERO_AT
            return left + start + (w - start) * (math.log10(v) - low) / (high - low)

        ticks = [(px(10.0 ** e), x_format(10.0 ** e)) for e in range(low, high + 1)]
        if zeros:
            ticks.append((left + ZERO_AT, x_format(0)))
    else:
        values = _nice_ticks(0.0, max(xs) * 1.05)

        def px(v: float) -> float:
            return left + w * (v - values[0]) / (values[-1] - values[0])

        ticks = [(px(v), x_format(v)) for v in values]

    y_low = min(0.9, math.floor(10 * min(p["y"] for p in shown)) / 10)  # near the lowest ACC
    y_ticks = [v for v in _nice_ticks(100 * y_low, 100.0, 5) if 100 * y_low <= v <= 100]

    def py(v: float) -> float:
        return top + h * (1 - (min(max(v, y_low), 1.0) - y_low) / (1.0 - y_low))

    body += _axes(left, top, w, h, ticks, [(py(v / 100), f"{v:g}") for v in y_ticks],
                  x_label, y_label)
    if zeros:  # the break: two slanted strokes on the x axis between 0 and the log scale
        for dx in (-3, 3):
            x = left + (ZERO_AT + LOG_FROM) / 2 + dx
            body.append(f"<line x1='{x - 3:.1f}' y1='{top + h + 5}' x2='{x + 3:.1f}' "
                        f"y2='{top + h - 5}' stroke='#111827' stroke-width='1.2'/>")
    entries = []
    for p in points:
        color = family_color(p.get("family", ""))
        shape, filled = p["marker"]
        label = p["label"]
        if _measured(p["x"]):
            tip = f"{label}: {100 * p['y']:.1f}% at {x_format(p['x'])}"
            body.append(marker(shape, px(p["x"]), py(p["y"]), color, 5, filled, tip, "point"))
        else:
            label += " (not measured)"
        entries.append((marker(shape, 0, 0, color, 4.5, filled), label))
    legend, legend_width = _legend(left + w + 14, top + 4, entries)
    body += legend
    total_height = max(height, top + 4 + LEGEND_ROW * len(entries))
    return _svg(left + w + 14 + legend_width, total_height, body, title, "scatter")


def learning_forgetting_plane(curves: list[dict], prior: float | None, title: str,
                              width: int = 340, height: int = 280) -> str:
    """The learning-forgetting plane of a pretrained model (Biderman et al. 2024, "LoRA learns
    less and forgets less"): per strategy, one point per task i, x = the score on task i right
    after learning it (new facts learnt), y = the prior-skills score after task i (what the
    model still knows), joined in task order. ``curves``: dicts with ``points`` [(x, y)...],
    ``label``, ``family``; ``prior``: the pretrained model's prior-skills score (a dashed line:
    a point on it forgot nothing). Up and right is better."""
    left, top, bottom = 46, 24, 40
    w, h = width - left - 12, height - top - bottom

    def px(v: float) -> float:
        return left + w * min(max(v, 0.0), 1.0)

    def py(v: float) -> float:
        return top + h * (1 - min(max(v, 0.0), 1.0))

    ticks = [(v, f"{v:g}") for v in (0, 25, 50, 75, 100)]
    body = [_text(left + w / 2, 14, title, 12, extra="font-weight='bold'")]
    body += _axes(left, top, w, h, [(px(v / 100), s) for v, s in ticks],
                  [(py(v / 100), s) for v, s in ticks], "new task learnt (score %)",
                  "prior skills kept (score %)")
    if prior is not None and _measured(prior):
        body.append(f"<line x1='{left}' y1='{py(prior):.1f}' x2='{left + w}' "
                    f"y2='{py(prior):.1f}' stroke='#111827' stroke-dasharray='4 3'>"
                    f"<title>the pretrained model: {100 * prior:.1f}%</title></line>")
    assign_markers(curves)
    entries = []
    for curve in curves:
        color = family_color(curve.get("family", ""))
        shape, filled = curve["marker"]
        points = [(px(x), py(y)) for x, y in curve["points"]]
        if len(points) > 1:
            body.append(_polyline("plane-curve", points, color, 1.2))
        for k, ((x, y), (vx, vy)) in enumerate(zip(points, curve["points"], strict=True)):
            body.append(marker(shape, x, y, color, 4, filled,
                               f"{curve['label']} after new task {k + 1}: learnt "
                               f"{100 * vx:.1f}%, prior skills {100 * vy:.1f}%", "point"))
        entries.append((marker(shape, 0, 0, color, 4.5, filled), curve["label"]))
    legend, legend_width = _legend(left + w + 14, top + 4, entries)
    body += legend
    total_height = max(height, top + 4 + LEGEND_ROW * len(entries))
    return _svg(left + w + 14 + legend_width, total_height, body, title, "plane")


#: The dash of the task-switch lines (stroke-dasharray), unlike any task's.
SWITCH_DASH = "3 3"


def stability_gap(record: dict, title: str, width: int = 300, height: int = 220) -> str:
    """Each task's accuracy (%) against training steps, from a continual-evaluation record
    (``RunResult.continual``): one line per task from its first evaluation on, in the task's
    colour and dash (as in ``task_curves``), and a dashed vertical line where each task after
    the first starts. An old task's drop right after a switch, climbing back later, is the
    stability gap (De Lange et al. 2023)."""
    steps, accuracy, starts = record["steps"], record["accuracy"], record["task_starts"]
    t = len(starts)
    left, top, bottom = 42, 22, 38
    w, h = width - left - 12, height - top - bottom  # the plot; the legend to its right
    x_ticks = _nice_ticks(0.0, float(max(steps[-1], 1)))

    def px(step: float) -> float:
        return left + w * step / x_ticks[-1]

    def py(value: float) -> float:
        return top + h * (1 - min(max(value, 0.0), 1.0))

    title_width = 7 * len(title) + 10  # 12 px bold, as in ``heat_map``
    body = [_text(max(left + w / 2, title_width / 2), 13, title, 12,
                  extra="font-weight='bold'")]
    body += _axes(left, top, w, h, [(px(v), f"{v:g}") for v in x_ticks],
                  [(py(v / 100), str(v)) for v in PERCENT_TICKS], "training steps",
                  "accuracy %")
    for k, start in enumerate(starts[1:], start=1):
        body.append(f"<line class='task-switch' x1='{px(start):.1f}' y1='{top}' "
                    f"x2='{px(start):.1f}' y2='{top + h}' stroke='#4b5563' stroke-width='1.2' "
                    f"stroke-dasharray='{SWITCH_DASH}'><title>task {k + 1} starts at step "
                    f"{start}</title></line>")
    for j in range(t):
        color, dashing = _task_style(j)
        points = [(px(s), py(row[j])) for s, row in zip(steps, accuracy, strict=True)
                  if row[j] is not None]
        if points:
            body.append(_polyline("accuracy-curve", points, color, 1.4, dashing,
                                  tip=f"task {j + 1}"))
    entries = [(_task_sample(j, with_marker=False), f"task {j + 1}") for j in range(min(t, 12))]
    entries.append((f"<line x1='0' y1='-6' x2='0' y2='6' stroke='#4b5563' stroke-width='1.2' "
                    f"stroke-dasharray='{SWITCH_DASH}'/>", "task switch"))
    legend, legend_width = _legend(left + w + 14, top + 4, entries)
    body += legend
    return _svg(max(left + w + 14 + legend_width, title_width),
                max(height, top + 4 + LEGEND_ROW * len(entries)), body, title, "stability-gap")
