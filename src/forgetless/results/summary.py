"""From stored runs to comparison tables: one row per strategy variant, its seeds averaged.

Runs are grouped by *protocol* (benchmark, source, model, training budget) and scenario; within a
group, one row per *variant* (a strategy with one set of hyper-parameters). Every metric is
recomputed from the stored accuracy matrices (``forgetless.metrics``), so a table never shows a
number the matrices do not support; runs with a continual-evaluation record add min-ACC and
WC-ACC, recomputed from that record (``forgetless.continual_metrics``), and tables of runs
without one look as before. Rows are grouped by family; within a family the best ACC
comes first.

Formats: plain text for the terminal (``format_text``), CSV (``to_csv``), Markdown
(``to_markdown``).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

import numpy as np

from forgetless.continual_metrics import summarize_continual
from forgetless.metrics import forward_transfer_defined, summarize
from forgetless.results.run_result import RunResult
from forgetless.results.store import protocol_key, variant_key
from forgetless.strategies import STRATEGIES, constructor_parameters
from forgetless.tables import (
    Column,
    fit_columns,
    format_columns,
    format_table,
    terminal_width,
    wrap,
)

FAMILY_ORDER = ("baseline", "regularization", "replay", "architecture", "parameter-efficient",
                "weight-space", "frozen-features", "hybrid")
SCENARIO_ORDER = ("task", "domain", "class")
METRICS = ("acc", "forgetting", "bwt", "fwt")
#: The worst-case metrics of continual evaluation (De Lange et al. 2023), shown only where runs
#: have a continual-evaluation record.
CONTINUAL_METRICS = ("min_acc", "wc_acc")
#: Strategies that keep all data seen (or to come): references to compare with, never a winner.
BOUNDS = frozenset({"joint", "cumulative"})
#: Doing nothing: what every fix is measured against (the lesson, the advisor).
REFERENCE = "naive"
#: A fix must beat naive by at least this much ACC (a fraction) to count as more than "barely".
MARGIN = 0.05


def is_bound(strategy: str) -> bool:
    """A bound, or a composition with one (``ewc+cumulative`` keeps all data too)."""
    return any(part.strip() in BOUNDS for part in strategy.split("+"))


@dataclass
class Stat:
    """Mean and sample standard deviation over seeds (sd is NaN for one seed)."""

    mean: float
    sd: float

    @classmethod
    def of(cls, values) -> Stat:
        """An undefined value (None, e.g. FWT in class-incremental runs) makes the Stat NaN."""
        values = np.asarray([math.nan if v is None else v for v in values], dtype=float)
        sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        return cls(float(values.mean()), sd)

    def within_spread(self, other: Stat) -> bool:
        """Do the two means differ by no more than the larger of the two sds over seeds? Then
        the difference is not significant. False when neither has an sd (one seed each)."""
        spreads = [s for s in (self.sd, other.sd) if not math.isnan(s)]
        return bool(spreads) and abs(self.mean - other.mean) <= max(spreads)

    def percent(self, digits: int = 1) -> str:
        """``12.3 ± 0.4``; "–" where the metric is undefined."""
        if math.isnan(self.mean):
            return "–"
        text = f"{100 * self.mean:.{digits}f}"
        return text if math.isnan(self.sd) else f"{text} ± {100 * self.sd:.{digits}f}"


@dataclass
class Row:
    """One strategy variant in one scenario of one protocol, averaged over its seeds."""

    label: str
    strategy: str
    family: str
    scenario: str
    variant: str
    seeds: list[int]
    run_ids: list[str]
    stats: dict[str, Stat]
    train_seconds: float
    peak_rss_bytes: float
    strategy_bytes: float
    parameters_added: float
    stores_raw_data: bool
    needs_task_id: bool
    strategy_params: dict
    mean_matrix: list[list[float]]
    task_descriptions: list[str]
    time_ratio: float | None = None  # train time / naive's in the same group
    #: ``classification`` or ``language_modelling`` (then the scores are exact matches).
    objective: str = "classification"
    #: Mean score on each task before any training (a pretrained model's prior skills).
    untrained: list[float] = field(default_factory=list)
    mark: str = ""  # WINNER, TIED or "" (see ``mark_winners``)
    #: The continual-evaluation record of its first seed that has one (``RunResult.continual``;
    #: the report plots it), and that seed; empty and None when no run has one.
    continual_record: dict = field(default_factory=dict)
    continual_seed: int | None = None

    @property
    def continual(self) -> bool:
        """Were its runs evaluated every few steps? Then ``stats`` hold ``CONTINUAL_METRICS``."""
        return bool(self.continual_record)


def has_continual(run: RunResult) -> bool:
    """Did the run record continual evaluation (the runner fills its ``metrics``)?"""
    return bool(run.continual.get("metrics"))


@dataclass
class Group:
    """The rows of one protocol and scenario."""

    protocol: str
    scenario: str
    description: str
    rows: list[Row] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.scenario}-incremental — {self.description}"

    @property
    def continual(self) -> bool:
        """Does some row have a continual-evaluation record (then its tables add min-ACC and
        WC-ACC)?"""
        return any(r.continual for r in self.rows)


#: Benchmarks built from a model's tokenizer, not from a data source (``data.text_benchmarks``).
TEXT_BENCHMARKS = ("knowledge", "topics")


def data_name(config: dict) -> str:
    """``split mnist``: the benchmark and its image source; a text benchmark alone (it reads
    no image source, so the config's default ``source`` means nothing there)."""
    if config.get("benchmark") in TEXT_BENCHMARKS:
        return str(config.get("benchmark"))
    return f"{config.get('benchmark')} {config.get('source')}"


def describe_protocol(config: dict) -> str:
    """``split mnist, 5 tasks, mlp 400-400, 2 epochs/task, batch 128, adam lr 0.001``."""
    hidden = config.get("model_options", {}).get("hidden")
    model = config.get("model", "?") + (" " + "-".join(str(h) for h in hidden) if hidden else "")
    init = config.get("model_options", {}).get("init")
    model += f" ({init} init)" if init else ""
    budget = (f"{config['iterations']} steps/task" if config.get("iterations")
              else f"{config.get('epochs')} epochs/task")
    parts = [data_name(config), f"{config.get('tasks')} tasks",
             model, budget, f"batch {config.get('batch_size')}",
             f"{config.get('optimizer')} lr {config.get('lr'):g}"]
    if config.get("benchmark_options"):
        parts.append(", ".join(f"{k}={v}" for k, v in sorted(config["benchmark_options"].items())))
    return ", ".join(parts)


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else math.nan


def strategy_label(config: dict) -> str:
    """The strategy's name, each part followed by the non-default values of its
    ``labelled_hyperparameters``: ``agem(memory_strength=0.5)``,
    ``ewc+agem(project_update=True)``."""
    params = config.get("strategy_params", {})
    parts = []
    for name in config["strategy"].split("+"):
        cls = STRATEGIES.get(name) if name in STRATEGIES else None
        defaults = constructor_parameters(cls) if cls is not None else {}
        shown = [f"{k}={params[f'{name}.{k}']}"
                 for k in getattr(cls, "labelled_hyperparameters", ())
                 if f"{name}.{k}" in params and k in defaults
                 and params[f"{name}.{k}"] != defaults[k].default]
        parts.append(f"{name}({', '.join(shown)})" if shown else name)
    return "+".join(parts)


def _fwt_defined(run: RunResult) -> bool:
    """Runs stored before ``sees_future`` was recorded name ``joint`` in their strategy."""
    sees_future = run.strategy_info.get(
        "sees_future", "joint" in run.config["strategy"].split("+"))
    return forward_transfer_defined(run.config["scenario"], sees_future)


def _row(runs: list[RunResult]) -> Row:
    runs = sorted(runs, key=lambda r: (r.config.get("seed", 0), r.run_id))
    first = runs[0]
    metrics = [summarize(r.accuracy_matrix, r.untrained_accuracy, _fwt_defined(r)) for r in runs]
    matrices = np.asarray([r.accuracy_matrix for r in runs], dtype=float)
    recorded = next((r for r in runs if has_continual(r)), None)
    continual = recorded is not None
    if continual:  # a seed without a record makes the mean undefined ("–"), not a guess
        worst = [summarize_continual(r.continual) if has_continual(r) else {} for r in runs]
        metrics = [dict(m, **{k: w.get(k) for k in CONTINUAL_METRICS})
                   for m, w in zip(metrics, worst, strict=True)]
    info = first.strategy_info
    return Row(
        label=strategy_label(first.config),
        strategy=first.config["strategy"],
        family=info.get("family", "baseline"),
        scenario=first.config["scenario"],
        variant=variant_key(first.config),
        seeds=[r.config.get("seed", 0) for r in runs],
        run_ids=[r.run_id for r in runs],
        stats={k: Stat.of(m[k] for m in metrics)
               for k in shown_metrics(continual)},
        train_seconds=_mean(r.costs.get("train_seconds_total") for r in runs),
        peak_rss_bytes=_mean(r.costs.get("peak_rss_bytes") for r in runs),
        strategy_bytes=_mean(r.costs.get("strategy_bytes") for r in runs),
        parameters_added=_mean(r.costs.get("parameters_added") for r in runs),
        stores_raw_data=any(r.strategy_info.get("stores_raw_data") for r in runs),
        needs_task_id=any(r.strategy_info.get("needs_task_id") for r in runs),
        strategy_params=dict(first.config.get("strategy_params", {})),
        mean_matrix=matrices.mean(axis=0).tolist(),
        task_descriptions=list(first.task_descriptions),
        objective=first.objective,
        untrained=np.mean([r.untrained_accuracy for r in runs], axis=0).tolist(),
        continual_record=recorded.continual if continual else {},
        continual_seed=recorded.config.get("seed", 0) if continual else None,
    )


def _label_variants(rows: list[Row]) -> None:
    """Rows of the same label (strategy and labelled hyper-parameters) with different
    hyper-parameters get them in their label."""
    by_strategy: dict[str, list[Row]] = {}
    for row in rows:
        by_strategy.setdefault(row.label, []).append(row)
    for same in by_strategy.values():
        if len(same) < 2:
            continue
        keys = sorted({k for r in same for k in r.strategy_params})
        differing = [k for k in keys
                     if len({repr(r.strategy_params.get(k)) for r in same}) > 1]
        for row in same:
            shown = ", ".join(f"{k.split('.', 1)[-1]}={row.strategy_params.get(k)}"
                              for k in differing)
            row.label = f"{row.label} ({shown or row.variant[:6]})"


#: The marks ``mark_winners`` gives, and the rule, said once for every table's footnote.
WINNER, TIED = "*", "~"
MARK_RULE = (f"{WINNER} best ACC of the continual learners (bounds joint and cumulative left "
             f"out); {TIED} tied with it: the two mean ACCs differ by no more than the larger of "
             "their sds over seeds, so the difference is not a win. With one seed nothing is "
             "tied.")


def mark_winners(rows: list[Row]) -> None:
    """Mark the best non-bound row by mean ACC (``WINNER``) and every non-bound row within the
    seeds' spread of it (``TIED``, ``Stat.within_spread``): a difference inside the spread is
    not a win. One seed has no sd, so only the best is marked."""
    for row in rows:
        row.mark = ""
    learners = [r for r in rows if not is_bound(r.strategy)]
    if not learners:
        return
    best = max(learners, key=lambda r: r.stats["acc"].mean)
    best.mark = WINNER
    for row in learners:
        if row is not best and row.stats["acc"].within_spread(best.stats["acc"]):
            row.mark = TIED


def family_rank(family: str) -> int:
    return FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)


