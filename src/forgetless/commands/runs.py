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
                        type=click.Path(dir_okay=False),
                        help="The SQLite results store.")(function)


def run_filters(function):
    """Options that select stored runs; each is repeatable or a comma list."""
    options = [
        click.option("--strategy", "strategies", multiple=True, help="Strategy name(s)."),
        click.option("--family", "families", multiple=True,
                     help="baseline, regularization, replay, architecture or hybrid."),
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
        result = []
        for name in names:
            match = next((k for k in known if k.lower() == name.lower()), None)
            if match is None:
                from forgetless.errors import unknown_name

                raise unknown_name(kind, name, known)
            result.append(match)
        return result

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
    from pathlib import Path

    from forgetless.errors import ConfigurationError
    from forgetless.results.store import RunStore

    if must_exist and not Path(path).exists():
        raise ConfigurationError(f"no results store at '{path}'; run `forgetless compare` "
                                 "first, or name the store with --store.")
    return RunStore(path)


def write_exports(groups, csv_path=None, markdown_path=None) -> None:
    from pathlib import Path

    from forgetless.results.summary import to_csv, to_markdown

    for path, text in ((csv_path, to_csv), (markdown_path, to_markdown)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text(groups), encoding="utf-8")
            click.echo(f"wrote {path}")


@click.command()
@store_option
@run_filters
@click.option("--table", is_flag=True,
              help="Print the comparison table of the selected runs instead of the list.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False),
              help="Also write the comparison table as CSV.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False),
              help="Also write the comparison table as Markdown.")
@click.option("--limit", type=int, help="Show only the newest N runs of the list.")
def runs(store, table, csv_path, markdown_path, limit, **filters) -> None:
    """List the stored runs that match the filters (all by default), or re-table them
    (--table, --csv, --markdown) without re-running anything."""
    from forgetless.results.summary import format_text, group_runs
    from forgetless.tables import format_table

    with open_store(store) as db:
        wanted = selection(db, **filters)
        if table or csv_path or markdown_path:
            groups = group_runs(db.select(**wanted))
            if table:
                click.echo(format_text(groups))
            write_exports(groups, csv_path, markdown_path)
            return
        rows = db.summaries(**wanted)
    if limit is not None:
        rows = rows[-limit:] if limit > 0 else []
    if not rows:
        click.echo(f"no stored runs in {store} match.")
        return
    cells = [[r["run_id"], (r["created"] or "")[:19], r["strategy"], r["family"] or "",
              r["scenario"], f"{r['benchmark']} {r['source']}", r["protocol"][:8],
              str(r["seed"]), f"{100 * r['acc']:.1f}", f"{100 * r['forgetting']:.1f}",
              f"{r['train_seconds']:.2f}"] for r in rows]
    click.echo(format_table(["run id", "created", "strategy", "family", "scenario",
                             "benchmark", "protocol", "seed", "ACC %", "forgetting %",
                             "train s"], cells, align="lllllllrrrr"))
    click.echo(f"{len(rows)} run(s) in {store}")
