"""The export stage on the small recipe: dataset files, merged model, int8 report."""

import json
from pathlib import Path

import pytest
from datasets import load_from_disk

from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from tests.conftest import write_recipe


@pytest.mark.slow
def test_export_writes_datasets_merged_model_and_quantize_report(tmp_path: Path) -> None:
    path = write_recipe(
        tmp_path,
        {
            "export": {
                "formats": ["openai", "alpaca", "sharegpt"],
                "quantize": "int8",
                "latency_prompts": 2,
                "latency_new_tokens": 4,
                "quality_samples": 20,
            }
        },
    )
    result = run_recipe(load_recipe(path), tmp_path / "runs", quiet=True)
    out = result.run_dir / "export"
    summary = next(o.summary for o in result.outcomes if o.name == "export")

    info = json.loads((out / "dataset_info.json").read_text())
    assert {e["file_name"] for e in info.values()} == {
        f"{fmt}/{split}.jsonl"
        for fmt in ("openai", "alpaca", "sharegpt")
        for split in ("train", "val", "test")
    }
    for entry in info.values():
        assert (out / entry["file_name"]).exists()
    first = json.loads((out / "sharegpt/train.jsonl").read_text().splitlines()[0])
    tags = next(e["tags"] for e in info.values() if e["file_name"] == "sharegpt/train.jsonl")
    assert {turn[tags["role_tag"]] for turn in first["conversations"]} <= {
        tags["user_tag"],
        tags["assistant_tag"],
        tags["system_tag"],
    }

    data = load_from_disk(str(out / "hf_dataset"))
    assert {split: len(data[split]) for split in data} == {
        split: summary["files"][f"openai/{split}"] for split in ("train", "val", "test")
    }
    card = (out / "README.md").read_text()
    assert "## Filters (quality funnel)" in card and "seed" in card
    assert f"### train: {len(data['train'])} records" in card

    model = summary["model"]
    assert model["merged"] and model["max_abs_logit_diff"] <= model["tolerance"]
    assert (out / "model" / "model.safetensors").exists()
    assert json.loads((out / "model" / "generation_config.json").read_text())["eos_token_id"]
    report = json.loads((out / "quantize.json").read_text())
    assert report["backend"] == summary["quantize"]["backend"] == "torch-ao-dynamic"
    assert report["new_tokens"] == 4 and report["latency_prompts"] == 2
    assert report["quantized"]["size_bytes"] < report["fp32"]["size_bytes"]