def group_runs(runs: list[RunResult]) -> list[Group]:
    """Runs -> groups (protocol, scenario) of rows (variants), ordered for reading."""
    by_variant: dict[tuple[str, str, str], list[RunResult]] = {}
    descriptions: dict[str, str] = {}
    for run in runs:
        protocol = protocol_key(run.config)
        descriptions.setdefault(protocol, describe_protocol(run.config))
        key = (protocol, run.config["scenario"], variant_key(run.config))
        by_variant.setdefault(key, []).append(run)
    groups: dict[tuple[str, str], Group] = {}
    for (protocol, scenario, _), members in by_variant.items():
        group = groups.setdefault((protocol, scenario),
                                  Group(protocol, scenario, descriptions[protocol]))
        group.rows.append(_row(members))
    for group in groups.values():
        _label_variants(group.rows)
        naive = next((r for r in group.rows if r.strategy == "naive"), None)
        for row in group.rows:
            if naive is not None and naive.train_seconds > 0:
                row.time_ratio = row.train_seconds / naive.train_seconds
        group.rows.sort(key=lambda r: (family_rank(r.family), -r.stats["acc"].mean, r.label))
        mark_winners(group.rows)
    protocols = list(descriptions)  # first seen first
    return sorted(groups.values(), key=lambda g: (
        protocols.index(g.protocol),
        SCENARIO_ORDER.index(g.scenario) if g.scenario in SCENARIO_ORDER else 9))


