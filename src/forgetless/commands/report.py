"""``forgetless report``: the HTML report of any stored set of runs."""

from __future__ import annotations

import click

from forgetless.commands.runs import open_store, run_filters, selection, store_option
from forgetless.report import DEFAULT_REPORT


@click.command()
@store_option
@run_filters
@click.option("--output", "-o", default=DEFAULT_REPORT, show_default=True,
              type=click.Path(), help="The HTML file to write.")
@click.option("--title", default="forgetless comparison", show_default=True,
              help="The page's title.")
def report(store, output, title, **filters) -> None:
    """Write one self-contained HTML page (tables, heat maps, curves, cost plots) for the
    stored runs that match the filters, without re-running anything."""
    from pathlib import Path

    from forgetless.errors import ConfigurationError
    from forgetless.report import write_report
    from forgetless.storage import check_writable

    check_writable(output, "--output")
    with open_store(store) as db:
        runs = db.select(**selection(db, **filters))
    if not runs:
        raise ConfigurationError(f"no stored runs in '{store}' match these filters; "
                                 "`forgetless runs` lists what is there.")
    path = write_report(runs, output, title=title, source=str(store))
    click.echo(f"wrote the report of {len(runs)} runs to {Path(path).resolve()}")
