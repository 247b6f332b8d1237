"""The learning-forgetting table of a knowledge comparison, from its results store.

    python benchmarks/knowledge_table.py knowledge.db

Per strategy (mean over the seeds stored): the prior skills (exact match on task 0's probes)
before fine-tuning and after the last task, the points lost, the new facts learnt (each task's
score right after it; tasks 1..T), the new facts kept at the end, the perplexity of held-out
general text at the end (before fine-tuning in the header), train seconds and peak memory.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from types import SimpleNamespace

from forgetless.results.lesson import new_task_learning
from forgetless.results.store import RunStore
from forgetless.results.summary import strategy_label


def rows(path: str) -> tuple[list[list[str]], float, float]:
    by_variant = defaultdict(list)
    with RunStore(path) as db:
        for run in db.select():
            if run.objective == "language_modelling":
                settings = {**run.config["strategy_params"], "lr": run.config["lr"]}
                params = tuple(sorted((k, str(v)) for k, v in settings.items()))
                by_variant[(strategy_label(run.config), params)].append(run)
    by_label = {}
    for (label, params), runs in by_variant.items():
        twins = [p for (other, p) in by_variant if other == label]
        differing = sorted({kv for p in twins for kv in p if any(kv not in q for q in twins)})
        shown = ", ".join(f"{k.split('.', 1)[-1]}={v}" for k, v in differing if (k, v) in params)
        by_label[f"{label} ({shown})" if shown else label] = runs
    table, prior, perplexity = [], float("nan"), float("nan")
    for label, runs in by_label.items():
        def mean(values):
            return statistics.fmean(values)

        m = [r.accuracy_matrix for r in runs]
        prior = mean(r.untrained_accuracy[0] for r in runs)
        perplexity = mean(r.scores["held_out"]["perplexity"][0] for r in runs)
        kept = mean(x[-1][0] for x in m)
        learnt = mean(new_task_learning(SimpleNamespace(mean_matrix=x)) for x in m)
        final = mean(mean(x[-1][1:]) for x in m)
        table.append([label, f"{100 * kept:.1f}", f"{100 * (prior - kept):.1f}",
                      f"{100 * learnt:.1f}", f"{100 * final:.1f}",
                      f"{mean(r.scores['held_out']['perplexity'][-1] for r in runs):.1f}",
                      f"{mean(r.costs['train_seconds_total'] for r in runs):.0f}",
                      f"{mean(r.costs['peak_rss_bytes'] for r in runs) / 2**30:.2f}",
                      str(len(runs))])
    table.sort(key=lambda r: -float(r[1]))
    return table, prior, perplexity


def main(path: str) -> None:
    table, prior, perplexity = rows(path)
    print(f"pretrained model: prior skills {100 * prior:.1f} %, general-text perplexity "
          f"{perplexity:.1f}\n")
    head = ["strategy", "prior kept %", "points lost", "new learnt %", "new kept %",
            "perplexity", "train s", "peak GiB", "seeds"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "forgetless-runs.db")
