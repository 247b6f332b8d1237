"""``forgetless show RUN``: a run's accuracy matrix and metrics, from the store or a JSON file."""

from __future__ import annotations

import click

from forgetless.commands.runs import store_option


def find_run(what: str, store: str):
    """A JSON file saved with ``run --output`` when ``what`` is a file, else the run in the
    store whose id starts with ``what``."""
    from pathlib import Path

    from forgetless.errors import ConfigurationError
    from forgetless.results import RunResult
    from forgetless.results.store import RunStore

    if Path(what).is_file() or what.endswith(".json") or "/" in what:
        return RunResult.load(what)
    if not Path(store).is_file():
        raise ConfigurationError(f"'{what}' is neither a run record file nor a run id: there is "
                                 f"no results store at '{store}' (name one with --store).")
    with RunStore(store) as db:
        return db.get(what)


@click.command()
@click.argument("run")
@store_option
def show(run, store) -> None:
    """Show the accuracy matrix and metrics of a run: its run id (or a unique prefix of it) in
    the results store, or a JSON file saved with `forgetless run --output`."""
    from forgetless.results.summary import data_name
    from forgetless.tables import format_accuracy_matrix, format_metrics

    result = find_run(run, store)
    config = result.config
    click.echo(f"run {result.run_id}: {result.strategy_info.get('name', config['strategy'])} on "
               f"{data_name(config)}, {config['scenario']}-incremental, "
               f"{len(result.accuracy_matrix)} tasks, seed {config['seed']}")
    click.echo(format_accuracy_matrix(result.accuracy_matrix, result.task_descriptions,
                                      result.untrained_accuracy))
    click.echo("")
    click.echo(format_metrics(result.metrics))
    echo_continual(result)


def echo_continual(result) -> None:
    """A run's continual-evaluation metrics (min-ACC, WC-ACC, the dips), when it has them."""
    from forgetless.results.summary import has_continual

    if has_continual(result):
        from forgetless.continual_metrics import summarize_continual
        from forgetless.tables import format_continual

        click.echo("")
        click.echo(format_continual(result.continual, summarize_continual(result.continual)))
