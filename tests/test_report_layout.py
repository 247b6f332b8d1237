"""The report's layout in headless Chromium (tests/browser.py): the lesson panel on top, no two
texts of a figure overlapping, a table that sorts by a clicked header and that a 900 px window
does not cut off, the stability-gap section in its group with its figures side by side. A
crowded hand-made comparison (every registered strategy, near-equal results in each family,
hyper-parameter variants, a long hostile name, continual-evaluation records over 3,000 steps)
makes overlaps likely.

Without Chromium these tests are skipped with how to enable it, except under CI=true."""

import json
from html import unescape

import pytest

from browser import measure, require_chromium
from fake_runs import continual_record, fake_run, with_continual
from forgetless.report import write_report
from forgetless.results.lesson import lesson
from forgetless.strategies import STRATEGIES

HOSTILE = "<b>a rather long strategy name</b> & \"quoted\""
#: Class-incremental strategies given a continual-evaluation record, with the depth of their dip.
DIPS = {"naive": 0.6, "er": 0.3, "er-ace": 0.15, HOSTILE: 0.2}
ACC = {"task": {"baseline": 0.93, "regularization": 0.95, "replay": 0.97, "architecture": 0.99},
       "domain": {"baseline": 0.60, "regularization": 0.64, "replay": 0.85},
       "class": {"baseline": 0.19, "regularization": 0.19, "replay": 0.80}}


def crowded_runs():
    runs = []
    for index, (name, cls) in enumerate(sorted(STRATEGIES.items())):
        scenarios = ["task"] if cls.needs_task_id else sorted(cls.scenarios)
        for scenario in scenarios:
            family = cls.family
            acc = {"naive": 0.2, "joint": 0.97, "cumulative": 0.96}.get(name, ACC[scenario].get(
                family, 0.5)) if scenario == "class" else ACC[scenario].get(family, 0.5)
            for seed in (0, 1):
                runs.append(fake_run(
                    name, scenario, seed, family=family, acc=acc + 0.002 * (index % 3 + seed),
                    forgetting=max(0.0, 0.97 - acc) if scenario == "class" else 0.05,
                    strategy_bytes=0 if name == "naive" else 100_000 * (1 + index % 4),
                    train_seconds=10.0 + 0.3 * index, stores_raw_data=cls.stores_raw_data,
                    needs_task_id=cls.needs_task_id))
    for lam in (10, 1000):  # two variants of one strategy: labels with their parameter
        runs += [fake_run("ewc", "class", seed, family="regularization", acc=0.19,
                          forgetting=0.78, strategy_bytes=400_000, train_seconds=12.0,
                          params={"lam": lam}) for seed in (0, 1)]
    runs += [fake_run(HOSTILE, "class", seed, family="replay", acc=0.8, forgetting=0.15,
                      strategy_bytes=200_000, train_seconds=14.0) for seed in (0, 1)]
    for run in runs:
        name = run.config["strategy"]
        if run.config["scenario"] == "class" and name in DIPS and not run.config[
                "strategy_params"]:
            with_continual(run, continual_record(5, steps_per_task=600, every=20,
                                                 dip=DIPS[name]))
    return runs


# Boxes of every text in every figure, then the first table's order after clicks on headers.
READ_LAYOUT = """
  const texts = Array.from(document.querySelectorAll('svg'), svg => ({
    kind: svg.getAttribute('class') || '', title: svg.getAttribute('aria-label'),
    frame: svg.getBoundingClientRect().toJSON(),
    boxes: Array.from(svg.querySelectorAll('text'), t => {
      const r = t.getBoundingClientRect();
      return {text: t.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom};
    })}));
  const panel = document.querySelector('section.lesson');
  const groups = Array.from(document.querySelectorAll('section.group'), s => rect('#' + s.id));
  const gap = document.querySelector('section.stability-gap');
  const gap_group = gap && gap.closest('section.group');
  const gaps = {section: gap && rect('section.stability-gap'),
                group: gap_group && rect('#' + gap_group.id),
                strategies: gap_group && rect('#' + gap_group.id + ' .strategies'),
                cards: rects('section.stability-gap figure'),
                figures: rects('section.stability-gap svg'),
                curves: rects('section.stability-gap polyline.accuracy-curve').length,
                switches: rects('section.stability-gap line.task-switch').length};
  const table = document.querySelector('table.comparison');
  const order = () => Array.from(table.tBodies[0].rows, tr => ({
    strategy: tr.dataset.label, acc: parseFloat(tr.dataset.acc)}));
  const heads = Array.from(table.tHead.rows[0].cells);
  const acc = heads.find(th => th.textContent.startsWith('ACC'));
  const strategy = heads.find(th => th.textContent === 'strategy');
  const sorts = {grouped: order()};
  acc.click(); sorts.acc_first = order(); sorts.acc_first_state = acc.getAttribute('aria-sort');
  acc.click(); sorts.acc_second = order();
  strategy.click(); sorts.strategy = order();
  sorts.sorted_class = table.classList.contains('sorted');
  heads[0].click(); sorts.restored = order();
  sorts.restored_class = table.classList.contains('sorted');
  return {texts: texts, panel: panel && rect('section.lesson'),
          panel_text: panel && panel.textContent, groups: groups, sorts: sorts, gaps: gaps,
          first_scenario: table.dataset.scenario};
"""

