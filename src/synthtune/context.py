"""What a stage receives: the recipe, the run store, a model resolver, and a console.

Stages never construct these themselves, so the CLI, the Python API and tests can run a
stage the same way and swap in a quiet console.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from synthtune.config import Recipe
from synthtune.models import ModelResolver
from synthtune.store import RunStore


class ProgressHandle:
    """``handle(n)`` advances the bar by n; ``handle.note(text)`` sets its status text."""

    def __init__(self, bar: Progress | None, task: Any) -> None:
        self._bar = bar
        self._task = task

    def __call__(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, note=text)


@dataclass
class StageContext:
    recipe: Recipe
    store: RunStore
    console: Console = field(default_factory=lambda: Console(stderr=True))
    quiet: bool = False
    no_cache: bool = False
    models: ModelResolver | None = None

    def __post_init__(self) -> None:
        if self.models is None:
            self.models = ModelResolver(self.store.root, self.recipe, log=self.log)

    def resolve_model(self, name: str) -> str:
        assert self.models is not None
        return self.models.resolve(name)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[ProgressHandle]:
        """A rich progress bar (rate, ETA, a free-text note); silent when quiet."""
        if self.quiet:
            yield ProgressHandle(None, None)
            return
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(show_speed=True),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
        )
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(description, total=total, note="")
            yield ProgressHandle(bar, task)


class Stage(Protocol):
    """One step of the flow. ``sections`` are the recipe keys its fingerprint covers."""

    name: str
    sections: tuple[str, ...]

    def check(self, recipe: Recipe) -> None:
        """Deep validation before any work (files exist, templates compile); RecipeError."""

    def run(self, ctx: StageContext) -> dict[str, Any]:
        """Do the work, write results through ``ctx.store``, return a JSON-able summary."""
        ...
