"""``forgetless list``: what can be run."""

from __future__ import annotations

import textwrap

import click


@click.command("list")
def list_() -> None:
    """List benchmarks, sources, models and strategies with what each strategy needs."""
    from forgetless.data.benchmarks import BENCHMARKS
    from forgetless.data.sources import SOURCES
    from forgetless.models import MODELS
    from forgetless.results.summary import SCENARIO_ORDER, family_rank, yes_no
    from forgetless.strategies import STRATEGIES
    from forgetless.tables import format_table, table_width, terminal_width, wrap

    width = terminal_width()
    click.echo("benchmarks:")
    for name, builder in BENCHMARKS.items():
        click.echo(wrap(f"  {name:<12} {first_sentence(builder)}", width, " " * 15))
    click.echo(wrap("sources:    " + ", ".join(SOURCES.names()), width))
    models = ["hf:PATH" if n == "hf" else n for n in MODELS.names()]  # hf takes a folder
    click.echo(wrap("models:     " + ", ".join(models), width))
    click.echo("\nstrategies:")
    headers = ["strategy", "family", "scenarios", "raw", "tid", "free", "what it does"]
    rows = []
    for name in sorted(STRATEGIES.names(),
                       key=lambda n: (family_rank(STRATEGIES.get(n).family), n)):
        cls = STRATEGIES.get(name)
        served = [s for s in SCENARIO_ORDER if s in cls.scenarios]
        rows.append([name, cls.family, "all" if len(served) == 3 else ",".join(served),
                     yes_no(cls.stores_raw_data), yes_no(cls.needs_task_id), task_free(cls),
                     first_sentence(cls)])
    indent = table_width(headers[:-1], [r[:-1] for r in rows]) + 2
    room = max(width - indent, 12)  # the description wraps in what the terminal has left
    wrapped = [textwrap.wrap(row[-1], room) or [""] for row in rows]
    lines = format_table(headers, [r[:-1] + [w[0]] for r, w in zip(rows, wrapped, strict=True)],
                         align="lllllll").split("\n")
    click.echo("\n".join(lines[:2]))
    for line, more in zip(lines[2:], wrapped, strict=True):
        click.echo("\n".join([line] + [" " * indent + m for m in more[1:]]))
    click.echo(wrap("raw: stores raw training samples; tid: needs the task id at test time; "
                    "free: learns from a task-free stream (--stream task-free), opt: with the "
                    "setting its refusal names.", width))


def task_free(cls) -> str:
    """Whether a strategy learns with its defaults from a stream whose task boundaries are
    hidden ("yes"), only with a setting its reason names ("opt"), or not ("no")."""
    reason = cls().boundary_reason()
    return "yes" if reason is None else "opt" if "--set" in reason else "no"


def first_sentence(obj) -> str:
    """The docstring's first sentence, on one line, without reStructuredText markup
    (````seed```` -> ``seed``, ``:class:`Foo``` -> ``Foo``)."""
    import re

    text = " ".join((obj.__doc__ or "").split())
    text = re.sub(r":\w+:`([^`]*)`", r"\1", text).replace("``", "")
    end = re.search(r"(?<! al)(?<!e\.g)(?<!i\.e)\.\s", text)  # not "et al. 2019"
    return text if end is None else text[:end.start() + 1]
