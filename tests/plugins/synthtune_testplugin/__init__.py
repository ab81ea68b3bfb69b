"""synthtune's test plugin (see pyproject.toml): registers through synthtune.plugins only."""
