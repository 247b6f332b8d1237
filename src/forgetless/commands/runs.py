"""``forgetless runs``: list, filter and re-table the runs in a results store."""

from __future__ import annotations

import click

from forgetless.results.store import DEFAULT_STORE


def _split(values) -> list[str] | None:
    """Repeatable options that also take comma lists: --strategy ewc,er --strategy si."""
    items = [v.strip() for value in values or () for v in str(value).split(",") if v.strip()]
    return items or None


def store_option(function):
    return click.option("--store", default=DEFAULT_STORE, show_default=True,
                        type=click.Path(),
                        help="The SQLite results store.")(function)


def wide_option(function):
    return click.option("--wide", is_flag=True,
                        help="Every column with its full header, however wide the terminal "
                             "(default: fitted to the terminal's width).")(function)


def run_filters(function):
    """Options that select stored runs; each is repeatable or a comma list."""
    options = [
        click.option("--strategy", "strategies", multiple=True, help="Strategy name(s)."),
        click.option("--family", "families", multiple=True,
                     help="baseline, regularization, replay, architecture, parameter-"
                     "efficient, weight-space, frozen-features or hybrid."),
        click.option("--scenario", "scenarios", multiple=True, help="task, domain or class."),
        click.option("--benchmark", "benchmarks", multiple=True, help="split, permuted, ..."),
        click.option("--source", "sources", multiple=True, help="mnist, digits, ..."),
        click.option("--seed", "seeds", multiple=True, type=int, help="Seed(s)."),
        click.option("--protocol", "protocols", multiple=True,
                     help="Protocol id (prefix) as `forgetless runs` shows it."),
        click.option("--run-id", "run_ids", multiple=True, help="Run id(s) or prefixes."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def selection(db=None, strategies=(), families=(), scenarios=(), benchmarks=(), sources=(),
              seeds=(), protocols=(), run_ids=()) -> dict:
    """The filter options as ``RunStore.select`` keywords. Names are checked like `run`'s
    options (case ignored, a suggestion for a typo): a filter that can match nothing is an
    error, not an empty list. Names the registry lacks pass when the store ``db`` holds them."""
    from forgetless.data.stream import Scenario
    from forgetless.strategies import FAMILIES

    def checked(values, kind, column, registered):
        names = _split(values)
        if names is None:
            return None
        stored = db.distinct(column) if db is not None else set()
        known = {str(k) for k in registered} | {str(k) for k in stored if k is not None}
        from forgetless.errors import resolve_name

        return [resolve_name(kind, name, known) for name in names]

    from forgetless.data.benchmarks import BENCHMARKS
    from forgetless.data.sources import SOURCES
    from forgetless.strategies import STRATEGIES

    return {"strategy": checked(strategies, "strategy", "strategy", STRATEGIES.names()),
            "family": checked(families, "family", "family", FAMILIES),
            "scenario": [Scenario.parse(s).value for s in _split(scenarios) or ()] or None,
            "benchmark": checked(benchmarks, "benchmark", "benchmark", BENCHMARKS.names()),
            "source": checked(sources, "source", "source", SOURCES.names()),
            "seed": list(seeds) or None,
            "protocol": _split(protocols), "run_id": _split(run_ids)}


def open_store(path, must_exist: bool = True):
    """The store, opened read-only (so a store on read-only media can be listed)."""
    from pathlib import Path

    from forgetless.errors import ConfigurationError
    from forgetless.results.store import RunStore

    if must_exist and not Path(path).exists():
        raise ConfigurationError(f"no results store at '{path}'; run `forgetless compare` "
                                 "first, or name the store with --store.")
    return RunStore(path, readonly=True)


def write_exports(groups, csv_path=None, markdown_path=None) -> None:
    from forgetless.results.summary import to_csv, to_markdown
    from forgetless.storage import write_atomic

    for path, text in ((csv_path, to_csv), (markdown_path, to_markdown)):
        if path:
            write_atomic(path, text(groups), "the table")
            click.echo(f"wrote {path}")


@click.command()
@store_option
@run_filters
@click.option("--table", is_flag=True,
              help="Print the comparison table of the selected runs instead of the list.")
@click.option("--csv", "csv_path", type=click.Path(),
              help="Also write the comparison table as CSV.")
@click.option("--markdown", "markdown_path", type=click.Path(),
              help="Also write the comparison table as Markdown.")
@click.option("--limit", type=int, help="Show only the newest N runs of the list.")
@wide_option
def runs(store, table, csv_path, markdown_path, limit, wide, **filters) -> None:
    """List the stored runs that match the filters (all by default), or re-table them
    (--table, --csv, --markdown) without re-running anything."""
    from forgetless.results.summary import format_text, group_runs
    from forgetless.storage import check_writable

    check_writable(csv_path, "--csv")
    check_writable(markdown_path, "--markdown")
    with open_store(store) as db:
        wanted = selection(db, **filters)
        if table or csv_path or markdown_path:
            groups = group_runs(db.select(**wanted))
            if table:
                click.echo(format_text(groups, wide=wide))
            write_exports(groups, csv_path, markdown_path)
            return
        rows = db.summaries(**wanted)
    if limit is not None:
        rows = rows[-limit:] if limit > 0 else []
    if not rows:
        click.echo(f"no stored runs in {store} match.")
        return
    click.echo(format_run_list(rows, wide))
    click.echo(f"{len(rows)} run(s) in {store}")


#: The run list's columns; ``drop`` orders what a narrow terminal loses first.
def _run_list_columns(wide: bool) -> list:
    from forgetless.results.summary import data_name
    from forgetless.tables import Column

    return [
        Column("run id", lambda r: r["run_id"] if wide else r["run_id"][:10], "l"),
        Column("created", lambda r: (r["created"] or "")[:19 if wide else 16].replace("T", " "),
               "l", drop=3),
        Column("strategy", lambda r: r["strategy"], "l"),
        Column("family", lambda r: r["family"] or "", "l", drop=5),
        Column("scenario", lambda r: r["scenario"], "l"),
        Column("benchmark", data_name, "l", drop=2),
        Column("protocol", lambda r: r["protocol"][:8], "l", drop=6),
        Column("seed", lambda r: str(r["seed"])),
        Column("ACC %", lambda r: f"{100 * r['acc']:.1f}"),
        Column("forget %" if not wide else "forgetting %",
               lambda r: f"{100 * r['forgetting']:.1f}", drop=1),
        Column("train s", lambda r: f"{r['train_seconds']:.2f}", drop=4),
    ]


def format_run_list(rows: list[dict], wide: bool = False) -> str:
    """The stored runs, one line each, fitted to the terminal unless ``wide``."""
    from forgetless.tables import fit_columns, format_columns, terminal_width, wrap

    kept, dropped = fit_columns(_run_list_columns(wide), rows, None if wide else terminal_width())
    text = format_columns(kept, rows)
    if dropped:
        text += "\n" + wrap(f"left out at this width: {', '.join(c.header for c in dropped)} "
                            "(--wide shows all).", terminal_width())
    return text
