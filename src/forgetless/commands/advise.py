"""``forgetless advise``: which strategy fits my constraints, from measured runs."""

from __future__ import annotations

import click

from forgetless.commands.runs import store_option


@click.command()
@click.option("--raw-data/--no-raw-data", default=True,
              help="May the strategy keep raw training samples? --no-raw-data when privacy "
                   "forbids it (default: allowed).")
@click.option("--memory-budget", metavar="SIZE",
              help="Memory the strategy may hold beyond the model, e.g. 5MB or 500kB "
                   "(default unlimited).")
@click.option("--compute-budget", metavar="MULTIPLE",
              help="Train time allowed, as a multiple of plain fine-tuning, e.g. 2x "
                   "(default unlimited).")
@click.option("--task-id", type=click.Choice(["known", "unknown"], case_sensitive=False),
              default="unknown",
              show_default=True, help="Is the task id given at test time?")
@click.option("--scenario", metavar="task|domain|class",
              help="Default: task if the task id is known, else class.")
@click.option("--benchmark", help="Measure on this benchmark (default: the closest stored one, "
                                  "else split).")
@click.option("--source", help="Measure on this source (default: the closest stored one, "
                               "else the embedded mnist).")
@store_option
@click.option("--no-run", is_flag=True,
              help="Never train: advise only from what the store holds (by default, strategies "
                   "the store lacks are measured first).")
@click.option("--jobs", "-j", type=int, help="Worker processes for a comparison it runs.")
def advise(raw_data, memory_budget, compute_budget, task_id, scenario, benchmark, source, store,
           no_run, jobs) -> None:
    """Rank the strategies that satisfy your constraints by measured ACC, and say in one line
    why each is chosen or excluded.

    Example: forgetless advise --no-raw-data --memory-budget 5MB --compute-budget 2x
    --task-id unknown. Measurements come from the results store; when it has none for the
    scenario, the strategies your constraints allow (and naive, the reference) are measured
    first, on the quick protocol; strategies the store lacks are measured on the stored
    protocol (both are stored for next time). It says how many runs and about how long
    before it trains; --no-run trains and creates nothing."""
    from pathlib import Path

    from forgetless.commands.compare import default_jobs, report_failures
    from forgetless.commands.options import benchmark_defaults
    from forgetless.config import RunConfig
    from forgetless.data.benchmarks import BENCHMARKS
    from forgetless.data.sources import SOURCES
    from forgetless.errors import ConfigurationError
    from forgetless.experiments.advise import (
        REFERENCE,
        Constraints,
        allowed_strategies,
        missing_runs,
        parse_bytes,
        parse_multiple,
    )
    from forgetless.experiments.advise import advise as rank
    from forgetless.experiments.compare import PRESETS, check_workers, execute, plan
    from forgetless.experiments.costs import CostModel, estimate
    from forgetless.results.store import RunStore
    from forgetless.storage import check_writable
    from forgetless.strategies import STRATEGIES

    # Names as registered (any case; a typo gets "did you mean"), as stored runs spell them.
    benchmark = None if benchmark is None else BENCHMARKS.canonical(benchmark)
    own = {} if benchmark is None else benchmark_defaults(benchmark)  # a text benchmark's
    if scenario is None and "scenario" in own:  # knowledge is domain-incremental only
        scenario = own["scenario"]
    source = None if source is None else SOURCES.canonical(source)
    if jobs is not None:
        check_workers(jobs)
    if not no_run:  # it may train and store runs
        check_writable(store, "--store", in_place=True)
    constraints = Constraints(
        raw_data=raw_data,
        memory_budget=None if memory_budget is None else parse_bytes(memory_budget),
        compute_budget=None if compute_budget is None else parse_multiple(compute_budget),
        task_id=task_id == "known", scenario=scenario)
    wanted = constraints.resolved_scenario()
    if no_run and not Path(store).is_file():  # --no-run creates nothing, not even a store
        raise ConfigurationError(
            f"there is no results store at '{store}' to advise from; run `forgetless compare` "
            "first, name the store with --store, or drop --no-run.")
    jobs = default_jobs() if jobs is None else jobs
    with RunStore(store) as db:
        runs = db.select(scenario=wanted)
        costs = CostModel.from_store(db)
        todo = missing_runs(runs, constraints, benchmark, source, costs=costs)
        if todo is None:
            if no_run:
                raise ConfigurationError(
                    f"'{store}' holds no {wanted}-incremental runs to advise from; run "
                    "`forgetless compare` first, or drop --no-run.")
            changes, seeds = PRESETS["quick"]
            base = RunConfig().updated(**changes).updated(**own).updated(
                benchmark=benchmark, source=source)
            names = [REFERENCE] + allowed_strategies(constraints, dict(STRATEGIES.items()),
                                                     costs, benchmark)
            todo = plan(base, strategies=names, scenarios=[wanted], seeds=range(seeds),
                        references=False)
            what = f"no measured {wanted}-incremental runs in {store}: measuring"
        else:
            what = "measuring strategies the store lacks:"
        if todo and not no_run:
            guess = estimate(todo, costs, jobs)
            click.echo(f"{what} {', '.join(dict.fromkeys(c.strategy for c in todo))} (what "
                       f"your constraints allow, and naive as the reference): {len(todo)} "
                       f"runs on {jobs} worker(s), {guess.describe()}...", err=True)
            outcome = execute(todo, db, jobs=jobs,
                              echo=lambda line: click.echo(line, err=True))
            if outcome.failures:  # advise from the runs that did finish
                report_failures(outcome)
            runs = db.select(scenario=wanted)
    from forgetless.tables import terminal_width, wrap

    width = terminal_width()
    for line in rank(constraints, runs, benchmark=benchmark, source=source).format().split("\n"):
        indent = " " * (len(line) - len(line.lstrip()) + 4)  # list items hang under their text
        click.echo(wrap(line, width, indent) if line else "")
