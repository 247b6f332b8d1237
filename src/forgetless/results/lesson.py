"""The lesson of a comparison: a few plain sentences, computed from the stored runs.

A table of sixteen strategies in three scenarios hides what its numbers say. The lesson says it
first: where forgetting is worst, how much naive fine-tuning forgets there, which family fixes
it and how much of the gap to the joint bound it closes, the best strategy per constraint (no
raw data stored, memory no larger than the model, task id known) with its ACC and cost, and the
caveats that keep it honest.

The rules, so that a reader can check every sentence against the tables:

- *worst scenario*: the group (protocol and scenario) where naive forgets most (where naive was
  not run: where the strategies' mean forgetting is highest);
- a *bound* (joint, cumulative, or a composition with one) keeps every task's data: it is named
  as a reference, never as a choice; neither is naive;
- *beats naive*: a higher mean ACC outside the seeds' spread (the mean ± sd intervals do not
  overlap; with one seed no spread is known and the lesson says so); by fewer than ``MARGIN``
  ACC points it only *barely* beats naive;
- *small memory*: bytes held beyond the model no larger than the model itself (its parameters at
  ``BYTES_PER_PARAMETER`` bytes each).
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field

import numpy as np

from forgetless.metrics import learning_accuracy
from forgetless.results.run_result import RunResult
from forgetless.results.summary import (
    MARGIN,
    REFERENCE,
    Group,
    Row,
    Stat,
    group_runs,
    human_bytes,
    is_bound,
)

#: float32 weights: the model's size in bytes is its parameter count times this.
BYTES_PER_PARAMETER = 4

FAMILY_SUBJECT = {"regularization": "Regularization", "replay": "Replay",
                  "architecture": "Dynamic architecture", "hybrid": "A hybrid",
                  "weight-space": "Weight-space editing",
                  "parameter-efficient": "Parameter-efficient fine-tuning",
                  "frozen-features": "A frozen-feature learner",
                  "baseline": "A baseline"}
FAMILY_PLURAL = {"regularization": "regularizers", "replay": "replay methods",
                 "architecture": "dynamic architectures", "hybrid": "hybrids",
                 "weight-space": "weight-space methods",
                 "parameter-efficient": "adapter methods",
                 "frozen-features": "frozen-feature learners",
                 "baseline": "baselines"}


@dataclass
class Lesson:
    """What the runs say, in three parts: findings, the best choice per constraint, caveats."""

    scenario: str | None = None  # the scenario the lesson is about (where forgetting is worst)
    protocol: str | None = None
    findings: list[str] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    @property
    def sentences(self) -> list[str]:
        return self.findings + self.choices + self.caveats

    def format_text(self, width: int = 100) -> str:
        """The lesson for the terminal, wrapped to ``width`` columns ('' when there is none)."""
        if not self.findings:
            return ""
        wrap = textwrap.TextWrapper(width=max(40, width), break_on_hyphens=False)
        bullet = textwrap.TextWrapper(width=max(40, width), initial_indent="  - ",
                                      subsequent_indent="    ", break_on_hyphens=False)
        lines = [f"The lesson ({self.scenario}-incremental):"]
        lines += wrap.wrap(" ".join(self.findings))
        for heading, items in (("Best per constraint:", self.choices),
                               ("Caveats:", self.caveats)):
            if items:
                lines.append(heading)
                lines += [line for item in items for line in bullet.wrap(item)]
        return "\n".join(lines)


# ---------------------------------------------------------------------- rules
def within_spread(a: Stat, b: Stat) -> bool | None:
    """Whether two means are within the seeds' spread (their mean ± sd intervals overlap);
    None when either side has a single seed, so no spread is known."""
    if math.isnan(a.sd) or math.isnan(b.sd):
        return None
    return abs(a.mean - b.mean) <= a.sd + b.sd


def beats(row: Row, reference: Row) -> bool:
    """A higher mean ACC than ``reference``, outside the seeds' spread where it is known."""
    acc, other = row.stats["acc"], reference.stats["acc"]
    return acc.mean > other.mean and within_spread(acc, other) is not True


def reference_row(group: Group) -> Row | None:
    return next((r for r in group.rows if r.strategy == REFERENCE), None)


def candidates(group: Group) -> list[Row]:
    """Rows that may be recommended (not naive, not a bound), best mean ACC first."""
    rows = [r for r in group.rows if r.strategy != REFERENCE and not is_bound(r.strategy)]
    return sorted(rows, key=lambda r: (-r.stats["acc"].mean, r.label))


def group_forgetting(group: Group) -> float:
    """How much this group forgets: naive's mean forgetting, or the rows' mean without naive."""
    naive = reference_row(group)
    if naive is not None:
        return naive.stats["forgetting"].mean
    return float(np.mean([r.stats["forgetting"].mean for r in group.rows]))


