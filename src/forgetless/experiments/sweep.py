"""Sweeps: grids and random searches over strategies, hyper-parameters, scenarios and seeds, run
on a local process pool (``forgetless.experiments.compare``'s) or on a Ray cluster, every run
recorded in the results store under its run id, so finished runs are skipped when a sweep is
run again.

A sweep file (TOML; docs/sweeps.md documents it with examples that a test runs)::

    [base]                     # RunConfig fields shared by every run
    source = "digits"
    iterations = 50

    [grid]                     # every combination of these
    strategy = ["naive", "ewc", "er"]
    scenario = ["task", "class"]
    seed = [0, 1]
    "ewc.lam" = [10, 100]      # a hyper-parameter: STRATEGY.PARAM, or PARAM for every
                               # strategy that takes it (it does not multiply the others)

    [random]                   # optional: `samples` candidates drawn per strategy
    samples = 4
    seed = 0
    "ewc.lam" = { log_uniform = [1, 10000] }
    "er.buffer_size" = { choice = [100, 500] }
    lr = { uniform = [0.0005, 0.005] }

    [tune]                     # optional: choose hyper-parameters within the continual rules
    protocol = "first_tasks"   # tune on the first tasks only ...
    first_tasks = 2
    # protocol = "validation"  # ... or on a validation split held out of each task's
    # validation_fraction = 0.2  training data (the test data is never used to choose)
    metric = "acc"             # acc, bwt, fwt (higher is better) or forgetting (lower)
    final = true               # then run the chosen settings on the full stream

Tuning groups the candidate runs by (strategy, scenario), averages the metric over seeds and
picks the best candidate of each group; the final runs use the chosen settings on the full
stream, scored on its test data. The tuning runs' streams are built by the runner from two
``benchmark_options``: ``first_tasks`` (the first k tasks of the stream) and
``validation_fraction`` (each task's test set replaced by a held-out part of its training set).
"""

from __future__ import annotations

import itertools
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from forgetless.config import RunConfig
from forgetless.errors import ConfigurationError, ForgetlessError
from forgetless.experiments.compare import (
    Outcome,
    execute,
    planned_run_id,
    progress_line,
    record_outcome,
    settings_for,
    stored_results,
)
from forgetless.experiments.compare import pending as pending_runs
from forgetless.results.run_result import RunResult
from forgetless.results.store import RunStore, variant_key

BACKENDS = ("local", "ray")
METRICS = {"acc": 1, "bwt": 1, "fwt": 1, "forgetting": -1}  # sign: higher is better
PROTOCOLS = ("first_tasks", "validation")
CONFIG_FIELDS = set(RunConfig.__dataclass_fields__)


