"""The CLI starts without the heavy libraries: validate, schema and --help import no torch,
transformers, peft, scikit-learn, scipy, pandas, datasets, accelerate or bitsandbytes.

Timing lives in bench/cold_start.py; this test holds the property that makes it fast, on
every shipped example, in a fresh interpreter (imports are per process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = [
    "torch",
    "transformers",
    "peft",
    "sklearn",
    "scipy",
    "pandas",
    "datasets",
    "accelerate",
    "bitsandbytes",
    "matplotlib",
]
PROBE = """
import json, sys
import click
from synthtune.cli import app
try:
    code = app(sys.argv[1:], standalone_mode=False) or 0
except SystemExit as exc:
    code = exc.code
except click.exceptions.Exit as exc:
    code = exc.exit_code
print(json.dumps({"heavy": [m for m in HEAVY if m in sys.modules], "code": code}))
"""


def _imports(*args: str) -> dict:
    script = f"HEAVY = {HEAVY!r}\n{PROBE}"
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


EXAMPLES = sorted(p.relative_to(ROOT) for p in (ROOT / "examples").glob("*/recipe*.yaml"))


@pytest.mark.parametrize("recipe", EXAMPLES, ids=[str(p.parent.name) for p in EXAMPLES])
def test_validate_imports_no_heavy_library(recipe: Path) -> None:
    found = _imports("validate", str(recipe))
    assert found["heavy"] == [], f"validate {recipe} imported {found['heavy']}"


def test_help_and_schema_import_no_heavy_library() -> None:
    assert _imports("--help")["heavy"] == []
    assert _imports("schema")["heavy"] == []


def test_a_failing_validate_is_light_too(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: x\nmix: {real: {path: nowhere.jsonl}}\ntrain: {method: magic}\n",
        encoding="utf-8",
    )
    found = _imports("validate", str(recipe))
    assert found["code"] == 2 and found["heavy"] == []


def test_a_generation_only_run_never_imports_torch(tmp_path: Path) -> None:
    """``synthtune generate`` with an API-style backend: the whole run, report included,
    without torch, transformers, peft or bitsandbytes."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: gen-only\ngenerate:\n  n: 20\n  templates:\n    - id: t\n"
        "      prompt: 'hello {{ i }}'\n      response: 'ok {{ i }}'\n"
        "      slots: {i: {randint: [0, 1000]}}\n",
        encoding="utf-8",
    )
    found = _imports("generate", str(recipe), "--out", str(tmp_path / "runs"), "-q")
    assert found["code"] == 0
    heavy = {"torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets"}
    assert heavy & set(found["heavy"]) == set(), found["heavy"]
    assert (tmp_path / "runs" / "gen-only" / "generate" / "dataset.parquet").exists()
