"""One module per ``forgetless`` subcommand (see ``forgetless.cli.COMMANDS``)."""
