"""Third-party plugins through entry points: the tests/plugins distribution (installed by the
test command) adds a backend, a rule (extractor + pack), a task and a suite without any edit
under src/; a recipe that uses all four validates with field paths and runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from synthtune import plugins
from synthtune.cli import app
from synthtune.config import load_recipe
from synthtune.errors import RecipeError
from synthtune.store import RunStore

pytest.importorskip("synthtune_testplugin", reason="pip install -e tests/plugins (README)")

SUFFIX = " ok"


def _recipe(folder: Path, base: Path, **override: object) -> Path:
    recipe = {
        "name": "plugged",
        "seed": 5,
        "generate": {
            "n": 48,
            "backend": {"type": "echo", "suffix": SUFFIX},
            "templates": [
                # "<mood> <n>" + suffix: 3 words, kept by the brevity rule
                {
                    "id": "short",
                    "system": "Classify the mood.",
                    "prompt": "{{ word }} day {{ i }}",
                    "response": "{{ mood }} {{ i }}",
                    "label": "{{ mood }}",
                    "slots": {
                        "mood": {"choice": ["up", "down"]},
                        "word": {"by": "mood", "choice": {"up": ["sunny"], "down": ["grey"]}},
                        "i": {"randint": [0, 10_000]},
                    },
                },
                # 8 words + suffix: rejected by the brevity rule
                {
                    "id": "long",
                    "prompt": "{{ word }} evening {{ i }}",
                    "response": "{{ mood }} {{ i }} and a few more words here",
                    "label": "{{ mood }}",
                    "slots": {
                        "mood": {"choice": ["up", "down"]},
                        "word": {"by": "mood", "choice": {"up": ["bright"], "down": ["dull"]}},
                        "i": {"randint": [0, 10_000]},
                    },
                },
            ],
        },
        "quality": {"perplexity": {"enabled": False}, "rules": ["pack:brevity"]},
        "mix": {"val_fraction": 0.2, "test_fraction": 0.25},
        "train": {
            "task": "last_turn",
            "base": str(base),
            "method": "full",
            "max_steps": 4,
            "batch_size": 8,
            "max_length": 16,
            "log_to": [],
        },
        "evaluate": {"suites": ["agreement"]},
        **override,
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def test_entry_points_declare_the_plugin_names_without_importing_them() -> None:
    code = (
        "import json, sys\n"
        "from synthtune import plugins\n"
        "names = {k: r.names() for k, r in plugins.ALL.items()}\n"
        "print(json.dumps({'names': names, 'imported': 'synthtune_testplugin.backend' in "
        "sys.modules}))\n"
    )
    out = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    assert "echo" in out["names"]["backend"] and "last_turn" in out["names"]["task"]
    assert "agreement" in out["names"]["suite"] and "brevity" in out["names"]["rule pack"]
    assert "word_count" in out["names"]["extractor"]
    assert out["imported"] is False  # listed from metadata, imported only when named
    assert plugins.TASKS.is_plugin("last_turn") and not plugins.TASKS.is_plugin("clip")


def test_a_plugin_config_is_validated_with_its_field_path(tmp_path: Path) -> None:
    bad = _recipe(
        tmp_path,
        tmp_path,
        generate={
            "templates": [{"id": "t", "prompt": "p", "response": "r"}],
            "backend": {"type": "echo", "suffix": "x" * 300, "sufix": 1},
        },
    )
    with pytest.raises(RecipeError) as err:
        load_recipe(bad)
    problems = err.value.problems
    assert any(
        p.startswith("generate.backend.suffix: String should have at most 200") for p in problems
    ), problems
    assert any(p.startswith("generate.backend.sufix: unknown key") for p in problems), problems
    unknown = _recipe(tmp_path, tmp_path, evaluate={"suites": ["agreemnt"]})
    with pytest.raises(RecipeError) as err:
        load_recipe(unknown)
    assert any(
        "evaluate.suites.0: Value error, unknown evaluation suite 'agreemnt'" in p
        and "agreement" in p
        for p in err.value.problems
    ), err.value.problems


def test_a_recipe_using_the_plugin_backend_rule_task_and_suite_runs(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    recipe = _recipe(tmp_path, tiny_model_dir)
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    store = RunStore(out / "plugged")

    judged = store.read_table("quality", "dataset")
    assert len(judged) == 48
    assert all(r.payload.text("response").endswith(SUFFIX) for r in judged)  # echo backend
    for record in judged:  # the plugin rule through the plugin extractor, with its reason
        long = record.lineage["template"] == "long"
        assert (record.status == "accepted") is (not long), (record.status, record.reasons)
        if long:
            assert any("reply-at-most-6-words" in reason for reason in record.reasons)
    assert sum(r.lineage["template"] == "short" for r in judged) > 10

    train = store.read_json("train", "metrics.json")
    assert train["task"] == "last_turn" and train["labels"] == ["down", "up"]

    metrics = store.read_json("evaluate", "metrics.json")
    assert set(metrics["suites"]) == {"agreement"}  # the plugin kind: no built-in suite runs
    test = store.read_table("mix", "test")
    for variant in ("base", "tuned"):
        column = metrics["suites"]["agreement"][variant]
        assert column["n"] == len(test) > 0
        assert column["accuracy"] == pytest.approx(column["hits"] / column["n"])
    export = store.stage_state("export")["summary"]
    assert export["model"] == {"skipped": "no trained model with an export in train/adapter"}