READ_WIDTH = """
  const box = rect('.table-scroll'), table = document.querySelector('table.comparison');
  const scroller = document.querySelector('.table-scroll');
  return {container: box, table: rect('table.comparison'), viewport: innerWidth,
          overflow: getComputedStyle(scroller).overflowX,
          scroll_width: scroller.scrollWidth, client_width: scroller.clientWidth,
          last_cell: table.tBodies[0].rows[0].cells.length};
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    require_chromium()
    runs = crowded_runs()
    folder = tmp_path_factory.mktemp("layout")
    page = write_report(runs, folder / "report.html", title="layout test")
    return runs, page, folder


@pytest.fixture(scope="module")
def layout(report):
    runs, page, folder = report
    found = measure(page, READ_LAYOUT, width=1400, png=folder / "whole.png")
    assert found.errors == []
    return found.value


def overlapping(boxes: list[dict], slack: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of texts whose boxes intersect by more than ``slack`` px both ways."""
    pairs = []
    for k, a in enumerate(boxes):
        for b in boxes[k + 1:]:
            if (min(a["right"], b["right"]) - max(a["left"], b["left"]) > slack
                    and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > slack):
                pairs.append((a["text"], b["text"]))
    return pairs


def test_the_overlap_check_sees_overlapping_boxes():
    a = {"text": "a", "left": 0, "right": 10, "top": 0, "bottom": 10}
    assert overlapping([a, dict(a, text="b", left=5, right=15)]) == [("a", "b")]
    assert overlapping([a, dict(a, text="b", left=10, right=20)]) == []  # touching is fine


def test_the_lesson_panel_opens_the_page_with_the_lessons_sentences(report, layout):
    runs = report[0]
    assert layout["panel"] is not None, "no lesson panel"
    assert layout["panel"]["y"] < 400 and all(layout["panel"]["y"] < g["y"]
                                              for g in layout["groups"])
    shown = " ".join(layout["panel_text"].split())
    sentences = lesson(runs).sentences
    assert len(sentences) >= 5
    for sentence in sentences:
        assert " ".join(sentence.split()) in shown
    assert shown.count("class-incremental") >= 2 and layout["first_scenario"] == "class"


def test_no_two_texts_of_a_figure_overlap(layout):
    scatters = [f for f in layout["texts"] if f["kind"] == "scatter"]
    assert len(scatters) == 2 * 3  # two cost plots per scenario
    legend = [b["text"] for b in scatters[0]["boxes"]]
    assert unescape(HOSTILE) in legend and "ewc (lam=10)" in legend  # every strategy named
    for figure in layout["texts"]:
        assert overlapping(figure["boxes"]) == [], figure["title"]


def test_the_table_sorts_by_a_clicked_header_and_returns_to_its_groups(layout):
    sorts = layout["sorts"]
    accs = [r["acc"] for r in sorts["acc_first"]]
    assert accs == sorted(accs, reverse=True) and sorts["acc_first_state"] == "descending"
    assert [r["acc"] for r in sorts["acc_second"]] == sorted(accs)
    names = [r["strategy"] for r in sorts["strategy"]]
    assert names == sorted(names, key=str.lower) and sorts["sorted_class"]
    assert sorts["restored"] == sorts["grouped"] and not sorts["restored_class"]
    assert sorts["grouped"] != sorts["acc_first"]  # the grouped order is not already by ACC


def test_a_900_px_window_does_not_cut_the_table_off(report):
    _, page, folder = report
    found = measure(page, READ_WIDTH, width=900, height=1200, png=folder / "narrow.png")
    seen = found.value
    assert found.errors == [] and found.page_width <= 900  # nothing widens the page itself
    container = seen["container"]
    assert container["x"] >= 0 and container["x"] + container["width"] <= seen["viewport"]
    fits = seen["table"]["x"] + seen["table"]["width"] <= container["x"] + container["width"]
    scrolls = seen["overflow"] in ("auto", "scroll") and seen["scroll_width"] >= \
        seen["table"]["width"] - 1
    assert fits or scrolls, json.dumps(seen)


def test_the_stability_gap_section_sits_in_its_group_with_its_figures_apart(layout):
    gaps = layout["gaps"]
    assert gaps["section"] is not None, "no stability-gap section"
    group, section = gaps["group"], gaps["section"]
    assert group["y"] < gaps["strategies"]["y"] < section["y"]  # after the heat maps
    assert section["y"] + section["height"] <= group["y"] + group["height"]
    cards, figures = gaps["cards"], gaps["figures"]
    assert len(cards) == len(figures) == len(DIPS)  # one per strategy with a record
    assert len({round(c["y"]) for c in cards}) < len(cards)  # side by side where they fit
    assert (gaps["curves"], gaps["switches"]) == (5 * len(DIPS), 4 * len(DIPS))
    for k, a in enumerate(cards):
        assert a["width"] > 250 and a["x"] + a["width"] <= 1400  # inside the 1400 px window
        for b in cards[k + 1:]:
            assert (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                    or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])
    for card, figure in zip(cards, figures, strict=True):  # each figure inside its card
        assert card["x"] <= figure["x"] and figure["x"] + figure["width"] <= card["x"] + card[
            "width"]
    gap_texts = [f for f in layout["texts"] if f["kind"] == "stability-gap"]
    assert len(gap_texts) == len(DIPS)
    for figure in gap_texts:  # no text cut off by the figure's edge (the long name's title)
        frame = figure["frame"]
        assert all(frame["left"] <= b["left"] and b["right"] <= frame["right"] + 0.5
                   and frame["top"] <= b["top"] and b["bottom"] <= frame["bottom"] + 0.5
                   for b in figure["boxes"]), figure["title"]
    labels = [b["text"] for b in gap_texts[0]["boxes"]]
    assert "3000" in labels and "training steps" in labels and "task switch" in labels
