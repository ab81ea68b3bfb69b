"""What a stage receives: the recipe, the run store, a model resolver, and a console.

Stages never construct these themselves, so the CLI, the Python API and tests can run a
stage the same way and swap in a quiet console.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
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
from synthtune.executor import Executor, LocalExecutor
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


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class PlainProgress(ProgressHandle):
    """Progress for a console that is not a terminal (CI, nohup, a log file): a plain line
    (description, n/total, rate, elapsed, ETA, note) at most every ``interval`` seconds and
    one at the end, instead of a bar that such a console cannot redraw."""

    def __init__(
        self,
        console: Console,
        description: str,
        total: int,
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(None, None)
        self.console, self.description, self.total = console, description, total
        self.interval, self.clock = interval, clock
        self.done = 0
        self.started = self.last = clock()
        self._note = ""

    def __call__(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.print_line(now)

    def note(self, text: str) -> None:
        self._note = text

    def print_line(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.last = now
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        remaining = max(self.total - self.done, 0)
        eta = _duration(remaining / rate) if rate > 0 else "?"
        line = (
            f"{self.description}: {self.done}/{self.total}{share} {rate:.2f}/s "
            f"elapsed {_duration(elapsed)} ETA {eta}"
        )
        self.console.print(
            f"{line} {self._note}".rstrip(), markup=False, highlight=False, soft_wrap=True
        )


@dataclass
class StageContext:
    recipe: Recipe
    store: RunStore
    console: Console = field(default_factory=lambda: Console(stderr=True))
    quiet: bool = False
    no_cache: bool = False
    models: ModelResolver | None = None
    # a console that is not a terminal gets a plain progress line at most this often
    progress_interval: float = 5.0
    clock: Callable[[], float] = field(default=time.monotonic)
    # where the stages' data-parallel parts run (synthtune.executor); results are the same
    executor: Executor = field(default_factory=LocalExecutor)

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
        """A rich progress bar (rate, ETA, a free-text note) on a terminal; plain lines every
        ``progress_interval`` seconds and at the end otherwise; silent when quiet."""
        if self.quiet:
            yield ProgressHandle(None, None)
            return
        if not (self.console.is_terminal or self.console.is_jupyter):
            plain = PlainProgress(
                self.console, description, total, self.progress_interval, self.clock
            )
            try:
                yield plain
            finally:
                plain.print_line()
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