# ---------------------------------------------------------------------- the sweep file
@dataclass
class Sweep:
    base: RunConfig
    grid: dict[str, list]
    random: dict = field(default_factory=dict)
    tune: dict = field(default_factory=dict)


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file (see the module docstring)."""
    import tomllib

    path = Path(path)
    try:
        values = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"sweep file '{path}' does not exist.") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"sweep file '{path}' is not valid TOML: {error}.") from None
    return parse_sweep(values, str(path))


def parse_sweep(values: dict, where: str = "sweep") -> Sweep:
    unknown = set(values) - {"base", "grid", "random", "tune"}
    if unknown:
        raise ConfigurationError(f"{where}: unknown table(s) {sorted(unknown)}; a sweep has "
                                 "[base], [grid], [random] and [tune].")
    base = RunConfig.from_dict(values.get("base", {}))
    grid = {k: v if isinstance(v, list) else [v] for k, v in values.get("grid", {}).items()}
    for key, options in grid.items():
        if not options:
            raise ConfigurationError(f"{where}: [grid] {key} is an empty list; give at least "
                                     "one value.")
    randomized = dict(values.get("random", {}))
    if randomized:
        samples = randomized.get("samples")
        if not isinstance(samples, int) or samples < 1:
            raise ConfigurationError(f"{where}: [random] needs samples = N (a positive whole "
                                     "number of candidates per strategy).")
        for key, spec in randomized.items():
            if key not in ("samples", "seed"):
                _check_distribution(key, spec, where)
        both = set(grid) & (set(randomized) - {"samples", "seed"})
        if both:
            raise ConfigurationError(f"{where}: {sorted(both)} are in both [grid] and "
                                     "[random]; put each in one.")
    tune = dict(values.get("tune", {}))
    if tune:
        protocol = tune.setdefault("protocol", "first_tasks")
        if protocol not in PROTOCOLS:
            raise ConfigurationError(f"{where}: [tune] protocol must be one of {PROTOCOLS}, "
                                     f"got '{protocol}'.")
        metric = tune.setdefault("metric", "acc")
        if metric not in METRICS:
            raise ConfigurationError(f"{where}: [tune] metric must be one of "
                                     f"{sorted(METRICS)}, got '{metric}'.")
        tune.setdefault("final", True)
        tune.setdefault("first_tasks", 2)
        tune.setdefault("validation_fraction", 0.2)
    return Sweep(base, grid, randomized, tune)


def _check_distribution(key: str, spec, where: str) -> None:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigurationError(
            f"{where}: [random] {key} must be one of {{ choice = [...] }}, "
            "{ uniform = [low, high] }, { log_uniform = [low, high] }, "
            "{ int_uniform = [low, high] }.")
    (kind, args), = spec.items()
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigurationError(f"{where}: [random] {key}: choice needs a non-empty list.")
    elif kind in ("uniform", "log_uniform", "int_uniform"):
        if not (isinstance(args, list) and len(args) == 2 and args[0] <= args[1]):
            raise ConfigurationError(f"{where}: [random] {key}: {kind} needs [low, high] with "
                                     "low <= high.")
        if kind == "log_uniform" and args[0] <= 0:
            raise ConfigurationError(f"{where}: [random] {key}: log_uniform needs low > 0.")
    else:
        raise ConfigurationError(f"{where}: [random] {key}: unknown distribution '{kind}'; "
                                 "use choice, uniform, log_uniform or int_uniform.")


def _draw(spec: dict, rng: random.Random):
    (kind, args), = spec.items()
    if kind == "choice":
        return rng.choice(args)
    if kind == "uniform":
        return rng.uniform(*args)
    if kind == "int_uniform":
        return rng.randint(int(args[0]), int(args[1]))
    return math.exp(rng.uniform(math.log(args[0]), math.log(args[1])))


# ---------------------------------------------------------------------- planning
def _applies(spec: str, key: str) -> bool:
    """Whether a hyper-parameter key (``ewc.lam`` or ``lam``) applies to strategy ``spec``."""
    return bool(settings_for(spec, {key: None}))


def _split(values: dict) -> tuple[dict, dict]:
    """RunConfig fields and hyper-parameters."""
    fields = {k: v for k, v in values.items() if k in CONFIG_FIELDS}
    params = {k: v for k, v in values.items() if k not in CONFIG_FIELDS}
    return fields, params


def _config(base: RunConfig, fields: dict, params: dict) -> RunConfig:
    strategy_params = {**base.strategy_params, **params}
    return base.updated(**fields, strategy_params=strategy_params)


def candidates(sweep: Sweep) -> list[RunConfig]:
    """Every run of the grid (and of the random draws), before any tuning protocol."""
    grid_fields, grid_params = _split(sweep.grid)
    strategies = grid_fields.pop("strategy", [sweep.base.strategy])
    draws = {k: v for k, v in sweep.random.items() if k not in ("samples", "seed")}
    draw_fields, draw_params = _split(draws)
    for key in [*grid_params, *draw_params]:
        if not any(_applies(s, key) for s in strategies):
            raise ConfigurationError(f"hyper-parameter '{key}' applies to none of the sweep's "
                                     f"strategies ({', '.join(strategies)}); write "
                                     "STRATEGY.PARAM for one of them.")
    configs = []
    field_names = list(grid_fields)
    for spec in strategies:
        params = {k: v for k, v in grid_params.items() if _applies(spec, k)}
        own_draws = {k: v for k, v in draw_params.items() if _applies(spec, k)}
        samples = []
        for index in range(sweep.random.get("samples", 1) if sweep.random else 1):
            rng = random.Random(f"{sweep.random.get('seed', 0)}:{spec}:{index}")
            samples.append({k: _draw(v, rng) for k, v in {**draw_fields, **own_draws}.items()})
        for field_values in itertools.product(*(grid_fields[k] for k in field_names)):
            fields = dict(zip(field_names, field_values, strict=True))
            for param_values in itertools.product(*params.values()):
                chosen = dict(zip(params, param_values, strict=True))
                for sample in samples:
                    drawn_fields, drawn_params = _split(sample)
                    configs.append(_config(sweep.base, {"strategy": spec, **fields,
                                                        **drawn_fields},
                                           {**chosen, **drawn_params}))
    return configs


def tuning_config(config: RunConfig, tune: dict) -> RunConfig:
    """The run that scores ``config``'s candidate under the tuning protocol."""
    options = dict(config.benchmark_options)
    if tune["protocol"] == "first_tasks":
        options["first_tasks"] = tune["first_tasks"]
    else:
        options["validation_fraction"] = tune["validation_fraction"]
    return config.updated(benchmark_options=options)


