"""Which strategy should I use? The user's constraints against measured runs.

Constraints (``Constraints``): may raw training data be stored (privacy); the memory the strategy
may hold beyond the model; the compute budget as a multiple of plain (naive) training; whether
the task id is known at test time; the scenario. ``advise`` takes the stored runs of the closest
benchmark (``closest_group``), keeps the strategies that satisfy every constraint, ranks them by
measured ACC, and gives one line of reasons for each choice and for each exclusion.

What a careful expert would sign: a bound (joint, cumulative: they keep every sample) is shown as
a reference, never advised; a strategy whose ACC lies within the seeds' spread of naive's is
"no better than naive here", and one that beats naive by less than ``MARGIN`` is "barely better"
-- neither is recommended; when nothing admitted does well, the advice says so and which single
constraint, relaxed, would admit a strategy that does.

What the field expects, and what the embedded benchmarks show (van de Ven & Tolias 2019; Hsu et
al. 2018): without raw data, regularization (or generative replay, which stores a generator, not
samples) is what is left; with a little memory for samples, replay leads in the class- and
domain-incremental scenarios; with the task id and compute to spare, dynamic architectures
(PNN, PackNet, HAT) keep every old task exactly -- zero forgetting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from forgetless.errors import ConfigurationError
from forgetless.results.run_result import RunResult
from forgetless.results.summary import (
    MARGIN,
    REFERENCE,
    Group,
    Row,
    group_runs,
    human_bytes,
    is_bound,
)

#: Forgetting below this (a fraction) is reported as none.
ZERO_FORGETTING = 0.001

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
          "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30}


def parse_bytes(text: str | int | float) -> int:
    """``"5MB"`` -> 5_000_000; ``"512KiB"``, ``"1.5 GB"``, ``"0"`` and plain numbers too."""
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        if not match or match.group(2).lower() not in _UNITS:
            raise ConfigurationError(
                f"memory budget '{text}' is not a size; write e.g. 5MB, 500kB, 1GiB or 0.")
        value, unit = float(match.group(1)), match.group(2).lower()
    if value < 0:
        raise ConfigurationError(f"memory budget must be at least 0, got {text!r}.")
    return int(value * _UNITS[unit])


def parse_multiple(text: str | int | float) -> float:
    """``"2x"`` -> 2.0: train time as a multiple of naive's."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*[xX×]?\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigurationError(
            f"compute budget '{text}' is not a positive multiple of plain training; write e.g. "
            "2x (twice naive fine-tuning's train time) or 1.5.")
    return float(match.group(1))


@dataclass
class Constraints:
    """What the user can accept. ``None`` budgets are unlimited."""

    raw_data: bool = True  # may the strategy keep raw training samples?
    memory_budget: int | None = None  # bytes the strategy may hold beyond the model
    compute_budget: float | None = None  # train time as a multiple of naive's
    task_id: bool = False  # is the task id known at test time?
    scenario: str | None = None  # task, domain or class; default task if task_id else class

    def resolved_scenario(self) -> str:
        from forgetless.data.stream import Scenario

        if self.scenario is None:
            return "task" if self.task_id else "class"
        scenario = Scenario.parse(self.scenario).value
        if scenario == "task" and not self.task_id:
            raise ConfigurationError(
                "the task-incremental scenario gives the task id at test time; say --task-id "
                "known, or choose --scenario domain or class.")
        return scenario

    def describe(self) -> str:
        parts = ["raw data may be stored" if self.raw_data else "no raw data",
                 "memory " + (human_bytes(self.memory_budget) if self.memory_budget is not None
                              else "unlimited"),
                 "compute " + (f"{self.compute_budget:g}x naive"
                               if self.compute_budget is not None else "unlimited"),
                 "task id " + ("known" if self.task_id else "unknown"),
                 f"{self.resolved_scenario()}-incremental"]
        return ", ".join(parts)


@dataclass
class Choice:
    rank: int
    row: Row
    reason: str

    @property
    def name(self) -> str:
        return self.row.label


@dataclass
class Exclusion:
    name: str
    reason: str
    row: Row | None = None
    relaxable: list[str] = field(default_factory=list)  # constraints that alone exclude it
    unmeasured: bool = False  # only excluded for lack of a measurement


