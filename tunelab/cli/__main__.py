"""``python -m tunelab.cli`` runs the ``tunelab`` command."""

from tunelab.cli.app import app

app(prog_name="tunelab")
