from pathlib import Path

from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.train.advisor import GIB, Hardware, advise, recipe_facts, recommended


def test_small_model_on_a_big_machine_with_lots_of_data_gets_full_fine_tuning() -> None:
    rows = advise(examples=200_000, parameters=100_000_000, hardware=Hardware("cuda", 80 * GIB))
    assert rows[0]["method"] == "full"


def test_a_13b_model_on_a_24gb_gpu_gets_qlora_and_full_does_not_fit() -> None:
    rows = advise(examples=20_000, parameters=13_000_000_000, hardware=Hardware("cuda", 24 * GIB))
    assert rows[0]["method"] == "qlora"
    full = next(r for r in rows if r["method"] == "full")
    assert not full["fits"] and full["memory_gib"] > 100  # 16 bytes per parameter


def test_cpu_with_little_data_prefers_small_adapters() -> None:
    rows = advise(examples=500, parameters=500_000_000, hardware=Hardware("cpu", 24 * GIB))
    assert rows[0]["method"] in ("prefix", "lora")
    assert not next(r for r in rows if r["method"] == "qlora")["fits"]  # no GPU


def test_cli_advise_trains_nothing(small_recipe: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["train", str(small_recipe), "--advise", "--out", str(runs)])
    assert result.exit_code == 0, result.output
    assert "recommended:" in result.output and "local-tiny" in result.output
    assert not runs.exists()


def _real_recipe(folder: Path, rows: int, **train: object) -> Path:
    """Real data only: own train (``rows`` rows), validation (20) and test (30) files."""
    import json

    import yaml

    def write(name: str, count: int) -> str:
        lines = [
            json.dumps({"text": f"{name} row {i} topic {i % 4}", "label": f"t{i % 4}"})
            for i in range(count)
        ]
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return f"{name}.jsonl"

    real = {
        "train": write("train", rows),
        "validation": write("val", 20),
        "test": write("test", 30),
    }
    body = {
        "name": "advice",
        "mix": {"real": {**real, "label_field": "label"}},
        "train": {"task": "classification", **train},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def test_a_small_classifier_on_a_small_encoder_gets_full_fine_tuning() -> None:
    unsupported = {"prefix": "prefix tuning of a classifier needs past_key_values"}
    rows = advise(200, 22_700_000, Hardware("cpu", 8 * GIB), "classification", unsupported)
    assert recommended(rows) == "full" and rows[0]["method"] == "full"
    prefix = next(r for r in rows if r["method"] == "prefix")
    assert not prefix["runs"] and prefix["why"].startswith("cannot run: prefix tuning")
    assert rows[-1]["method"] == "prefix"  # below even the methods that do not fit


def test_a_method_that_cannot_run_is_never_recommended() -> None:
    # little data on a CPU: prefix would rank first for a causal LM if it could run
    assert recommended(advise(500, 500_000_000, Hardware("cpu", 24 * GIB))) == "prefix"
    refused = {"prefix": "no past_key_values", "lora": "no target modules"}
    rows = advise(500, 500_000_000, Hardware("cpu", 24 * GIB), "causal_lm", refused)
    assert recommended(rows) not in refused
    assert recommended(advise(500, 10**12, Hardware("cpu", GIB), "causal_lm", refused)) is None


def test_facts_count_the_real_train_rows_of_a_real_only_recipe(tmp_path: Path) -> None:
    from synthtune.config import load_recipe

    recipe = load_recipe(_real_recipe(tmp_path, 200, base="all-MiniLM-L6-v2"))
    facts = recipe_facts(recipe, tmp_path / "runs" / "advice")
    assert (facts.examples, facts.examples_from) == (200, "real train rows")
    assert facts.model_type == "bert" and facts.task == "classification"
    assert 22_000_000 < facts.parameters < 23_000_000  # MiniLM-L6 + a 4-class head
    assert set(facts.unsupported) == {"prefix", "ia3"}


def test_cli_advise_recommends_full_for_a_real_minilm_classifier(tmp_path: Path) -> None:
    recipe = _real_recipe(tmp_path, 200, base="all-MiniLM-L6-v2")
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["train", str(recipe), "--advise", "--out", str(runs)])
    text = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "200 examples (real train rows)" in text and "task classification" in text
    assert "recommended: full" in text
    assert not runs.exists()
