"""Training killed mid-epoch (kill -9 after a checkpoint) resumes to the same result."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from tests.conftest import write_recipe

pytestmark = pytest.mark.slow
KILL_AT = 10  # optimizer steps; epochs have ~18, checkpoints every 5


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "train" / "metrics.json").read_text())


@pytest.mark.parametrize("method", ["lora", "prefix"])
def test_kill_mid_epoch_then_resume_matches_an_uninterrupted_run(
    tmp_path: Path, method: str
) -> None:
    overrides = {
        "train": {
            "method": method,
            "epochs": 2,
            "eval_strategy": "steps",
            "eval_steps": 5,
            "early_stopping": {"patience": 10},
        }
    }
    recipe = write_recipe(tmp_path, overrides)
    reference = _metrics(
        run_recipe(load_recipe(recipe), tmp_path / "reference", until="train", quiet=True).run_dir
    )
    runs = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import os, signal
        import synthtune.train.trainer as stage
        from synthtune.config import load_recipe
        from synthtune.pipeline import run_recipe

        class Dying(stage.ProgressCallback):
            def on_save(self, args, state, control, **kwargs):
                if state.global_step == {KILL_AT}:
                    os.kill(os.getpid(), signal.SIGKILL)

        stage.ProgressCallback = Dying
        run_recipe(load_recipe({str(recipe)!r}), {str(runs)!r}, until="train", quiet=True)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=600)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    checkpoints = sorted(
        (runs / "medical-qa" / "train" / "checkpoints").glob("checkpoint-*"),
        key=lambda p: int(p.name.split("-")[1]),
    )
    assert checkpoints and checkpoints[-1].name == f"checkpoint-{KILL_AT}"
    resumed = _metrics(run_recipe(load_recipe(recipe), runs, until="train", quiet=True).run_dir)
    assert resumed["global_step"] == reference["global_step"] > KILL_AT
    assert resumed["best_eval_loss"] == pytest.approx(reference["best_eval_loss"], rel=1e-4)
    evals = lambda m: [h["eval_loss"] for h in m["log_history"] if "eval_loss" in h]  # noqa: E731
    assert evals(resumed)[-1] == pytest.approx(evals(reference)[-1], rel=1e-4)
