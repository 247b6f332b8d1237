"""The comparison: every registered strategy (or a chosen few), each in every scenario it
serves, over several seeds, on one protocol; runs go to a pool of worker processes and into the
results store; the table is built from the store.

- ``plan`` lists the runs (RunConfigs) and ``planned_run_id`` names each without training it;
- ``execute`` trains those the store lacks (``rerun=True``: all of them) on ``jobs`` processes
  (``spawn`` context, ``threads`` torch threads each) with one progress display, writing each
  finished run to the store at once, so an interrupted comparison continues where it stopped;
- ``compare`` does both and returns the runs of the comparison, read back from the store.

Budgets (``PRESETS``): ``quick`` (the default of ``forgetless compare``) is 3 epochs per task
and 3 seeds, which keeps the whole registry on the embedded split MNIST at about 2 minutes on
an idle 2-core machine (see benchmarks/compare.md; ``experiments.costs`` estimates a plan);
``full`` is the default run protocol (5 epochs per task) over 5 seeds.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from forgetless.config import RunConfig
from forgetless.data.benchmarks import BENCHMARKS
from forgetless.errors import ConfigurationError, ForgetlessError
from forgetless.experiments.costs import CostModel, Eta
from forgetless.results.run_result import RunResult
from forgetless.results.store import RunStore
from forgetless.results.summary import SCENARIO_ORDER, family_rank

#: name -> (RunConfig changes, seeds).
PRESETS = {
    "quick": ({"epochs": 3, "iterations": None}, 3),
    "full": ({"epochs": 5, "iterations": None}, 5),
}
#: Always part of a comparison: the forgetting to beat and the bound to approach.
REFERENCE_STRATEGIES = ("naive", "joint")


# ---------------------------------------------------------------------- planning
def _registry():
    from forgetless.strategies import STRATEGIES

    return STRATEGIES


def _parts(spec: str) -> list[str]:
    return [n.strip() for n in spec.split("+") if n.strip()]


def served_scenarios(spec: str, registry=None) -> list[str]:
    """The scenarios a strategy (or a composition ``a+b``) serves, in the order task, domain,
    class. A strategy that needs the task id at test time serves only task-incremental."""
    registry = registry or _registry()
    classes = [registry.get(n) for n in _parts(spec)]
    if not classes:
        raise ConfigurationError("an empty strategy name; e.g. --strategies ewc,er.")
    served = frozenset.intersection(*(frozenset(c.scenarios) for c in classes))
    if any(c.needs_task_id for c in classes):
        served &= {"task"}
    return [s for s in SCENARIO_ORDER if s in served]


def serves_objective(spec: str, objective: str, registry=None) -> bool:
    """Whether every part of ``spec`` serves ``objective`` (a language model's, say)."""
    registry = registry or _registry()
    return all(objective in registry.get(n).objectives for n in _parts(spec))


def default_strategies(registry=None, benchmark: str | None = None) -> list[str]:
    """Every registered strategy that fits ``benchmark``, baselines first, then by family and
    name: on an image benchmark (or none named) those that train from scratch; on a text
    benchmark (a pretrained model) those that serve one."""
    registry = registry or _registry()
    text = benchmark is not None and getattr(BENCHMARKS.get(benchmark), "needs_model", False)

    def fits(cls) -> bool:
        return cls.serves_pretrained if text else not cls.meant_for_pretrained

    return [name for name, cls in sorted(registry.items(),
                                         key=lambda kv: (family_rank(kv[1].family), kv[0]))
            if fits(cls)]


def settings_for(spec: str, settings: dict) -> dict:
    """The ``--set`` values that apply to ``spec``: ``name.param`` only to strategies with that
    part, a bare ``param`` to every strategy whose constructor takes it."""
    from forgetless.strategies import STRATEGIES, constructor_parameters

    names = _parts(spec)
    accepted = {p for n in names for p in constructor_parameters(STRATEGIES.get(n))}
    chosen = {}
    for key, value in settings.items():
        target, _, param = key.rpartition(".")
        if (target and target in names) or (not target and param in accepted):
            chosen[key] = value
    return chosen


def _check_settings(strategies: list[str], settings: dict) -> None:
    """A setting no strategy of the comparison takes is a typo; say so before any run."""
    for key in settings:
        if not any(key in settings_for(spec, {key: None}) for spec in strategies):
            raise ConfigurationError(
                f"--set {key}: no strategy of this comparison takes it; write "
                "STRATEGY.PARAM (e.g. --set ewc.lam=100) for one of: "
                f"{', '.join(strategies)}.")


def plan(base: RunConfig | None = None, strategies: Iterable[str] | None = None,
         scenarios: Iterable[str] | None = None, seeds: Iterable[int] = (0, 1),
         settings: dict | None = None, references: bool = True,
         exclude: Iterable[str] = ()) -> list[RunConfig]:
    """The runs of a comparison: each strategy in each requested scenario it serves, each seed.

    ``strategies`` None means every registered one; ``references`` adds naive and joint;
    ``exclude`` leaves names out (references too)."""
    from forgetless.data.stream import Scenario

    base = base or RunConfig()
    settings = dict(settings or {})
    from forgetless.strategies import canonical_spec

    explicit = strategies is not None
    names = list(dict.fromkeys(canonical_spec(n) for n in (strategies if explicit
                                                           else default_strategies(
                                                               benchmark=base.benchmark))))
    if references:
        names = [n for n in REFERENCE_STRATEGIES if n not in names] + names
    excluded = {canonical_spec(n) for n in exclude}
    names = [n for n in names if n not in excluded]
    if not names:
        raise ConfigurationError("no strategies to compare; e.g. --strategies ewc,er.")
    builder = BENCHMARKS.get(base.benchmark)
    wanted = [Scenario.parse(s).value for s in (
        scenarios or getattr(builder, "defaults", {}).get("compare_scenarios", SCENARIO_ORDER))]
    offered = getattr(builder, "scenarios", SCENARIO_ORDER)
    objective = getattr(builder, "objective", "classification")
    if not any(s in offered for s in wanted):
        raise ConfigurationError(
            f"the {base.benchmark} benchmark runs the {', '.join(offered)}-incremental "
            f"scenario(s), not {', '.join(wanted)}; leave --scenario out or choose one of those.")
    wanted = [s for s in wanted if s in offered]
    serving = [n for n in names if serves_objective(n, objective)]
    if explicit and len(serving) < len(names):
        refused = [n for n in names if n not in serving and n not in REFERENCE_STRATEGIES]
        if refused:
            raise ConfigurationError(
                f"{', '.join(refused)} cannot learn the {base.benchmark} benchmark "
                f"({objective.replace('_', ' ')}); leave them out (`forgetless list` shows "
                "what each serves).")
    names = serving
    seeds = list(dict.fromkeys(seeds))
    if not seeds:
        raise ConfigurationError("at least one seed is needed (--seeds 2).")
    settings = {**base.strategy_params, **settings}
    _check_settings(names, settings)
    if base.stream == "task-free":
        names = _boundary_free(names, settings, explicit)
    configs = []
    for spec in names:
        served = [s for s in served_scenarios(spec) if s in wanted]
        if not served and explicit and spec not in REFERENCE_STRATEGIES:
            raise ConfigurationError(
                f"'{spec}' serves none of the scenarios asked for ({', '.join(wanted)}); it "
                f"serves {', '.join(served_scenarios(spec)) or 'none'}.")
        params = settings_for(spec, settings)
        for scenario in served:
            for seed in seeds:
                configs.append(base.updated(strategy=spec, scenario=scenario, seed=seed,
                                            strategy_params=params))
    return configs


def _boundary_free(names: list[str], settings: dict, explicit: bool) -> list[str]:
    """The strategies that learn without being told task boundaries (with their settings);
    one asked for by name that cannot is refused with its reason."""
    from forgetless.strategies import build_strategy

    free = []
    for spec in names:
        reason = build_strategy(spec, settings_for(spec, settings)).boundary_reason()
        if reason is None:
            free.append(spec)
        elif explicit and spec not in REFERENCE_STRATEGIES:
            raise ConfigurationError(f"'{spec}' cannot learn from a task-free stream: {reason}")
    if not free:
        raise ConfigurationError("none of these strategies learns from a task-free stream; "
                                 "e.g. --strategies er-ace,derpp.")
    return free


def planned_run_id(config: RunConfig) -> str:
    """The run id ``forgetless.experiments.runner.run(config)`` will give, without building data
    or model (the strategy is built, which is cheap, to resolve its hyper-parameters)."""
    from forgetless.experiments.runner import configured_strategy

    return configured_strategy(config)[2]


# ---------------------------------------------------------------------- the workers
def _watch_parent(parent: int) -> None:
    """A worker whose parent died (killed comparison) exits instead of lingering."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _warm_up() -> None:
    """A few optimiser steps on a toy model: a fresh process pays seconds of one-time set-up
    on its first step, which would otherwise be charged to the first run's train time."""
    import torch
    import torch.nn.functional as F

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    x, y = torch.randn(3, 4), torch.tensor([0, 1, 0])
    for optimizer in (torch.optim.Adam(model.parameters()),
                      torch.optim.SGD(model.parameters(), lr=0.1)):
        for _ in range(2):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()


def _worker_init(threads: int, parent: int) -> None:
    import torch

    torch.set_num_threads(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    _warm_up()


def _reset_peak_memory() -> None:
    """Linux: hand freed memory back to the system and restart this process's peak-RSS count,
    so each run reports its own peak, not the worker's earlier runs'."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def run_config(values: dict) -> tuple[str, dict | str]:
    """Train one run (in a worker); ``("ok", RunResult dict)`` or ``("error", message)``."""
    from forgetless.experiments.runner import run

    try:
        _reset_peak_memory()
        return "ok", run(RunConfig.from_dict(values), progress=False).to_dict()
    except ForgetlessError as error:
        return "error", str(error)
    except Exception as error:  # a broken strategy must not stop the whole comparison
        where = traceback.extract_tb(error.__traceback__)[-1]
        return "error", (f"{type(error).__name__}: {error} (at {os.path.basename(where.filename)}"
                         f":{where.lineno})")


# ---------------------------------------------------------------------- execution
@dataclass
class Outcome:
    """What ``execute`` did."""

    planned: list[str]  # run ids, in plan order
    skipped: int = 0  # already in the store
    trained: int = 0
    failures: list[tuple[RunConfig, str]] = field(default_factory=list)
    seconds: float = 0.0


def describe(config: RunConfig) -> str:
    """The run's full name: strategy, its --set values, scenario, seed."""
    settings = " ".join(f"{k}={v}" for k, v in sorted(config.strategy_params.items()))
    return " ".join(p for p in (config.strategy, settings, config.scenario,
                                f"seed {config.seed}") if p)


def progress_line(outcome: Outcome, config: RunConfig, note: str, total: int,
                  eta: str = "") -> str:
    """``[done/total] strategy scenario seed N: note; ETA m:ss`` for a finished run."""
    line = f"[{outcome.trained + len(outcome.failures)}/{total}] {describe(config)}: {note}"
    return f"{line}; {eta}" if eta else line


def pending(configs: list[RunConfig], store: RunStore,
            rerun: bool = False) -> tuple[Outcome, list[tuple[RunConfig, str]]]:
    """The runs still to train, each once, with their run ids; the Outcome counts the planned
    runs and those the store already holds (all are retrained with ``rerun``)."""
    ids = [planned_run_id(c) for c in configs]
    outcome = Outcome(planned=ids)
    stored = set() if rerun else store.run_ids()
    todo, seen = [], set()
    for config, rid in zip(configs, ids, strict=True):
        if rid in stored or rid in seen:
            outcome.skipped += rid in stored
            continue
        seen.add(rid)
        todo.append((config, rid))
    return outcome, todo


def record_outcome(store: RunStore, outcome: Outcome, config: RunConfig, rid: str, status: str,
                   payload) -> str:
    """Store a worker's finished run (or count its failure); returns a short note for the
    progress display."""
    if status != "ok":
        outcome.failures.append((config, payload))
        return f"FAILED: {payload}"
    result = RunResult.from_dict(payload)
    if result.run_id != rid:  # the plan and the runner must agree, or resuming breaks
        raise RuntimeError(f"run id mismatch for {describe(config)}: planned {rid}, "
                           f"got {result.run_id}")
    store.put(result)
    outcome.trained += 1
    return f"ACC {100 * result.metrics['acc']:.1f}%"


def check_workers(jobs, threads=1) -> None:
    """Refuse worker and thread counts that are not positive whole numbers (checked before a
    command writes anything, and again by ``execute`` for API callers)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigurationError(f"--jobs must be a positive whole number, got {jobs!r}.")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigurationError(f"--threads must be a positive whole number, got {threads!r}.")


def execute(configs: list[RunConfig], store: RunStore, jobs: int = 2, threads: int = 1,
            rerun: bool = False, progress: bool | None = None,
            echo: Callable[[str], None] | None = None) -> Outcome:
    """Train the runs of ``configs`` the store lacks and record each as it finishes.

    ``jobs`` 1 trains in this process; more uses a pool of spawned worker processes.
    ``progress``: one bar for the whole comparison (default: when stderr is a terminal);
    otherwise ``echo`` (if given) gets one line per finished run."""
    check_workers(jobs, threads)
    start = time.perf_counter()
    outcome, todo = pending(configs, store, rerun)
    if not todo:
        outcome.seconds = time.perf_counter() - start
        return outcome
    progress = sys.stderr.isatty() if progress is None else progress
    costs = CostModel.from_store(store)
    eta = Eta({rid: costs.seconds(config) for config, rid in todo})
    bar = None
    if progress:
        from tqdm.auto import tqdm

        # tqdm's own ETA assumes runs of equal cost; ours weighs each by its expected cost.
        bar = tqdm(total=len(todo), desc="compare", unit="run", dynamic_ncols=True,
                   bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed}{postfix}")
        bar.set_postfix_str(eta.text(), refresh=False)

    def running(configs: list[RunConfig]) -> None:
        """The runs training now, named in full on the bar (several with a pool)."""
        if bar is not None and configs:
            bar.set_postfix_str(f"{eta.text()}; now {', '.join(map(describe, configs))}")

    def finished(config: RunConfig, rid: str, status: str, payload) -> None:
        note = record_outcome(store, outcome, config, rid, status, payload)
        eta.finished(rid)
        if bar is not None:
            bar.set_postfix_str(f"{eta.text()}; last {describe(config)}: {note}", refresh=False)
            bar.update(1)
            if status != "ok":
                bar.write(f"{describe(config)} failed: {payload}")
        elif echo is not None:
            echo(progress_line(outcome, config, note, len(todo), eta.text()))

    try:
        if jobs == 1:
            import torch

            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            _warm_up()
            try:
                for config, rid in todo:
                    running([config])
                    finished(config, rid, *run_config(config.to_dict()))
            finally:
                torch.set_num_threads(previous)
        else:
            _run_pool(todo, jobs, threads, finished, running)
    finally:
        if bar is not None:
            bar.close()
    outcome.seconds = time.perf_counter() - start
    return outcome


def _run_pool(todo, jobs: int, threads: int, finished, running) -> None:
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=context,
                               initializer=_worker_init, initargs=(threads, os.getpid()))
    pending = {}
    try:
        for config, rid in todo:
            pending[pool.submit(run_config, config.to_dict())] = (config, rid)
        while pending:
            running([pending[f][0] for f in pending if f.running()][:jobs])
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                config, rid = pending.pop(future)
                try:
                    status = future.result()
                except BrokenProcessPool:
                    raise ForgetlessError(
                        f"a worker process died while training {describe(config)} (out of "
                        "memory, or killed). Runs already finished are in the store: run the "
                        "same command again to continue, with fewer --jobs if memory is short. "
                        "A script that calls compare with jobs > 1 needs an "
                        "`if __name__ == '__main__':` guard.") from None
                finished(config, rid, *status)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def compare(configs: list[RunConfig], store: RunStore, **options) -> tuple[list[RunResult],
                                                                          Outcome]:
    """Execute ``configs`` (see ``execute``) and return their stored runs, in plan order."""
    outcome = execute(configs, store, **options)
    return stored_results(store, outcome), outcome


def stored_results(store: RunStore, outcome: Outcome) -> list[RunResult]:
    """The runs of ``outcome``'s plan that the store holds, in plan order."""
    wanted = list(dict.fromkeys(outcome.planned))
    found = store.get_many(wanted)
    return [found[i] for i in wanted if i in found]
