"""``forgetless list``: what can be run."""

from __future__ import annotations

import click


@click.command("list")
def list_() -> None:
    """List benchmarks, sources, models and strategies with what each strategy needs."""
    from forgetless.data.benchmarks import BENCHMARKS
    from forgetless.data.sources import SOURCES
    from forgetless.experiments.compare import default_strategies
    from forgetless.models import MODELS
    from forgetless.results.summary import SCENARIO_ORDER, yes_no
    from forgetless.strategies import STRATEGIES
    from forgetless.tables import format_table

    def first_line(obj) -> str:
        """The docstring's first sentence, on one line."""
        import re

        text = " ".join((obj.__doc__ or "").split())
        end = re.search(r"(?<! al)(?<!e\.g)(?<!i\.e)\.\s", text)  # not "et al. 2019"
        return text if end is None else text[:end.start() + 1]

    click.echo("benchmarks:")
    for name, builder in BENCHMARKS.items():
        click.echo(f"  {name:<12} {first_line(builder)}")
    click.echo("sources:    " + ", ".join(SOURCES.names()))
    click.echo("models:     " + ", ".join(MODELS.names()))
    click.echo("\nstrategies:")
    rows = []
    for name in default_strategies():
        cls = STRATEGIES.get(name)
        scenarios = ",".join(s for s in SCENARIO_ORDER if s in cls.scenarios)
        rows.append([name, cls.family, scenarios, yes_no(cls.stores_raw_data),
                     yes_no(cls.needs_task_id), first_line(cls)])
    click.echo(format_table(["strategy", "family", "scenarios", "raw data", "task id",
                             "what it does"], rows, align="llllll"))
