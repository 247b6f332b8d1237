"""``forgetless show run.json``: a saved run's accuracy matrix and metrics."""

from __future__ import annotations

import click


@click.command()
@click.argument("path", type=click.Path())
def show(path) -> None:
    """Show the accuracy matrix and metrics of a run saved with `forgetless run --output`."""
    from forgetless.results import RunResult
    from forgetless.tables import format_accuracy_matrix, format_metrics

    result = RunResult.load(path)
    config = result.config
    click.echo(f"run {result.run_id}: {result.strategy_info.get('name', config['strategy'])} on "
               f"{config['benchmark']} {config['source']}, {config['scenario']}-incremental, "
               f"{len(result.accuracy_matrix)} tasks, seed {config['seed']}")
    click.echo(format_accuracy_matrix(result.accuracy_matrix, result.task_descriptions,
                                      result.untrained_accuracy))
    click.echo("")
    click.echo(format_metrics(result.metrics))
