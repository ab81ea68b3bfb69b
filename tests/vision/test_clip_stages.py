"""CLIP through the train, evaluate and export stages on procedural defect images.

A locally built tiny CLIP (``local-tiny-clip``, random init) is fine-tuned on 4 defect
classes and must reach macro-F1 >= 0.9 on held-out images; the ONNX export of its vision
tower must equal PyTorch, and its int8 model agree on the class of most images. A second,
smaller run trains LoRA adapters on both towers through the same stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.evaluate.stage import EvaluateStage
from synthtune.export.stage import ExportStage
from synthtune.store import RunStore
from synthtune.train.stage import TrainStage
from tests.vision.clip_images import CLASSES, MATERIALS, defect_records

pytestmark = pytest.mark.slow

# Measured: a from-scratch tiny CLIP needs ~400 steps; the head objective learns fastest, and
# flips/rotations (augment.noise_prob) keep 320 images from being memorised.
LEARNING = {
    "method": "full",
    "clip": {"objective": "head"},
    "epochs": 20,
    "batch_size": 16,
    "lr": {"adapter": 2e-3, "base": 2e-3},
    "augment": {"noise_prob": 0.9},
    "early_stopping": {"patience": 8},  # val loss is noisy on 80 images; best model kept
}


def clip_recipe(train: dict[str, Any]) -> Recipe:
    """A recipe whose generate section names the classes and materials (the words the tiny
    CLIP's tokenizer learns); the stages under test read train/evaluate/export."""
    words = [*CLASSES, *MATERIALS]
    return Recipe.model_validate(
        {
            "name": "clip-test",
            "seed": 0,
            "generate": {
                "n": 1,
                "templates": [
                    {
                        "id": "caption",
                        "prompt": "a photo of a {{ w }}",
                        "response": "-",
                        "slots": {"w": {"choice": words}},
                    }
                ],
            },
            "train": {
                "task": "clip",
                "base": "local-tiny-clip",
                "log_to": [],
                "warmup_ratio": 0.1,
                **train,
            },
            "evaluate": {"suites": ["images"]},
            "export": {"formats": [], "dataset_files": [], "vision": {"timed_batches": 3}},
        }
    )


def run_stages(root: Path, train: dict[str, Any], n_train: int, n_test: int) -> Path:
    """Records in mix/{train,val,test} (disjoint samples), then train, evaluate, export."""
    store = RunStore(root)
    records = defect_records(root, n_train + 2 * n_test, seed=7)
    store.write_table("mix", "train", records[:n_train])
    store.write_table("mix", "val", records[n_train : n_train + n_test])
    store.write_table("mix", "test", records[n_train + n_test :])
    ctx = StageContext(clip_recipe(train), store, quiet=True)
    for stage in (TrainStage(), ExportStage(), EvaluateStage()):
        stage.run(ctx)
    return root


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_stages(tmp_path_factory.mktemp("learned"), LEARNING, n_train=320, n_test=80)


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    train = {"method": "lora", "epochs": 1, "batch_size": 16, "freeze": {"first_n_layers": 1}}
    return run_stages(tmp_path_factory.mktemp("lora"), train, n_train=48, n_test=16)


def _json(root: Path, stage: str, name: str) -> Any:
    return json.loads((root / stage / name).read_text(encoding="utf-8"))


def test_tiny_clip_learns_held_out_defects(learned: Path) -> None:
    suite = _json(learned, "evaluate", "metrics.json")["suites"]["images"]
    assert suite["labels"] == sorted(CLASSES) and suite["n"] == 80
    tuned, base = suite["tuned"], suite["base"]
    print(f"macro-F1 base (zero-shot) {base['macro_f1']}, tuned {tuned['macro_f1']}")
    assert tuned["macro_f1"] >= 0.9
    assert tuned["macro_f1"] > base["macro_f1"] + 0.4  # random init: base is near chance
    matrix = tuned["confusion_matrix"]
    assert len(matrix) == 4 and sum(map(sum, matrix)) == 80
    assert set(tuned["per_class"]) == set(CLASSES)


def test_onnx_equals_pytorch_and_int8_agrees(learned: Path) -> None:
    report = _json(learned, "export", "vision.json")
    assert report["agreement"]["ort_fp32"]["max_abs_diff"] < 1e-4
    assert report["agreement"]["ort_fp32"]["argmax_agreement"] == 1.0
    assert report["agreement"]["ort_int8"]["argmax_agreement"] >= 0.9
    assert report["quality"]["ort_int8"]["macro_f1"] >= 0.85
    speed = report["images_per_second"]
    assert set(speed) == {"torch_fp32", "ort_fp32", "ort_int8"} and min(speed.values()) > 0
    assert (learned / "export" / "vision" / "model" / "clip_task.json").exists()


def test_clip_lora_under_the_train_stage(lora: Path) -> None:
    adapter = lora / "train" / "adapter"
    config = _json(lora, "train", "adapter/adapter_config.json")
    assert {"q_proj", "k_proj", "v_proj", "out_proj"} == set(config["target_modules"])
    assert (adapter / "clip_task.json").exists() and (adapter / "processor_config.json").exists()
    metrics = _json(lora, "train", "metrics.json")
    groups = {g["group"]: g for g in metrics["parameter_groups"]}
    assert set(groups) == {"adapter", "frozen"} and metrics["global_step"] == 3
    assert any("eval_macro_f1" in h for h in metrics["log_history"])
    # evaluate loaded base + adapter; export merged the adapter and matched PyTorch
    suite = _json(lora, "evaluate", "metrics.json")["suites"]["images"]
    assert {"base", "tuned"} <= set(suite) and suite["n"] == 16
    assert _json(lora, "export", "vision.json")["agreement"]["ort_fp32"]["max_abs_diff"] < 1e-4
