from pathlib import Path

from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.train.advisor import GIB, Hardware, advise


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