# ---------------------------------------------------------------------- formatting helpers
def human_bytes(count: float) -> str:
    if count is None or math.isnan(count):
        return "–"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count:.0f} B"


def ratio_text(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.2f}x"


def count_text(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:,.0f}"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


HEADERS = ["family", "strategy", "seeds", "ACC %", "forgetting %", "BWT %", "FWT %",
           "time x naive", "peak memory", "strategy holds", "params added", "raw data",
           "task id"]
#: After "FWT %" in a group with a continual-evaluation record.
CONTINUAL_HEADERS = ["min-ACC %", "WC-ACC %"]


def headers(group: Group) -> list[str]:
    """The full headers of ``group``'s table: ``HEADERS``, with ``CONTINUAL_HEADERS`` after
    FWT where a row has a continual-evaluation record."""
    at = HEADERS.index("FWT %") + 1
    return HEADERS[:at] + (CONTINUAL_HEADERS if group.continual else []) + HEADERS[at:]


def shown_metrics(continual: bool) -> tuple[str, ...]:
    """The metrics a table shows, in ``headers`` order: with ``CONTINUAL_METRICS`` where some
    run has a continual-evaluation record (``continual``)."""
    return METRICS + (CONTINUAL_METRICS if continual else ())


def _stat_cell(row: Row, metric: str) -> str:
    """A metric in percent; "–" where the row has none (no continual record)."""
    return row.stats[metric].percent() if metric in row.stats else "–"