# ---------------------------------------------------------------------- choosing
def candidate_key(config: RunConfig) -> str:
    """A candidate: the config without its seed (the store's variant key)."""
    return variant_key(config.to_dict())


def choose(configs: list[RunConfig], results: dict[str, RunResult], metric: str
           ) -> list[dict]:
    """The best candidate of each (strategy, scenario) by the mean of ``metric`` over seeds.

    ``results`` maps planned run ids to results; a candidate with a missing run is skipped."""
    sign = METRICS[metric]
    groups: dict[tuple, dict[str, list]] = {}
    for config in configs:
        result = results.get(planned_run_id(config))
        if result is None:
            continue
        if result.metrics.get(metric) is None:  # FWT in class-incremental runs, of joint
            raise ConfigurationError(
                f"{metric} is undefined for {config.strategy} in the {config.scenario}-"
                "incremental scenario; tune on acc, bwt or forgetting ([tune] metric).")
        variants = groups.setdefault((config.strategy, config.scenario), {})
        variants.setdefault(candidate_key(config), [config, []])[1].append(
            result.metrics[metric])
    chosen = []
    for (strategy, scenario), variants in groups.items():
        def score(entry):
            return sign * sum(entry[1]) / len(entry[1])

        config, values = max(variants.values(), key=score)
        chosen.append({"strategy": strategy, "scenario": scenario, "config": config,
                       "score": sum(values) / len(values), "seeds": len(values),
                       "candidates": len(variants)})
    return chosen


def settings_text(config: RunConfig, base: RunConfig) -> str:
    """What a candidate sets beyond the base config."""
    parts = [f"{k}={v}" for k, v in sorted(config.strategy_params.items())
             if base.strategy_params.get(k) != v]
    for name in sorted(CONFIG_FIELDS - {"strategy", "scenario", "seed", "strategy_params",
                                        "benchmark_options"}):
        value = getattr(config, name)
        if value != getattr(base, name):
            parts.append(f"{name}={value}")
    return ", ".join(parts) or "defaults"


# ---------------------------------------------------------------------- running
@dataclass
class SweepOutcome:
    runs: list[RunConfig]  # the runs whose results answer the sweep (final runs when tuning)
    results: list[RunResult]
    outcomes: list[Outcome]
    chosen: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def trained(self) -> int:
        return sum(o.trained for o in self.outcomes)

    @property
    def skipped(self) -> int:
        return sum(o.skipped for o in self.outcomes)

    @property
    def failures(self) -> list:
        return [f for o in self.outcomes for f in o.failures]


