"""Progress output: a rich bar on a terminal, plain timed lines anywhere else (CI, logs)."""

import io
from pathlib import Path

from rich.console import Console

from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.store import RunStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _context(tmp_path: Path, console: Console, clock: FakeClock) -> StageContext:
    recipe = Recipe.model_validate(
        {"name": "t", "generate": {"templates": [{"id": "t", "prompt": "p", "response": "r"}]}}
    )
    return StageContext(
        recipe, RunStore(tmp_path), console=console, progress_interval=5.0, clock=clock
    )


def test_a_console_that_is_not_a_terminal_gets_a_plain_line_every_interval(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    clock = FakeClock()
    ctx = _context(tmp_path, Console(file=out, force_terminal=False, width=60), clock)
    with ctx.progress("train", 100) as advance:
        for _ in range(40):  # 40 steps, 0.5 s each: lines at 5 s, 10 s, 15 s, 20 s
            clock.now += 0.5
            advance(1)
            advance.note("loss 1.2345")
    lines = out.getvalue().splitlines()
    assert len(lines) == 5  # four timed lines and the final one
    assert lines[0].startswith("train: 10/100 (10%) 2.00/s elapsed 0:00:05 ETA 0:00:45")
    assert lines[0].endswith("loss 1.2345")  # one line each, never wrapped at 60 columns
    assert lines[-1].startswith("train: 40/100 (40%) 2.00/s elapsed 0:00:20 ETA 0:00:30")
    assert "\x1b[" not in out.getvalue()  # no escape codes in a log file


def test_a_terminal_keeps_the_rich_bar_and_quiet_prints_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    clock = FakeClock()
    ctx = _context(tmp_path, Console(file=out, force_terminal=True, width=100), clock)
    with ctx.progress("train", 10) as advance:
        advance(10)
    assert "━" in out.getvalue()  # rich's bar
    quiet = io.StringIO()
    ctx = _context(tmp_path, Console(file=quiet, force_terminal=False), clock)
    ctx.quiet = True
    with ctx.progress("train", 10) as advance:
        advance(10)
    assert quiet.getvalue() == ""