def row_cells(row: Row, metrics: tuple[str, ...] = METRICS) -> list[str]:
    """A row as the text, Markdown and HTML tables show it (``metrics``: ``shown_metrics`` of
    its group)."""
    return [row.family, row.label, str(len(row.seeds))] + [
        _stat_cell(row, m) for m in metrics] + [
        ratio_text(row.time_ratio), human_bytes(row.peak_rss_bytes),
        human_bytes(row.strategy_bytes), count_text(row.parameters_added),
        yes_no(row.stores_raw_data), yes_no(row.needs_task_id)]


def _grouped_cells(group: Group) -> list[list[str]]:
    """The family named once, on the first row of its block; the winner marked."""
    cells, previous = [], None
    for row in group.rows:
        line = row_cells(row, shown_metrics(group.continual))
        line[1] = _marked(row)
        if row.family == previous:
            line[0] = ""
        previous = row.family
        cells.append(line)
    return cells


NOTE = ("ACC: final average accuracy; forgetting: mean drop from each task's best accuracy "
        "after it was learned; BWT/FWT: backward/forward transfer (Lopez-Paz & Ranzato 2017), FWT "
        "'–' where undefined (class-IL, whose tests answer over the classes learned so far, and "
        "joint); mean ± sd over seeds. time x naive: "
        "train time over naive's; peak memory: the run's peak RSS; strategy holds: bytes kept "
        "beyond the model; raw data: stores training samples; task id: needs it at test time.")
#: Added to the notes where a table has the continual metrics.
CONTINUAL_NOTE = ("min-ACC: each old task's lowest accuracy after it was learned, evaluated every "
                  "few training steps, averaged over tasks; WC-ACC: 1/T x the last task's final "
                  "accuracy + (1 - 1/T) x min-ACC (De Lange, van de Ven & Tuytelaars 2023).")


def notes(groups: list[Group], note: str) -> str:
    """``note``, followed by ``CONTINUAL_NOTE`` where some table shows the continual metrics."""
    return f"{note} {CONTINUAL_NOTE}" if any(g.continual for g in groups) else note


def _marked(row: Row) -> str:
    return f"{row.label} {row.mark}" if row.mark else row.label


def _family_cell(group: Group):
    """The family named once, on the first row of its block."""
    first = {}
    for row in group.rows:
        first.setdefault(row.family, id(row))
    return lambda row: row.family if first[row.family] == id(row) else ""


def terminal_columns(group: Group) -> list[Column]:
    """The terminal table's columns with short headers; ``drop`` orders what a narrow terminal
    loses first (the full set is ``HEADERS``, shown with ``--wide``)."""
    return [
        Column("family", _family_cell(group), "l", drop=4),
        Column("strategy", _marked, "l"),
        Column("seeds", lambda r: str(len(r.seeds)), drop=9),
        Column("ACC %", lambda r: r.stats["acc"].percent()),
        Column("forget %", lambda r: r.stats["forgetting"].percent(), drop=3),
        Column("BWT %", lambda r: r.stats["bwt"].percent(), drop=6),
        Column("FWT %", lambda r: r.stats["fwt"].percent(), drop=5),
        *([Column("min-ACC %", lambda r: _stat_cell(r, "min_acc"), drop=4),
           Column("WC-ACC %", lambda r: _stat_cell(r, "wc_acc"), drop=5)]
          if group.continual else []),
        Column("time", lambda r: ratio_text(r.time_ratio), drop=2),
        Column("peak mem", lambda r: human_bytes(r.peak_rss_bytes), drop=8),
        Column("holds", lambda r: human_bytes(r.strategy_bytes), drop=1),
        Column("+params", lambda r: count_text(r.parameters_added), drop=7),
        Column("raw", lambda r: yes_no(r.stores_raw_data), "l", drop=1),
        Column("tid", lambda r: yes_no(r.needs_task_id), "l", drop=1),
    ]


