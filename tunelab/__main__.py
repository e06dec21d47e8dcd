"""``python -m tunelab`` runs the ``tunelab`` command (tests start it in a subprocess)."""

from tunelab.cli import app

app(prog_name="tunelab")
