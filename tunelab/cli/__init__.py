"""The ``tunelab`` command: thin Typer commands over the package. Nothing imports cli/."""

from tunelab.cli.app import app

__all__ = ["app"]
