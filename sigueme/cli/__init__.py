"""The command-line interface: ``sigueme replay``, ``sigueme simulate`` and the
operator commands. The typer app is :data:`sigueme.cli.main.app`."""