def run_sweep(sweep: Sweep, store: RunStore, backend: str = "local", jobs: int = 2,
              threads: int = 1, address: str | None = None, retries: int = 2,
              checkpoint_dir: str | Path | None = None, progress: bool | None = None,
              echo: Callable[[str], None] | None = None) -> SweepOutcome:
    """Run the sweep's runs the store lacks; with ``[tune]``, first the tuning runs, then the
    chosen settings on the full stream."""
    if backend not in BACKENDS:
        raise ConfigurationError(f"unknown backend '{backend}'; choose local or ray.")
    start = time.perf_counter()
    configs = candidates(sweep)

    def execute_on_backend(todo: list[RunConfig]) -> Outcome:
        if backend == "local":
            return execute(todo, store, jobs=jobs, threads=threads, progress=progress,
                           echo=echo)
        return execute_ray(todo, store, address=address, jobs=jobs, threads=threads,
                           retries=retries, checkpoint_dir=checkpoint_dir, echo=echo)

    outcomes, chosen = [], []
    if sweep.tune:
        tuning = [tuning_config(c, sweep.tune) for c in configs]
        outcomes.append(execute_on_backend(tuning))
        results = stored_results(store, outcomes[-1])
        found = {r.run_id: r for r in results}
        original = {id(t): c for c, t in zip(configs, tuning, strict=True)}
        chosen = [{**entry, "config": original[id(entry["config"])]}
                  for entry in choose(tuning, found, sweep.tune["metric"])]
        if not sweep.tune["final"]:
            return SweepOutcome(tuning, results, outcomes, chosen, time.perf_counter() - start)
        chosen_variants = {candidate_key(e["config"]) for e in chosen}
        configs = [c for c in configs if candidate_key(c) in chosen_variants]
    outcomes.append(execute_on_backend(configs))
    results = stored_results(store, outcomes[-1])
    return SweepOutcome(configs, results, outcomes, chosen, time.perf_counter() - start)


# ---------------------------------------------------------------------- Ray
def train_run(values: dict, checkpoint_dir: str | None, threads: int) -> tuple[str, dict | str]:
    """One run on a Ray worker. With ``checkpoint_dir`` it checkpoints after every task and a
    retried task (its worker died) resumes from the last checkpoint."""
    import torch

    from forgetless.experiments.runner import run

    torch.set_num_threads(threads)
    try:
        result = run(RunConfig.from_dict(values), progress=False, checkpoint_dir=checkpoint_dir,
                     resume=checkpoint_dir is not None and Path(checkpoint_dir).is_dir())
        return "ok", result.to_dict()
    except ForgetlessError as error:
        return "error", str(error)


def execute_ray(configs: list[RunConfig], store: RunStore, address: str | None = None,
                jobs: int = 2, threads: int = 1, retries: int = 2,
                checkpoint_dir: str | Path | None = None,
                echo: Callable[[str], None] | None = None) -> Outcome:
    """Like ``compare.execute`` on a Ray cluster: ``address`` of an existing one (its nodes need
    forgetless installed), or a local one of ``jobs`` CPUs on the loopback address. A task whose
    worker dies is retried up to ``retries`` times by Ray."""
    start = time.perf_counter()
    outcome, todo = pending_runs(configs, store)
    if not todo:
        outcome.seconds = time.perf_counter() - start
        return outcome
    try:
        import ray
    except ImportError:
        raise ConfigurationError("--backend ray needs Ray: pip install 'forgetless[ray]'.") \
            from None
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=jobs, include_dashboard=False, _node_ip_address="127.0.0.1",
                     log_to_driver=False, runtime_env={"env_vars": _worker_env()})
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=retries)(train_run)
        pending = {}
        for config, rid in todo:
            folder = None if checkpoint_dir is None else str(Path(checkpoint_dir) / rid)
            pending[remote.remote(config.to_dict(), folder, threads)] = (config, rid)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                config, rid = pending.pop(ref)
                try:
                    status, payload = ray.get(ref)
                except ray.exceptions.RayError as error:
                    status = "error"
                    payload = f"{type(error).__name__} after {retries} retries: " + \
                        str(error).splitlines()[0][:300]
                _record(store, outcome, config, rid, status, payload, len(todo), echo)
    finally:
        if started:
            ray.shutdown()
    outcome.seconds = time.perf_counter() - start
    return outcome


def _worker_env() -> dict:
    """A local cluster's workers import forgetless from where this process does."""
    import forgetless

    src = str(Path(forgetless.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": src + (os.pathsep + path if path else "")}


def _record(store, outcome, config, rid, status, payload, total, echo) -> None:
    note = record_outcome(store, outcome, config, rid, status, payload)
    if echo is not None:
        echo(progress_line(outcome, config, note, total))


def default_echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
