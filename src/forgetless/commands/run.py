"""``forgetless run``: one strategy on one benchmark; prints the accuracy matrix."""

from __future__ import annotations

import click

from forgetless.commands.options import config_from_options, experiment_options
from forgetless.commands.runs import store_option


@click.command()
@click.option("--strategy", help="A registered strategy, or a composition like ewc+er "
                                 "(default naive). See `forgetless list`.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A strategy hyper-parameter (repeatable): --set lam=100 or --set ewc.lam=100.")
@experiment_options
@click.option("--output", "-o", type=click.Path(), help="Save the run record as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, only the results.")
@click.option("--checkpoint-dir", type=click.Path(),
              help="Checkpoint after every task in this folder (atomic writes).")
@click.option("--resume", is_flag=True,
              help="Continue from the newest checkpoint in --checkpoint-dir (same options).")
@click.option("--overwrite", is_flag=True,
              help="Delete another run's checkpoints in --checkpoint-dir (refused without it).")
@click.option("--logger", "logger_specs", multiple=True, metavar="KIND[:WHERE]",
              help="Log to tensorboard[:DIR] or mlflow[:TRACKING_URI] (repeatable; extras "
                   "forgetless[tensorboard] / forgetless[mlflow]).")
@store_option
@click.option("--no-store", is_flag=True,
              help="Do not record the run in the results store.")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="Data-parallel processes on this machine (gloo on CPU, NCCL on GPU); "
                   "--batch-size is the global batch. Across machines: torchrun "
                   "(docs/distributed.md).")
def run(output, quiet, checkpoint_dir, resume, overwrite, logger_specs, store, no_store,
        nproc, **options) -> None:
    """Train one strategy on one benchmark and print its accuracy matrix and metrics.

    Defaults: naive fine-tuning on the embedded split MNIST (5 tasks), class-incremental — the
    textbook picture of catastrophic forgetting. The run is recorded in the results store
    (--store, as `compare` uses it) so `show RUN_ID`, `runs`, `report` and `advise` see it."""
    from forgetless import distributed
    from forgetless.launch import check_nproc, invoked_args, launch, without_nproc

    if check_nproc(nproc) > 1 and not distributed.launched():
        raise SystemExit(launch(nproc, without_nproc(invoked_args)))
    from forgetless.experiments.runner import run as run_experiment
    from forgetless.results.summary import strategy_label
    from forgetless.storage import check_writable
    from forgetless.tables import format_accuracy_matrix, format_metrics

    config = config_from_options(**options)
    world = distributed.init_from_environment(config.device)
    if not world.is_main:  # rank 0 prints, stores and writes; the others only train
        quiet, no_store, output, logger_specs = True, True, None, ()
    check_writable(output, "--output")
    check_writable(checkpoint_dir, "--checkpoint-dir", folder=True)
    if not no_store:
        check_writable(store, "--store", in_place=True)

    def header(experiment) -> None:  # after validation: a bad option fails before it
        if not quiet:
            ready = experiment.config
            data = experiment.stream.options.get("source", ready.source)
            ranks = f", {world.size} processes" if world.distributed else ""
            click.echo(f"{ready.strategy} on {ready.benchmark} {data}, "
                       f"{ready.scenario}-incremental, {len(experiment.stream)} tasks, "
                       f"seed {ready.seed}{ranks}", err=True)

    from forgetless.loggers import build_loggers

    loggers = build_loggers(logger_specs)
    try:
        result = run_experiment(config, progress=None if not quiet else False,
                                checkpoint_dir=checkpoint_dir, resume=resume, loggers=loggers,
                                overwrite=overwrite, on_ready=header)
    finally:
        for logger in loggers:
            logger.close()
    if not world.is_main:
        return
    click.echo(f"accuracy (%) on each task (columns) after training each task (rows) — "
               f"{strategy_label(result.config)}, {result.config['scenario']}-incremental")
    click.echo(format_accuracy_matrix(result.accuracy_matrix, result.task_descriptions))
    click.echo("")
    click.echo(format_metrics(result.metrics))
    from forgetless.commands.show import echo_continual

    echo_continual(result)
    costs = result.costs
    click.echo(f"{'train time':<32} {costs['train_seconds_total']:7.2f} s")
    if no_store:
        click.echo(f"run id {result.run_id}")
    else:
        from forgetless.results.store import RunStore

        with RunStore(store) as db:
            db.put(result)
        click.echo(f"run id {result.run_id}, stored in {store} (`forgetless show "
                   f"{result.run_id[:8]}`)")
    if output:
        path = result.save(output)
        click.echo(f"saved the run record to {path}")
