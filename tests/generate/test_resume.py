"""Interrupted generation resumes with no lost and no duplicated records."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from synthtune.config import load_recipe
from synthtune.llm.backends.template import TemplateBackend
from synthtune.pipeline import run_recipe
from synthtune.store import RunStore
from tests.conftest import write_recipe

N, FLUSH = 60, 6


def _generate(recipe: Path, runs: Path) -> RunStore:
    result = run_recipe(load_recipe(recipe), runs, until="generate", quiet=True)
    return RunStore(result.run_dir)


def _ids(store: RunStore) -> list[tuple[int, str]]:
    return [(r.lineage["request_index"], r.id) for r in store.read_table("generate", "dataset")]


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    return write_recipe(tmp_path, {"generate": {"n": N, "flush_every": FLUSH}})


@pytest.fixture
def reference(recipe: Path, tmp_path: Path) -> list[tuple[int, str]]:
    return _ids(_generate(recipe, tmp_path / "reference"))


def test_kill_9_mid_run_then_resume_equals_an_uninterrupted_run(
    recipe: Path, tmp_path: Path, reference
) -> None:
    runs = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import os, signal
        from synthtune.config import load_recipe
        from synthtune.llm.backends.template import TemplateBackend
        from synthtune.pipeline import run_recipe

        original = TemplateBackend.generate
        calls = []

        def dying(self, requests):
            calls.append(1)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, requests)

        TemplateBackend.generate = dying
        run_recipe(load_recipe({str(recipe)!r}), {str(runs)!r}, until="generate", quiet=True)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()
    store = RunStore(runs / "medical-qa")
    # batches run one ahead of the flush: the kill in the 4th call comes after 2 or 3 shards
    assert len(store.shard_paths("generate")) in (2, 3)
    assert store.stage_state("generate") is None  # not marked complete
    assert _ids(_generate(recipe, runs)) == reference
    assert len(store.shard_paths("generate")) == N // FLUSH


def test_ctrl_c_and_a_crashing_backend_resume_without_duplicates(
    recipe: Path, tmp_path: Path, reference, monkeypatch
) -> None:
    runs = tmp_path / "interrupted"
    original = TemplateBackend.generate
    calls: list[int] = []

    def flaky(self, requests):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        if len(calls) == 5:
            raise RuntimeError("backend crashed")
        return original(self, requests)

    monkeypatch.setattr(TemplateBackend, "generate", flaky)
    with pytest.raises(KeyboardInterrupt):
        _generate(recipe, runs)
    with pytest.raises(RuntimeError):
        _generate(recipe, runs)
    assert _ids(_generate(recipe, runs)) == reference
    records = RunStore(runs / "medical-qa").read_shards("generate")
    keys = [r.lineage["request_key"] for r in records]
    assert len(keys) == len(set(keys)) == N


def test_a_finished_stage_is_skipped_and_an_edit_reruns_only_what_follows(
    recipe: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    first = run_recipe(load_recipe(recipe), runs, until="quality", quiet=True)
    assert [o.status for o in first.outcomes] == ["ran", "ran"]
    again = run_recipe(load_recipe(recipe), runs, until="quality", quiet=True)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]
    text = recipe.read_text().replace("max: 1000000000.0", "max: 500.0")
    assert text != recipe.read_text()
    recipe.write_text(text)
    edited = run_recipe(load_recipe(recipe), runs, until="quality", quiet=True)
    assert [o.status for o in edited.outcomes] == ["skipped", "ran"]
    forced = run_recipe(load_recipe(recipe), runs, until="quality", quiet=True, force=True)
    assert [o.status for o in forced.outcomes] == ["ran", "ran"]
