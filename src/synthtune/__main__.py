"""``python -m synthtune`` runs the CLI."""

from synthtune.cli import app

app()
