"""``forgetless sweep FILE.toml``: a grid or random search of runs, on local processes or Ray."""

from __future__ import annotations

import click

from forgetless.commands.runs import store_option


@click.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--backend", type=click.Choice(["local", "ray"], case_sensitive=False),
              default="local",
              show_default=True, help="local: a process pool here; ray: a Ray cluster.")
@click.option("--address", help="Ray: address of an existing cluster (e.g. 10.0.0.5:6379); "
                                 "without it Ray starts locally.")
@click.option("--jobs", "-j", type=int, default=2, show_default=True,
              help="Runs at once (local workers, or CPUs of a local Ray).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Torch threads per run.")
@click.option("--retries", type=int, default=2, show_default=True,
              help="Ray: times a run is retried when its worker dies.")
@click.option("--checkpoint-dir", type=click.Path(),
              help="Ray: checkpoint each run here after every task, so a retried run resumes.")
@store_option
@click.option("--dry-run", is_flag=True, help="List the planned runs; train nothing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def sweep(sweep_file, backend, address, jobs, threads, retries, checkpoint_dir, store, dry_run,
          quiet) -> None:
    """Run a sweep: every combination of [grid] (and [random] draws) over strategies,
    hyper-parameters, scenarios and seeds. Every run lands in the results store under its run
    id; runs already there are skipped, so a sweep run again trains only what is missing.
    With [tune], hyper-parameters are chosen on the first tasks or a validation split and the
    chosen ones are run on the full stream (the file format, with examples: docs/sweeps.md)."""
    from forgetless.commands.compare import report_failures
    from forgetless.experiments.compare import planned_run_id
    from forgetless.experiments.sweep import (
        candidates,
        default_echo,
        load_sweep,
        run_sweep,
        settings_text,
        tuning_config,
    )
    from forgetless.results.store import RunStore
    from forgetless.results.summary import format_text, group_runs
    from forgetless.storage import check_writable

    spec = load_sweep(sweep_file)
    if dry_run:
        planned = candidates(spec)
        if spec.tune:
            planned = [tuning_config(c, spec.tune) for c in planned]
            click.echo(f"tuning runs ({spec.tune['protocol']}); the chosen settings then run "
                       "on the full stream:")
        for config in planned:
            click.echo(f"{planned_run_id(config)}  {config.strategy:<16} {config.scenario:<7} "
                       f"seed {config.seed}  {settings_text(config, spec.base)}")
        click.echo(f"{len(planned)} runs")
        return
    check_writable(store, "--store", in_place=True)
    check_writable(checkpoint_dir, "--checkpoint-dir", folder=True)
    with RunStore(store) as runs:
        outcome = run_sweep(spec, runs, backend=backend, jobs=jobs, threads=threads,
                            address=address, retries=retries, checkpoint_dir=checkpoint_dir,
                            progress=False, echo=None if quiet else default_echo)
    if outcome.results:
        click.echo(format_text(group_runs(outcome.results)))
    if outcome.chosen:
        click.echo("")
        click.echo(f"chosen hyper-parameters ({spec.tune['protocol']}, best mean "
                   f"{spec.tune['metric']} over seeds):")
        for entry in outcome.chosen:
            click.echo(f"  {entry['strategy']:<16} {entry['scenario']:<7} "
                       f"{settings_text(entry['config'], spec.base)}  "
                       f"({spec.tune['metric']} {entry['score']:.4f}, best of "
                       f"{entry['candidates']})")
    click.echo(f"{outcome.trained} runs trained, {outcome.skipped} already in {store}, "
               f"{len(outcome.failures)} failed, {outcome.seconds:.1f} s")
    if outcome.failures:
        report_failures(outcome)
        raise SystemExit(1)
