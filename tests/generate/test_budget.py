"""Budgets stop cleanly in a resumable state; --dry-run estimates without sending."""

from pathlib import Path

import yaml
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from synthtune.store import RunStore
from tests.conftest import write_recipe
from tests.generate.scripted import ScriptedBackend, install

OFFLINE = {
    "type": "openai",
    "model": "m",
    "api_key_env": None,
    "max_tokens": 50,
    "base_url": "http://127.0.0.1:9/v1",
}
# 100 prompt tokens at 10,000 $/M = $1 per request; completions free
PRICES = {"m": {"input_per_1m": 10000, "output_per_1m": 0}}


def _recipe(tmp_path: Path, budget: float) -> Path:
    return write_recipe(
        tmp_path,
        {
            "generate": {
                "n": 20,
                "flush_every": 4,
                "backend": OFFLINE,
                "prices": PRICES,
                "budget_usd": budget,
            }
        },
    )


def _set_budget(recipe: Path, budget: float) -> None:
    data = yaml.safe_load(recipe.read_text())
    data["generate"]["budget_usd"] = budget
    recipe.write_text(yaml.safe_dump(data))


def test_budget_stops_resumably_and_never_pays_twice(tmp_path: Path, monkeypatch) -> None:
    backend = install(monkeypatch, ScriptedBackend(lambda r: f"re: {r.sample}", tokens=(100, 7)))
    recipe = _recipe(tmp_path, budget=5)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["generate", str(recipe), "--out", str(runs), "-q"])
    assert result.exit_code == 3, result.output
    assert "budget reached: spent $8.0000 of generate.budget_usd $5" in result.output
    store = RunStore(runs / "medical-qa")
    assert len(store.shard_paths("generate")) == 2 and len(backend.calls) == 8
    assert store.stage_state("generate") is None
    _set_budget(recipe, 100)
    run_recipe(load_recipe(recipe), runs, until="generate", quiet=True)
    assert len(backend.calls) == 20  # the first 8 were not sent again
    records = store.read_table("generate", "dataset")
    assert [r.lineage["request_index"] for r in records] == list(range(20))
    summary = store.stage_state("generate")["summary"]["usage"]
    assert summary["tokens_in_total"] == 2000 and summary["tokens_out_total"] == 140


def test_dry_run_estimates_and_sends_nothing(tmp_path: Path, monkeypatch) -> None:
    backend = install(monkeypatch, ScriptedBackend(lambda r: "x"))
    recipe = _recipe(tmp_path, budget=5)
    result = CliRunner().invoke(
        app, ["generate", str(recipe), "--dry-run", "--out", str(tmp_path / "runs")]
    )
    assert result.exit_code == 0, result.output
    assert backend.calls == [] and not (tmp_path / "runs").exists()
    total = next(line for line in result.output.splitlines() if "total" in line)
    cells = [c.strip() for c in total.split("│") if c.strip()]
    assert cells[:3] == ["total", "20", "20"]
    prompt_tokens, max_completion, cost = int(cells[3]), int(cells[4]), float(cells[5])
    assert max_completion == 20 * 50
    assert cost == round(prompt_tokens * 10000 / 1e6, 4)
    assert "budget: $5" in result.output
