"""The ``forgetless`` command. Subcommands live in ``forgetless/commands/`` and are imported only
when called, so ``forgetless --help`` does not pay for torch."""

from __future__ import annotations

import importlib
import sys
import warnings

import click

#: name -> (module:function, one-line help). Adding a command is one line here plus its module.
COMMANDS = {
    "run": ("forgetless.commands.run:run", "Train one strategy on one benchmark and show what "
            "it forgot."),
    "list": ("forgetless.commands.listing:list_", "List benchmarks, sources, models and "
             "strategies (family, scenarios, raw data, task id)."),
    "show": ("forgetless.commands.show:show", "Show a run's accuracy matrix and metrics (run id "
             "or JSON file)."),
    "sweep": ("forgetless.commands.sweep:sweep", "Run a grid or random search (local or Ray)."),
    "compare": ("forgetless.commands.compare:compare", "Compare every strategy side by side "
                "(ACC, forgetting, cost) and write the report."),
    "runs": ("forgetless.commands.runs:runs", "List, filter and re-table the stored runs."),
    "report": ("forgetless.commands.report:report", "Write the HTML report of stored runs."),
    "advise": ("forgetless.commands.advise:advise", "Recommend strategies for your constraints "
               "from measured runs."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, _, attr = COMMANDS[name][0].partition(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="forgetless")
def cli() -> None:
    """forgetless: see catastrophic forgetting, fix it, and measure the fixes.

    Start with `forgetless run` (naive fine-tuning forgetting split MNIST), then
    `forgetless compare` to measure every strategy side by side."""


def _show_warning(message, category, filename, lineno, file=None, line=None,
                  _default=warnings.showwarning) -> None:
    """forgetless's own warnings on one line, ``warning: ...``; others as Python shows them."""
    from forgetless.errors import ForgetlessWarning

    if issubclass(category, ForgetlessWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv=None) -> None:
    """Entry point: user errors print one sentence that says how to fix them, no traceback."""
    from forgetless import launch
    from forgetless.errors import ForgetlessError

    launch.invoked_args[:] = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _show_warning
    try:
        cli.main(args=argv, prog_name="forgetless", standalone_mode=False)
    except ForgetlessError as error:
        click.echo(f"error: {error.for_cli()}", err=True)
        sys.exit(2)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