def worst_first(groups: list[Group]) -> list[Group]:
    """Groups ordered for reading: the protocol and scenario that forget most first (ties keep
    their order)."""
    worst: dict[str, float] = {}
    for group in groups:
        worst[group.protocol] = max(worst.get(group.protocol, -math.inf),
                                    group_forgetting(group))
    return sorted(groups, key=lambda g: (-worst[g.protocol], -group_forgetting(g)))


# ---------------------------------------------------------------------- sentences
def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _with_sd(stat: Stat) -> str:
    return _pct(stat.mean) if math.isnan(stat.sd) else \
        f"{100 * stat.mean:.1f} ± {100 * stat.sd:.1f}%"


def _cost(row: Row) -> str:
    time = ("train time not compared with naive" if row.time_ratio is None
            else f"{row.time_ratio:.2f}x naive's train time")
    added = ("" if not row.parameters_added or math.isnan(row.parameters_added)
             else f", adding {row.parameters_added:,.0f} parameters")
    return f"{time}, holding {human_bytes(row.strategy_bytes)}{added}"


def _choice(what: str, row: Row | None, naive: Row | None) -> str:
    if row is None:
        return f"{what}: nothing measured here."
    text = f"{what}: {row.label}, {_pct(row.stats['acc'].mean)} ACC, {_cost(row)}"
    if naive is not None and not beats(row, naive):
        text += f"; no better than naive ({_pct(naive.stats['acc'].mean)})"
    elif naive is not None and row.stats["acc"].mean - naive.stats["acc"].mean < MARGIN:
        text += f"; barely better than naive ({_pct(naive.stats['acc'].mean)})"
    return text + "."


def _model_bytes(group: Group, runs: dict[str, RunResult]) -> float | None:
    """The model's own size: its parameters before any strategy added some, in bytes."""
    sizes = [runs[i].costs["parameters"] - (runs[i].costs.get("parameters_added") or 0)
             for row in group.rows for i in row.run_ids
             if i in runs and runs[i].costs.get("parameters")]
    return BYTES_PER_PARAMETER * min(sizes) if sizes else None


def _findings(group: Group, naive: Row | None, best: Row | None, only: bool) -> list[str]:
    where = (f"In the {group.scenario}-incremental scenario, the only one measured"
             if only else f"Forgetting is worst in the {group.scenario}-incremental scenario")
    if naive is None:
        found = [f"{where}; naive fine-tuning was not run, so neither how much the network "
                 "forgets nor what a fix gains can be measured."]
        if best is not None:
            found.append(f"The best measured strategy is {best.label} ({best.family}), "
                         f"{_pct(best.stats['acc'].mean)} ACC.")
        return found
    learned = learning_accuracy(naive.mean_matrix)
    found = [f"{where}: naive fine-tuning learns each task to {_pct(learned)} but ends at "
             f"{_pct(naive.stats['acc'].mean)} ACC; it forgets "
             f"{100 * naive.stats['forgetting'].mean:.1f} points of each earlier task on "
             "average."]
    if best is None or not beats(best, naive):
        shown = "" if best is None else (
            f": the best, {best.label}, ends at {_pct(best.stats['acc'].mean)} ACC against "
            f"naive's {_pct(naive.stats['acc'].mean)}")
        found.append(f"Nothing measured here beats naive fine-tuning beyond the seeds' "
                     f"spread{shown}.")
        return found
    bounds = [r for r in group.rows if is_bound(r.strategy)]
    bound = max(bounds, key=lambda r: r.stats["acc"].mean) if bounds else None
    gain = best.stats["acc"].mean - naive.stats["acc"].mean
    room = None if bound is None else bound.stats["acc"].mean - naive.stats["acc"].mean
    subject = FAMILY_SUBJECT.get(best.family, best.family.capitalize())
    verb = "fixes most of it" if room and gain / room >= 0.5 else "helps most"
    sentence = (f"{subject} {verb}: {best.label} ends at {_pct(best.stats['acc'].mean)} ACC "
                f"(forgetting {_pct(best.stats['forgetting'].mean)})")
    if room and room > 0 and gain >= room:
        sentence += f", as high as {bound.label} training ({_pct(bound.stats['acc'].mean)})"
    elif room and room > 0:
        sentence += (f", closing {math.floor(100 * gain / room)}% of the gap to {bound.label} "
                     f"training ({_pct(bound.stats['acc'].mean)})")
    found.append(sentence + ".")
    return found


def new_task_learning(row: Row) -> float:
    """Mean score of tasks 1..T right after each is learnt (a pretrained model's new tasks;
    task 0 is its prior skills)."""
    m = row.mean_matrix
    return sum(m[i][i] for i in range(1, len(m))) / max(1, len(m) - 1)


