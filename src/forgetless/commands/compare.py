"""``forgetless compare``: every strategy, each scenario it serves, several seeds; the lesson
first, then one table per scenario, where forgetting is worst first."""

from __future__ import annotations

import os

import click

from forgetless.commands.options import config_from_options, experiment_options
from forgetless.commands.runs import _split, store_option, wide_option, write_exports
from forgetless.report import DEFAULT_REPORT


def default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


@click.command()
@click.option("--strategies", multiple=True, metavar="NAMES",
              help="Strategies to compare, comma-separated or repeated (compositions such as "
                   "ewc+er too). Default: every registered strategy. Naive and joint are "
                   "always added as references.")
@click.option("--exclude", multiple=True, metavar="NAMES", help="Strategies to leave out.")
@click.option("--set", "settings", multiple=True, metavar="[STRATEGY.]KEY=VALUE",
              help="A hyper-parameter (repeatable): --set ewc.lam=100 for one strategy, "
                   "--set lam=100 for every strategy that takes lam.")
@click.option("--quick/--full", default=True,
              help="Budget: --quick (default) is 3 epochs per task and 3 seeds, about 2 "
                   "minutes for the whole registry on an idle 2-core machine (--dry-run "
                   "estimates it); --full is 5 epochs per task and 5 seeds. --epochs, "
                   "--iterations and --seeds override either.")
@click.option("--seeds", "seed_count", type=int,
              help="Number of seeds, counted from --seed (default 0).")
@click.option("--jobs", "-j", type=int, help="Worker processes (default 2; 1 trains in this "
                                             "process).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Torch threads per worker.")
@store_option
@click.option("--report", "report_path", default=DEFAULT_REPORT, show_default=True,
              type=click.Path(), help="Write the HTML report here.")
@click.option("--no-report", is_flag=True, help="Do not write the HTML report.")
@click.option("--csv", "csv_path", type=click.Path(),
              help="Also write the table as CSV.")
@click.option("--markdown", "markdown_path", type=click.Path(),
              help="Also write the table as Markdown.")
@click.option("--rerun", is_flag=True, help="Train runs again even if the store has them.")
@click.option("--no-references", is_flag=True, help="Do not add naive and joint.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.option("--dry-run", is_flag=True,
              help="Print the plan (runs, strategies x scenarios x seeds, what the store "
                   "already holds) and a time estimate; train and write nothing.")
@wide_option
@experiment_options
def compare(strategies, exclude, settings, quick, seed_count, jobs, threads, store, report_path,
            no_report, csv_path, markdown_path, rerun, no_references, quiet, dry_run, wide,
            scenario, **options) -> None:
    """Compare strategies side by side: ACC, forgetting, BWT, FWT (mean ± sd over seeds),
    train time, memory, what each stores and needs, grouped by family.

    With no arguments: every registered strategy, in each scenario it serves (task, domain,
    class; --scenario takes a comma list), on the embedded split MNIST, 3 seeds, runs on 2
    worker processes. Runs go into the results store (--store, default ./forgetless-runs.db);
    runs already there are reused, so an interrupted comparison continues where it stopped.
    The table is printed, and the report written to ./forgetless-report.html."""
    from pathlib import Path

    from forgetless.config import RunConfig, load_config_file, parse_settings
    from forgetless.errors import ConfigurationError
    from forgetless.experiments.compare import PRESETS, check_workers, plan
    from forgetless.experiments.compare import compare as run_comparison
    from forgetless.report import write_report
    from forgetless.results.lesson import lesson, worst_first
    from forgetless.results.store import RunStore
    from forgetless.results.summary import describe_protocol, format_text, group_runs
    from forgetless.storage import check_writable
    from forgetless.tables import terminal_width, wrap

    changes, preset_seeds = PRESETS["quick" if quick else "full"]
    config = config_from_options(RunConfig().updated(**changes), **options)
    if scenario is None and options.get("config_file"):
        scenario = load_config_file(options["config_file"]).get("scenario")
    scenarios = _split([scenario]) if scenario else None
    count = preset_seeds if seed_count is None else seed_count
    if count < 1:
        raise ConfigurationError(f"--seeds must be at least 1, got {count}.")
    configs = plan(config, strategies=_split(strategies), scenarios=scenarios,
                   seeds=range(config.seed, config.seed + count),
                   settings=parse_settings(settings), references=not no_references,
                   exclude=_split(exclude) or ())
    jobs = default_jobs() if jobs is None else jobs
    check_workers(jobs, threads)  # before the plan is printed or the store is created
    if dry_run:
        click.echo(describe_plan(configs, store, jobs, rerun))
        return
    check_writable(store, "--store", in_place=True)
    check_writable(None if no_report else report_path, "--report")
    check_writable(csv_path, "--csv")
    check_writable(markdown_path, "--markdown")
    with RunStore(store) as db:
        if not quiet:
            strategies_run = len({c.strategy for c in configs})
            click.echo(wrap(f"comparing {strategies_run} strategies in {len(configs)} runs "
                            f"({count} seed(s)) on {describe_protocol(configs[0].to_dict())}; "
                            f"{jobs} worker(s)", terminal_width()), err=True)
            click.echo(f"store: {Path(store).resolve()}", err=True)
        try:
            runs, outcome = run_comparison(
                configs, db, jobs=jobs, threads=threads, rerun=rerun,
                progress=False if quiet else None,
                echo=None if quiet else (lambda line: click.echo(line, err=True)))
        except KeyboardInterrupt:
            click.echo(f"interrupted: {len(db)} runs are in {store}; run the same command "
                       "again to continue where it stopped.", err=True)
            raise SystemExit(130) from None
        stored = len(db)
    groups = group_runs(runs)
    summary = lesson(runs).format_text(width=min(100, terminal_width()))
    if summary:
        click.echo(summary + "\n")
    click.echo(format_text(worst_first(groups), wide=wide))
    click.echo("")
    write_exports(groups, csv_path, markdown_path)
    click.echo(f"store: {Path(store).resolve()}")
    click.echo(f"  {stored} runs; {outcome.trained} trained now, {outcome.skipped} reused; "
               f"{outcome.seconds:.0f} s")
    if not no_report and runs:
        path = write_report(runs, report_path, source=str(store))
        click.echo(f"report: {Path(path).resolve()}")
    if outcome.failures:
        report_failures(outcome)
        raise SystemExit(1)


