"""What every CLI module shares: the consoles, and one way to turn an error into an exit."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from synthtune.errors import SynthtuneError

console = Console(stderr=True)  # progress, logs and errors
out = Console()  # results a user may pipe


def fail(exc: BaseException) -> typer.Exit:
    """The exit for ``exc``: Ctrl-C says how to resume (130); our errors print their message
    and exit with their own code. Anything else is a bug and is not caught by callers."""
    if isinstance(exc, KeyboardInterrupt):
        console.print("[yellow]interrupted[/]: run the same command again to resume")
        return typer.Exit(130)
    assert isinstance(exc, SynthtuneError)
    console.print(f"[bold red]error[/]: {escape(str(exc))}")
    return typer.Exit(exc.exit_code)