#: Shown under a short-header table: what each short header means.
SHORT_NOTE = ("forget: forgetting; time: train time over naive's; holds: bytes the strategy keeps "
              "beyond the model; raw: stores raw training samples; tid: needs the task id at "
              "test time; mean ± sd over seeds.")


def format_text(groups: list[Group], width: int | None = None, wide: bool = False) -> str:
    """The terminal tables. By default fitted to ``width`` (the terminal's) with short headers,
    the least important columns left out until the table fits; ``wide``: every column, full
    headers, as long as it needs."""
    if not groups:
        return "no runs."
    if wide:
        parts = []
        for group in groups:
            names = headers(group)
            parts += [group.title, format_table(names, _grouped_cells(group),
                                                align="ll" + "r" * (len(names) - 4) + "ll"), ""]
        return "\n".join(parts + [wrap(notes(groups, f"{NOTE} {MARK_RULE}"),
                                        terminal_width() if width is None else width)])
    width = terminal_width() if width is None else width
    parts, left_out = [], []
    for group in groups:
        kept, dropped = fit_columns(terminal_columns(group), group.rows, width)
        left_out += [c.header for c in dropped if c.header not in left_out]
        parts += [wrap(group.title, width), format_columns(kept, group.rows), ""]
    note = notes(groups, SHORT_NOTE + " " + MARK_RULE)
    if left_out:
        note += f" Left out at {width} columns: {', '.join(left_out)} (--wide shows all)."
    return "\n".join(parts + [wrap(note, width)])


def _md(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(groups: list[Group]) -> str:
    lines = []
    for group in groups:
        names = headers(group)
        lines += [f"### {_md(group.title)}", "", "| " + " | ".join(names) + " |",
                  "|" + "|".join("---" if i < 2 or i >= len(names) - 2 else "--:"
                                 for i in range(len(names))) + "|"]
        for cells in _grouped_cells(group):
            if cells[0]:
                cells[0] = f"**{cells[0]}**"
            lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
        lines.append("")
    lines.append(_md(notes(groups, f"{NOTE} {MARK_RULE}")))
    return "\n".join(lines) + "\n"


def csv_columns(metrics: tuple[str, ...] = METRICS) -> list[str]:
    return ["protocol", "protocol_description", "scenario", "family", "strategy", "label",
            "n_seeds", "seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "sd")] + [
        "time_ratio_to_naive", "train_seconds_mean", "peak_rss_bytes_mean",
        "strategy_bytes_mean", "parameters_added_mean", "stores_raw_data", "needs_task_id",
        "variant", "run_ids"]


CSV_COLUMNS = csv_columns()


def to_csv(groups: list[Group]) -> str:
    """One line per row, numbers at full precision (fractions, not percent); with
    ``CONTINUAL_METRICS`` after the others where some run has a continual-evaluation record."""
    metrics = shown_metrics(any(g.continual for g in groups))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(csv_columns(metrics))
    missing = Stat(math.nan, math.nan)
    for group in groups:
        for row in group.rows:
            stats = [v for m in metrics for v in (row.stats.get(m, missing).mean,
                                                  row.stats.get(m, missing).sd)]
            writer.writerow([group.protocol, group.description, group.scenario, row.family,
                             row.strategy, row.label, len(row.seeds),
                             " ".join(map(str, row.seeds))]
                            + ["" if math.isnan(v) else repr(v) for v in stats]
                            + ["" if row.time_ratio is None else repr(row.time_ratio),
                               repr(row.train_seconds), repr(row.peak_rss_bytes),
                               repr(row.strategy_bytes), repr(row.parameters_added),
                               int(row.stores_raw_data), int(row.needs_task_id), row.variant,
                               " ".join(row.run_ids)])
    return out.getvalue()