def describe_plan(configs, store, jobs: int, rerun: bool = False) -> str:
    """The plan in words, and how long training what the store lacks would take. Reads the
    store only if it exists: a dry run creates nothing."""
    from pathlib import Path

    from forgetless.experiments.compare import planned_run_id
    from forgetless.experiments.costs import CostModel, estimate
    from forgetless.results.store import RunStore
    from forgetless.results.summary import SCENARIO_ORDER, describe_protocol
    from forgetless.tables import terminal_width, wrap

    width = terminal_width()
    stored: set = set()
    costs = CostModel({}, {})
    if Path(store).is_file():
        with RunStore(store) as db:
            stored = set() if rerun else db.run_ids()
            costs = CostModel.from_store(db)
    todo = [c for c in configs if planned_run_id(c) not in stored]
    seeds = sorted({c.seed for c in configs})
    lines = [wrap(f"plan: {len(configs)} runs on {describe_protocol(configs[0].to_dict())}; "
                  f"seeds {', '.join(map(str, seeds))}", width)]
    for scenario in SCENARIO_ORDER:
        names = list(dict.fromkeys(c.strategy for c in configs if c.scenario == scenario))
        if names:
            lines.append(wrap(f"  {scenario}-incremental: {len(names)} strategies x "
                              f"{len(seeds)} seeds: {', '.join(names)}", width, " " * 4))
    guess = estimate(todo, costs, jobs)
    lines.append(f"{len(configs) - len(todo)} of them already in {store}; {len(todo)} to train")
    if todo:
        lines.append(wrap(f"on {jobs} worker(s): {guess.describe()}", width))
    return "\n".join(lines)


def report_failures(outcome) -> None:
    """On stderr: how many runs failed, and each one's message."""
    from forgetless.experiments.compare import describe

    click.echo(f"{len(outcome.failures)} run(s) failed (not stored; running the same command "
               "again retries them):", err=True)
    for failed, message in outcome.failures:
        click.echo(f"  {describe(failed)}: {message}", err=True)


# Three shared run options mean something wider here.
for _param in compare.params:
    if _param.name == "scenario":
        _param.help = "Scenarios to compare, comma-separated (default task,domain,class)."
    elif _param.name == "seed":
        _param.help = "The first seed (default 0); --seeds counts from it."
    elif _param.name == "epochs":
        _param.help = "Epochs per task (default 3 with --quick, 5 with --full)."
