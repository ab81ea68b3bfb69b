"""``synthtune ablate`` end to end on a tiny classification recipe: 2 variants x 2 seeds,
generate / quality / mix computed once per distinct input and linked into the other runs,
results.json with every run, the report files, and a resumed call that redoes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.store import RunStore
from tests.ablate.tiny_recipe import write_tiny_recipe

UPSTREAM = ("generate", "quality", "mix")


def test_ablate_shares_stages_and_reports(tmp_path: Path) -> None:
    recipe = write_tiny_recipe(
        tmp_path,
        {"seeds": 3, "variants": {"real+synthetic": None, "ratio-1-1": {"mix": {"ratio": "1:1"}}}},
    )
    runs = tmp_path / "runs"
    args = ["ablate", str(recipe), "--runs", str(runs), "--seeds", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "[1/4] real+synthetic seed 0 ..." in result.output
    assert "[4/4] ratio-1-1 seed 1 ..." in result.output
    folder = runs / "tiny-ablate" / "ablate"
    results = json.loads((folder / "results.json").read_text())
    order = [(r["variant"], r["seed"]) for r in results["runs"]]
    assert order == [
        ("real+synthetic", 0),
        ("ratio-1-1", 0),
        ("real+synthetic", 1),
        ("ratio-1-1", 1),
    ]
    ran = {stage: [r["stages"][stage] for r in results["runs"]].count("ran") for stage in UPSTREAM}
    # one generation (and one quality pass) feeds both variants; mix differs by its ratio
    assert ran == {"generate": 1, "quality": 1, "mix": 2}
    assert [r["stages"]["train"] for r in results["runs"]] == ["ran"] * 4  # train.seed differs
    reused = RunStore(folder / "ratio-1-1--s0")
    assert (reused.stage_state("generate") or {})["reused_from"] == str(
        folder / "real+synthetic--s0"
    )
    assert reused.read_shards("generate")  # the records came with it
    first = RunStore(folder / "real+synthetic--s0")
    assert [r.id for r in reused.read_table("mix", "test")] == [
        r.id for r in first.read_table("mix", "test")
    ]  # every run is scored on the same test rows
    assert set(results["stats"]["summary"]) == {"real+synthetic", "ratio-1-1"}
    assert results["stats"]["summary"]["ratio-1-1"]["macro_f1"]["n"] == 2
    assert results["runs"][0]["metrics"]["baseline"]["macro_f1"] >= 0
    assert set(results["contamination"]) == {"real+synthetic", "ratio-1-1"}
    assert results["contamination"]["ratio-1-1"]["synthetic_rows"] > 0
    markdown = (folder / "ablation.md").read_text()
    assert "## Verdict" in markdown and "## Per-class F1" in markdown
    assert (folder / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert "ratio-1-1 vs real+synthetic" in result.output

    again = CliRunner().invoke(app, [*args, "--quiet"])
    assert again.exit_code == 0, again.output
    rerun = json.loads((folder / "results.json").read_text())
    assert all(set(r["stages"].values()) == {"skipped"} for r in rerun["runs"])


def test_a_bad_patch_is_exit_2_before_any_work(tmp_path: Path) -> None:
    recipe = write_tiny_recipe(
        tmp_path, {"variants": {"real-only": None, "odd": {"mix": {"ratio": 3}}}}
    )
    result = CliRunner().invoke(app, ["ablate", str(recipe), "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "ablate.variants.odd.mix.ratio" in result.output
    assert not (tmp_path / "runs").exists()
