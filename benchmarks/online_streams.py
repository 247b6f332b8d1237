"""Online and task-free split MNIST (embedded), class-incremental: accuracy, the stability gap
and what continual evaluation costs (benchmarks/online.md).

Every run is an ordinary ``forgetless`` run (the runner, the results store), so the report of
the store shows each strategy's accuracy-over-steps plot:

    python benchmarks/online_streams.py online --store online.db      # the online table
    python benchmarks/online_streams.py task-free --store online.db   # blur 0 against 0.2
    forgetless report --store online.db --output online.html          # the stability-gap plots
    python benchmarks/online_streams.py resolution                    # the dip, step by step

Online: one pass over each task, batch 10, boundaries announced, memory 1,000 for every
strategy that keeps one. Figures are mean ± sd over the seeds; "dip" is the mean depth of the
drop on the task just left after each switch (``forgetless.continual_metrics``), "eval" the
time continual evaluation took as a share of training time (median over runs).
"""

from __future__ import annotations

import argparse
import statistics

import torch

from forgetless.config import RunConfig
from forgetless.experiments.runner import run
from forgetless.results.store import RunStore

MEMORY = 1000
#: Settings per strategy beyond the memory: ER fills its buffer from the stream, as online
#: replay does (its task-end filling needs boundaries and several epochs to pay).
SETTINGS = {"er": {"fill": "stream"}}
ONLINE = ["naive", "er", "er-ace", "mir", "derpp", "agem", "gdumb"]
TASK_FREE = ["naive", "er", "er-ace", "mir", "derpp"]


def configs(strategy: str, stream: str, seeds: int, blur: float = 0.0) -> list[RunConfig]:
    params = {"buffer_size": MEMORY} if strategy != "naive" else {}
    params.update(SETTINGS.get(strategy, {}))
    return [RunConfig(strategy=strategy, stream=stream, epochs=1, batch_size=10, seed=seed,
                      blur=blur, strategy_params=params) for seed in range(seeds)]


def trained(config: RunConfig, store: RunStore):
    from forgetless.experiments.compare import planned_run_id

    run_id = planned_run_id(config)
    if run_id in store:
        return store.get(run_id)
    result = run(config, progress=False)
    store.put(result)
    return result


def mean_sd(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def row(name: str, results) -> str:
    acc = [sum(r.accuracy_matrix[-1]) / len(r.accuracy_matrix) for r in results]
    metrics = [r.continual["metrics"] for r in results]
    overhead = statistics.median(r.continual["seconds"] / r.continual["train_seconds"]
                                 for r in results)
    return (f"| {name} | {mean_sd(acc)} | {mean_sd(m['min_acc'] for m in metrics)} | "
            f"{mean_sd(m['wc_acc'] for m in metrics)} | "
            f"{mean_sd(m['mean_dip_depth'] for m in metrics)} | {100 * overhead:.0f}% |")


def resolution(every: int = 8) -> None:
    """ER, seed 0, online, evaluated after every step: each switch's lowest accuracy on the
    task just left, read at every step and at every ``every``-th step after the switch."""
    result = run(configs("er", "online", 1)[0].updated(eval_every=1), progress=False)
    record = result.continual
    accuracy = dict(zip(record["steps"], record["accuracy"], strict=True))
    print(f"ER, online split MNIST, seed 0, evaluated every step "
          f"({100 * record['seconds'] / record['train_seconds']:.0f}% of training time)\n")
    print(f"| switch | before % | lowest, every step % | at step | lowest, every {every} "
          "steps % |\n|---|---|---|---|---|")
    for t in range(1, len(record["task_starts"])):
        switch, end = record["task_starts"][t], record["task_ends"][t]
        trace = [(s, accuracy[s][t - 1]) for s in range(switch + 1, end + 1)]
        step, low = min(trace, key=lambda sa: sa[1])
        sparse = min(a for s, a in trace if (s - switch) % every == 0)
        print(f"| {t} | {100 * accuracy[switch][t - 1]:.0f} | {100 * low:.0f} | "
              f"+{step - switch} | {100 * sparse:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=["online", "task-free", "resolution"])
    parser.add_argument("--store", default="online.db")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", help="comma-separated (default: the table's list)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.table == "resolution":
        resolution()
        return
    header = ("| strategy | ACC % | min-ACC % | WC-ACC % | dip (points) | eval |\n"
              "|---|---|---|---|---|---|")
    with RunStore(args.store) as store:
        if args.table == "online":
            names = args.strategies.split(",") if args.strategies else ONLINE
            print(f"online split MNIST, class-IL, batch 10, memory {MEMORY}, "
                  f"{args.seeds} seeds\n\n{header}")
            for name in names:
                print(row(name, [trained(c, store) for c in configs(name, "online",
                                                                      args.seeds)]), flush=True)
        else:
            names = args.strategies.split(",") if args.strategies else TASK_FREE
            print(f"task-free split MNIST, class-IL, batch 10, memory {MEMORY}, "
                  f"{args.seeds} seeds\n\n{header}")
            for name in names:
                for blur in (0.0, 0.2):
                    results = [trained(c, store) for c in configs(name, "task-free",
                                                                  args.seeds, blur)]
                    print(row(f"{name}, blur {blur:g}", results), flush=True)


if __name__ == "__main__":
    main()