@dataclass
class Advice:
    constraints: Constraints
    scenario: str
    description: str  # the protocol the measurements come from
    choices: list[Choice]
    exclusions: list[Exclusion]
    reference: Row | None = None  # naive fine-tuning, measured on the same protocol
    bounds: list[Row] = field(default_factory=list)  # joint, cumulative: references only
    barely: list[Choice] = field(default_factory=list)  # beat naive by less than MARGIN
    no_better: list[Choice] = field(default_factory=list)  # within the seeds' spread of naive

    @property
    def best(self) -> Choice | None:
        return self.choices[0] if self.choices else None

    def _bound_lines(self) -> list[str]:
        if not self.bounds:
            return []
        shown = "; ".join(f"{r.label} ACC {r.stats['acc'].percent()} %" for r in self.bounds)
        return [f"bounds (references, not advice: they keep every sample): {shown}"]

    def _weak_lines(self) -> list[str]:
        lines = []
        for title, weak in ((f"barely better than naive (by less than {100 * MARGIN:.0f} ACC "
                              "points; not recommended):", self.barely),
                            ("no better than naive here (ACC within the seeds' spread of "
                             "naive's):", self.no_better)):
            if weak:
                lines.append(title)
                lines += [f"  - {c.name} ({c.row.family}): {c.reason}" for c in weak]
        return lines

    def format(self) -> str:
        lines = [f"constraints: {self.constraints.describe()}",
                 f"measured on: {self.scenario}-incremental {self.description}", ""]
        if self.reference is not None:
            lines.append(f"reference: naive fine-tuning (doing nothing) reaches ACC "
                         f"{self.reference.stats['acc'].percent()} %, forgetting "
                         f"{100 * self.reference.stats['forgetting'].mean:.1f} %")
        elif self.choices:
            lines.append("note: naive fine-tuning is not measured on this protocol, so no gain "
                         "over doing nothing can be judged; measure it (drop --no-run).")
        lines += self._bound_lines()
        if self.choices:
            lines.append("recommended (best measured ACC first):")
            lines += [f"  {c.rank}. {c.name} ({c.row.family}): {c.reason}" for c in self.choices]
            kept = [c.name for c in self.choices
                    if c.row.stats["forgetting"].mean <= ZERO_FORGETTING]
            if kept:
                lines.append(f"no measured forgetting: {', '.join(kept)}")
        lines += self._weak_lines()
        if not self.choices:
            if self.barely or self.no_better:
                lines.append(f"Nothing that meets these constraints beats naive fine-tuning by "
                             f"{100 * MARGIN:.0f} ACC points here.")
            else:
                lines.append("No strategy satisfies these constraints.")
            hint = self.relaxation_hint()
            if hint:
                lines.append(hint)
        if self.exclusions:
            lines += ["", "excluded:"]
            lines += [f"  - {e.name}: {e.reason}" for e in self.exclusions]
        return "\n".join(lines)

    def relaxation_hint(self) -> str:
        """The best measured strategy that one relaxed constraint would admit."""
        single = [e for e in self.exclusions if e.row is not None and len(e.relaxable) == 1]
        unmeasured = [e.name for e in self.exclusions if e.unmeasured]
        if not single and unmeasured:
            return (f"Not measured here yet although your constraints allow them: "
                    f"{', '.join(unmeasured)}; run `forgetless advise` without --no-run (or "
                    "`forgetless compare`) to measure them.")
        if not single:
            return ("Nothing measured comes close: run `forgetless compare` for this scenario, "
                    "or loosen several constraints.")
        best = max(single, key=lambda e: e.row.stats["acc"].mean)
        return (f"Relaxing the {best.relaxable[0]} constraint alone would admit {best.name} "
                f"(ACC {best.row.stats['acc'].percent()} %).")


def closest_group(runs: list[RunResult], scenario: str, benchmark: str | None = None,
                  source: str | None = None) -> Group | None:
    """Of the stored protocols in ``scenario``, the one matching ``benchmark``/``source`` (when
    given) that measured the most strategies; ties go to the most runs."""
    groups = [g for g in group_runs(runs) if g.scenario == scenario]

    def matches(group: Group) -> tuple:
        config = next(r for r in runs if r.run_id == group.rows[0].run_ids[0]).config
        return (benchmark is None or config.get("benchmark") == benchmark,
                source is None or config.get("source") == source)

    candidates = [g for g in groups if all(matches(g))]
    if not candidates:
        return None
    return max(candidates, key=lambda g: (len({r.strategy for r in g.rows}),
                                          sum(len(r.seeds) for r in g.rows)))


