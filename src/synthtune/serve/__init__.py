"""``synthtune serve``: an OpenAI-compatible endpoint for a model, a run's tuned model, adapters.

Python use::

    from synthtune.serve import ServeServer, create_app, load_served_models, resolve_source

    models = load_served_models(resolve_source("runs/medical-qa"))
    with ServeServer(create_app(models), port=0) as server:
        ...  # point any OpenAI client at server.url
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from synthtune.secrets import register_secret
from synthtune.serve.app import ServeLimits, ServeServer, create_app
from synthtune.serve.models import (
    ServedModels,
    ServeError,
    ServeSource,
    load_served_models,
    resolve_source,
)

__all__ = [
    "ServeError",
    "ServeLimits",
    "ServeServer",
    "ServeSource",
    "ServedModels",
    "create_app",
    "load_served_models",
    "parse_adapters",
    "read_api_key",
    "resolve_source",
    "serve",
]


def parse_adapters(specs: list[str]) -> dict[str, Path]:
    """``["name=path", ...]`` -> {name: path}; names must be unique and non-empty."""
    adapters: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ServeError(f"--adapter {spec!r}: expected NAME=PATH")
        if name in adapters:
            raise ServeError(f"--adapter {name}: given twice")
        adapters[name.strip()] = Path(path.strip())
    return adapters


def read_api_key(env_name: str | None) -> str | None:
    """The key from the named environment variable (the key itself is never an argument)."""
    if env_name is None:
        return None
    key = os.environ.get(env_name)
    register_secret(key)
    if not key:
        raise ServeError(f"--api-key-env {env_name}: that environment variable is not set")
    return key


def serve(
    model_or_run: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    adapters: dict[str, Path] | None = None,
    api_key_env: str | None = None,
    limits: ServeLimits | None = None,
    device: str = "auto",
    announce: Callable[[str], None] = print,
) -> None:
    """Load the models and serve them until interrupted (blocking)."""
    api_key = read_api_key(api_key_env)
    models = load_served_models(resolve_source(model_or_run, adapters), device=device)
    server = ServeServer(create_app(models, api_key, limits), host, port)
    announce(f"serving {', '.join(models.names)} at {server.url}  (Ctrl-C to stop)")
    server.serve_forever()
