"""The `unlearnkit` command line (`unlearnkit.cli:main`, also `python -m unlearnkit`)."""

from unlearnkit.cli.commands import main

__all__ = ["main"]