def _declared(name: str, row: Row | None, strategies: dict) -> dict:
    """What a strategy declares (registry class first, then what its runs recorded)."""
    cls = strategies.get(name)
    if cls is not None:
        return {"family": cls.family, "stores_raw_data": bool(cls.stores_raw_data),
                "needs_task_id": bool(cls.needs_task_id),
                "scenarios": frozenset(cls.scenarios)}
    return {"family": row.family, "stores_raw_data": row.stores_raw_data,
            "needs_task_id": row.needs_task_id, "scenarios": None}


def _check(name: str, row: Row | None, declared: dict, constraints: Constraints,
           scenario: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(constraint, reason) pairs that exclude ``name``, and the notes that admit it."""
    failed, notes = [], []
    served = declared["scenarios"]
    if declared["needs_task_id"] and not constraints.task_id:
        failed.append(("task id", "needs the task id at test time, which you do not have"))
    elif served is not None and scenario not in served:
        failed.append(("scenario", f"does not serve the {scenario}-incremental scenario (it "
                                   f"serves {', '.join(sorted(served)) or 'none'})"))
    elif declared["needs_task_id"]:
        notes.append("uses the task id you have")
    if declared["stores_raw_data"] or (row is not None and row.stores_raw_data):
        if not constraints.raw_data:
            failed.append(("raw data", "stores raw training samples, which you do not allow"))
    elif not constraints.raw_data:
        notes.append("stores no raw data")
    if row is None:
        if not failed:
            failed.append(("measured", "not measured on this benchmark and scenario (run "
                                       "`forgetless compare` to measure it)"))
        return failed, notes
    if constraints.memory_budget is not None:
        if row.strategy_bytes > constraints.memory_budget:
            failed.append(("memory", f"holds {human_bytes(row.strategy_bytes)}, over your "
                                     f"{human_bytes(constraints.memory_budget)} budget"))
        else:
            notes.append(f"holds {human_bytes(row.strategy_bytes)} (budget "
                         f"{human_bytes(constraints.memory_budget)})")
    if constraints.compute_budget is not None:
        if row.time_ratio is None:
            failed.append(("compute", "its train time relative to naive was not measured"))
        elif row.time_ratio > constraints.compute_budget:
            failed.append(("compute", f"trains in {row.time_ratio:.1f}x naive's time, over "
                                      f"your {constraints.compute_budget:g}x budget"))
        else:
            notes.append(f"{row.time_ratio:.1f}x naive's time (budget "
                         f"{constraints.compute_budget:g}x)")
    return failed, notes


def advise(constraints: Constraints, runs: list[RunResult], strategies: dict | None = None,
           benchmark: str | None = None, source: str | None = None) -> Advice:
    """Rank the strategies that satisfy ``constraints`` by measured ACC in ``runs``.

    ``strategies`` maps names to strategy classes (default: the registry); compositions that
    were measured are candidates too."""
    if strategies is None:
        from forgetless.strategies import STRATEGIES

        strategies = dict(STRATEGIES.items())
    scenario = constraints.resolved_scenario()
    group = closest_group(runs, scenario, benchmark, source)
    rows = {} if group is None else {r.strategy: r for r in group.rows}
    if group is not None:  # one row per strategy: its best-measured variant
        for row in group.rows:
            if row.stats["acc"].mean > rows[row.strategy].stats["acc"].mean:
                rows[row.strategy] = row
    admitted, exclusions = [], []
    reference = rows.get(REFERENCE)
    bounds = sorted((r for n, r in rows.items() if is_bound(n)),
                    key=lambda r: -r.stats["acc"].mean)
    for name in sorted(set(strategies) | set(rows)):
        row = rows.get(name)
        if name == REFERENCE or is_bound(name):
            continue
        failed, notes = _check(name, row, _declared(name, row, strategies), constraints,
                               scenario)
        if failed:
            relaxable = [c for c, _ in failed if c in ("raw data", "memory", "compute",
                                                       "task id")]
            exclusions.append(Exclusion(name, "; ".join(r for _, r in failed), row,
                                        relaxable if len(relaxable) == len(failed) else [],
                                        unmeasured=[c for c, _ in failed] == ["measured"]))
        else:
            admitted.append((row, notes))
    admitted.sort(key=lambda item: (-item[0].stats["acc"].mean, item[0].train_seconds))
    tiers: dict[str, list[Choice]] = {"recommended": [], "barely": [], "no better": []}
    for row, notes in admitted:
        tier = _tier(row, reference)
        tiers[tier].append(Choice(len(tiers[tier]) + 1, row,
                                  "; ".join([_measured(row, reference)] + notes)))
    exclusions.sort(key=lambda e: e.name)
    description = group.description if group is not None else "(no measured runs)"
    return Advice(constraints, scenario, description, tiers["recommended"], exclusions,
                  reference, bounds, tiers["barely"], tiers["no better"])


def _tier(row: Row, reference: Row | None) -> str:
    """recommended; barely (beats naive, by less than MARGIN); no better (within the seeds'
    spread of naive, or below it)."""
    if reference is None:
        return "recommended"
    acc, naive = row.stats["acc"], reference.stats["acc"]
    if acc.within_spread(naive) or acc.mean <= naive.mean:
        return "no better"
    return "recommended" if acc.mean - naive.mean >= MARGIN - 1e-9 else "barely"


def _measured(row: Row, reference: Row | None) -> str:
    forgetting = row.stats["forgetting"].mean
    text = (f"ACC {row.stats['acc'].percent()} %, "
            + ("no forgetting" if forgetting <= ZERO_FORGETTING
               else f"forgetting {100 * forgetting:.1f} %"))
    if reference is not None:
        gain = row.stats["acc"].mean - reference.stats["acc"].mean
        text += f", {100 * gain:+.1f} points vs naive"
    return text


#: Before measuring, a strategy whose expected train time exceeds the compute budget by more
#: than this factor is not trained (measured ratios vary between machines and runs).
COMPUTE_SLACK = 1.5


def allowed_strategies(constraints: Constraints, strategies: dict, costs=None,
                       benchmark: str | None = None) -> list[str]:
    """The registered strategies worth measuring for ``constraints``: those that serve the
    scenario and the benchmark (its model and objective, as the default comparison chooses
    them) and that no constraint rules out before measuring (raw data, task id; the compute
    budget against the expected cost ratio, ``costs``: an ``experiments.costs.CostModel``).
    Bounds and naive are not among them (naive is measured as the reference)."""
    from forgetless.data.benchmarks import BENCHMARKS
    from forgetless.experiments.compare import (
        default_strategies,
        served_scenarios,
        serves_objective,
    )

    scenario = constraints.resolved_scenario()
    fitting = set(default_strategies(strategies, benchmark=benchmark))
    objective = "classification" if benchmark is None else getattr(
        BENCHMARKS.get(benchmark), "objective", "classification")
    allowed = []
    for name in sorted(strategies):
        if (name == REFERENCE or is_bound(name) or name not in fitting
                or not serves_objective(name, objective, strategies)
                or scenario not in served_scenarios(name, strategies)):
            continue
        failed, _ = _check(name, None, _declared(name, None, strategies), constraints,
                           scenario)
        if any(c != "measured" for c, _ in failed):
            continue
        if (costs is not None and constraints.compute_budget is not None
                and costs.ratio(name) > COMPUTE_SLACK * constraints.compute_budget):
            continue
        allowed.append(name)
    return allowed


def missing_runs(runs: list[RunResult], constraints: Constraints, benchmark: str | None = None,
                 source: str | None = None, strategies: dict | None = None,
                 costs=None) -> list:
    """The RunConfigs that would complete the measurements to advise from: none when the
    closest stored protocol measured naive and every strategy the constraints allow
    (``allowed_strategies``); the ones it lacks (same protocol and seeds) otherwise; ``None``
    when nothing is stored for the scenario at all (a whole comparison is needed)."""
    from forgetless.config import RunConfig
    from forgetless.experiments.compare import plan

    if strategies is None:
        from forgetless.strategies import STRATEGIES

        strategies = dict(STRATEGIES.items())
    scenario = constraints.resolved_scenario()
    group = closest_group(runs, scenario, benchmark, source)
    if group is None:
        return None
    measured = {r.strategy for r in group.rows}
    lacking = [n for n in [REFERENCE] + allowed_strategies(constraints, strategies, costs,
                                                           benchmark)
               if n not in measured]
    if not lacking:
        return []
    example = next(r for r in runs if r.run_id == group.rows[0].run_ids[0]).config
    base = RunConfig.from_dict({**example, "strategy_params": {}})
    seeds = sorted({s for r in group.rows for s in r.seeds})
    return plan(base, strategies=lacking, scenarios=[scenario], seeds=seeds, references=False)
