"""The openai backend's concurrency limit (slow start, then AIMD) and the fingerprint rule for
execution knobs (concurrency never re-runs a stage)."""

from __future__ import annotations

from pathlib import Path

from synthtune.config import load_recipe
from synthtune.llm.backends.openai_compat import AdaptiveLimiter
from synthtune.pipeline import fingerprints
from tests.conftest import write_recipe


def test_slow_start_doubles_per_window_then_aimd() -> None:
    limiter = AdaptiveLimiter(64)
    assert limiter.limit == 16
    for _ in range(16):  # one window of successes: doubled
        limiter.succeeded()
    assert limiter.limit == 32
    for _ in range(100):
        limiter.succeeded()
    assert limiter.limit == 64  # never above the configured concurrency
    limiter.overloaded()
    assert limiter.limit == 32 and not limiter.slow_start
    for _ in range(32):  # congestion avoidance: +1 per window
        limiter.succeeded()
    assert 32.9 < limiter.limit < 33.1
    for _ in range(10):
        limiter.overloaded()
    assert limiter.limit == 1
    assert AdaptiveLimiter(4).limit == 4  # a small concurrency starts at itself


def test_concurrency_never_changes_a_fingerprint(tmp_path: Path) -> None:
    prints = []
    for extra in ("", "\n    concurrency: 16", "\n    concurrency: 200"):
        folder = tmp_path / f"r{len(prints)}"
        folder.mkdir()
        recipe = write_recipe(
            folder,
            {"generate": {"backend": {"type": "openai", "model": "m", "api_key_env": None}}},
        )
        text = recipe.read_text().replace("api_key_env: null", "api_key_env: null" + extra)
        recipe.write_text(text)
        loaded = load_recipe(recipe)
        assert loaded.generation.backend.concurrency == (  # type: ignore[attr-defined]
            {"": 64, "\n    concurrency: 16": 16}.get(extra, 200)
        )
        prints.append(fingerprints(loaded, folder / "runs")["generate"])
    assert prints[0] == prints[1] == prints[2]


def test_errors_cut_the_limit_once_per_round_trip() -> None:
    now = [0.0]
    limiter = AdaptiveLimiter(64, start=64, clock=lambda: now[0])
    limiter.slow_start = False
    sent = now[0]  # a burst of requests goes out at t=0 ...
    now[0] = 1.0
    for _ in range(20):  # ... and 20 of them fail: one cut, not 20
        limiter.overloaded(sent_at=sent)
    assert limiter.limit == 32 and limiter.shrinks["error"] == 1
    assert limiter.shrinks_skipped == 19
    now[0] = 2.0
    limiter.overloaded(sent_at=1.5)  # sent after the cut: the new limit still overloads
    assert limiter.limit == 16 and limiter.shrinks["error"] == 2
