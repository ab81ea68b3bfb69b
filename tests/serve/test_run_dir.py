"""Serving a run directory's tuned model; the generate stage's openai backend uses it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import openai
import pytest

from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from synthtune.serve import (
    ServeError,
    ServeServer,
    create_app,
    load_served_models,
    parse_adapters,
    resolve_source,
)
from synthtune.store import RunStore
from tests.conftest import write_recipe


def _run_dir(root: Path, adapter: Path, base_path: str) -> Path:
    run = root / "runs" / "clinic"
    shutil.copytree(adapter, run / "train" / "adapter")
    metrics = {"base": "local-tiny", "base_path": base_path, "task": "causal_lm"}
    (run / "train" / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_run_dir_serves_its_adapter_under_the_run_name(
    tmp_path: Path, tiny_model_dir: Path, lora_dir: Path
) -> None:
    run = _run_dir(tmp_path, lora_dir, str(tiny_model_dir))
    source = resolve_source(str(run), parse_adapters([f"extra={lora_dir}"]))
    assert source.model == str(tiny_model_dir)
    assert source.name == "local-tiny"
    assert source.adapters == {"clinic": run / "train" / "adapter", "extra": lora_dir}


def test_relative_base_path_is_found_next_to_the_runs(
    tmp_path: Path, tiny_model_dir: Path, lora_dir: Path, monkeypatch
) -> None:
    shutil.copytree(tiny_model_dir, tmp_path / "runs" / "models" / "local-tiny")
    run = _run_dir(tmp_path, lora_dir, "runs/models/local-tiny")
    monkeypatch.chdir(tmp_path.parent)  # not where training ran
    source = resolve_source(str(run))
    assert Path(source.model).resolve() == (tmp_path / "runs/models/local-tiny").resolve()


@pytest.mark.parametrize(
    "specs", [["noequals"], ["=path"], ["a=x", "a=y"]], ids=["no-eq", "no-name", "twice"]
)
def test_bad_adapter_options_are_refused(specs: list[str]) -> None:
    with pytest.raises(ServeError, match="--adapter"):
        parse_adapters(specs)


def test_missing_things_are_reported(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ServeError, match=r"no adapter_config\.json"):
        resolve_source(str(tiny_model_dir), {"x": tmp_path})
    with pytest.raises(ServeError, match="neither a model folder"):
        resolve_source(str(tmp_path))


def test_full_fine_tune_run_serves_that_model_alone(tmp_path: Path, tiny_model_dir: Path) -> None:
    run = tmp_path / "full-run"
    shutil.copytree(tiny_model_dir, run / "train" / "adapter")
    models = load_served_models(resolve_source(str(run)))
    assert models.names == ["full-run"]
    with ServeServer(create_app(models)) as server:
        client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
        reply = client.completions.create(
            model="full-run", prompt="Patient 4", max_tokens=8, temperature=0
        )
    assert reply.usage.completion_tokens > 0


def test_generate_stage_writes_records_from_the_served_tuned_model(
    tmp_path: Path, tiny_model_dir: Path, lora_dir: Path, chatty_model_dir: Path
) -> None:
    """A tuned model generates the next round: the openai backend against ``serve``."""
    run = _run_dir(tmp_path / "tuned", lora_dir, str(tiny_model_dir))
    shutil.rmtree(run / "train" / "adapter")
    # an adapter that leaves the chatty model's long replies intact (zero-initialised B)
    from peft import LoraConfig, get_peft_model

    from synthtune.models import load_causal_lm

    model, _ = load_causal_lm(str(chatty_model_dir), dtype="float32")
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(
        run / "train" / "adapter"
    )
    (run / "train" / "metrics.json").write_text(
        json.dumps({"base": "chatty", "base_path": str(chatty_model_dir), "task": "causal_lm"})
    )
    models = load_served_models(resolve_source(str(run)))
    with ServeServer(create_app(models)) as server:
        backend = {
            "type": "openai",
            "base_url": server.url,
            "model": "clinic",
            "api_key_env": None,
            "max_tokens": 32,
            "temperature": 0.7,
            "backoff_s": 0.01,
            "timeout_s": 60,
        }
        recipe = write_recipe(tmp_path, {"generate": {"n": 6, "backend": backend}})
        result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="generate", quiet=True)
    records = RunStore(result.run_dir).read_table("generate", "dataset")
    assert len(records) == 6
    replies = [r.payload.messages[-1] for r in records if r.status == "accepted"]
    assert len(replies) == 6 and all(m.role == "assistant" and m.content for m in replies)
    assert {r.lineage["model"] for r in records} == {"clinic"}
    assert all(r.lineage["tokens_out"] > 0 for r in records)