def _prior_skills(group: Group, naive: Row | None) -> list[str]:
    """For a pretrained language model (task 0 = its prior skills): what naive fine-tuning
    keeps of them, and which method keeps the most while learning >= 90% of what naive learns
    (the learning-forgetting trade-off)."""
    rows = [r for r in group.rows if r.objective == "language_modelling" and r.untrained]
    if naive is None or naive not in rows or len(naive.mean_matrix) < 2:
        return []
    prior = naive.untrained[0]
    kept = naive.mean_matrix[-1][0]
    learnt = new_task_learning(naive)
    found = [f"Prior skills: the pretrained model answers {_pct(prior)} of its probes; naive "
             f"fine-tuning keeps {_pct(kept)} after the last task ({100 * (prior - kept):.1f} "
             f"points lost) while learning {_pct(learnt)} of the new facts."]
    fair = [r for r in rows if not is_bound(r.strategy) and r is not naive
            and new_task_learning(r) >= 0.9 * learnt]
    if fair:
        best = max(fair, key=lambda r: r.mean_matrix[-1][0])
        found.append(f"Learning at least 90% of what naive learns, {best.label} keeps the most: "
                     f"{_pct(best.mean_matrix[-1][0])} of the prior skills, learning "
                     f"{_pct(new_task_learning(best))}.")
    return found


def _caveats(group: Group, naive: Row | None, ranked: list[Row]) -> list[str]:
    caveats = []
    if ranked and all(len(r.seeds) < 2 for r in ranked):
        caveats.append("Each strategy ran with one seed, so the spread over seeds is unknown "
                       "and small differences may be noise (add seeds with --seeds).")
    if naive is not None:
        best_family = ranked[0].family if ranked and beats(ranked[0], naive) else None
        for family in dict.fromkeys(r.family for r in ranked):
            if family == best_family:
                continue
            top = next(r for r in ranked if r.family == family)
            gap = f"{_pct(top.stats['acc'].mean)} vs {_pct(naive.stats['acc'].mean)}"
            plural = FAMILY_PLURAL.get(family, family)
            if not beats(top, naive):
                caveats.append(f"{plural.capitalize()} do no better than naive here: {gap}.")
            elif top.stats["acc"].mean - naive.stats["acc"].mean < MARGIN:
                caveats.append(f"{plural.capitalize()} barely beat naive here: {gap}.")
    if ranked:
        ties = [r for r in ranked[1:]
                if within_spread(r.stats["acc"], ranked[0].stats["acc"])]
        if ties:
            names = ", ".join([ranked[0].label] + [r.label for r in ties])
            spreads = " vs ".join(_with_sd(r.stats["acc"]) for r in [ranked[0]] + ties)
            caveats.append(f"{names} are within the seeds' spread of each other ({spreads}): "
                           "a difference inside the spread is not a win.")
    bounds = [r for r in group.rows if is_bound(r.strategy)]
    if bounds:
        named = " and ".join(f"{r.label} ({_pct(r.stats['acc'].mean)})" for r in bounds)
        verb = "is a bound that keeps" if len(bounds) == 1 else "are bounds that keep"
        caveats.append(f"{named} {verb} every task's data: references, never recommended.")
    return caveats


def _offers_task_scenario(group: Group, runs: dict[str, RunResult]) -> bool:
    from forgetless.data.benchmarks import BENCHMARKS

    benchmark = runs[group.rows[0].run_ids[0]].config.get("benchmark", "split")
    if benchmark not in BENCHMARKS:
        return True
    return "task" in getattr(BENCHMARKS.get(benchmark), "scenarios", ("task",))


def lesson(runs: list[RunResult]) -> Lesson:
    """The lesson of ``runs`` (any mix of protocols and scenarios); empty without runs."""
    groups = worst_first(group_runs(runs))
    if not groups:
        return Lesson()
    by_id = {r.run_id: r for r in runs}
    worst = groups[0]
    naive, ranked = reference_row(worst), candidates(worst)
    same_protocol = [g for g in groups if g.protocol == worst.protocol]
    result = Lesson(scenario=worst.scenario, protocol=worst.protocol,
                    findings=_findings(worst, naive, ranked[0] if ranked else None,
                                       only=len(same_protocol) == 1)
                    + _prior_skills(worst, naive))
    if len({g.protocol for g in groups}) > 1:
        result.findings[0] = result.findings[0][:-1] + f" (measured on {worst.description})."
    model_bytes = _model_bytes(worst, by_id)
    no_raw = next((r for r in ranked if not r.stores_raw_data), None)
    result.choices.append(_choice("Without storing raw data", no_raw, naive))
    if model_bytes is not None:
        small = next((r for r in ranked if r.strategy_bytes <= model_bytes), None)
        result.choices.append(_choice(
            f"With memory no larger than the model ({human_bytes(model_bytes)})", small, naive))
    task = next((g for g in same_protocol if g.scenario == "task"), None)
    if task is None and not _offers_task_scenario(worst, by_id):
        pass  # the benchmark has no task-incremental form (the knowledge stream)
    elif task is None:
        result.choices.append("With the task id known: no task-incremental runs here "
                              "(forgetless compare --scenario task measures them).")
    else:
        ranked_task = candidates(task)
        result.choices.append(_choice("With the task id known (task-incremental)",
                                      ranked_task[0] if ranked_task else None,
                                      reference_row(task)))
    result.caveats = _caveats(worst, naive, ranked)
    return result
