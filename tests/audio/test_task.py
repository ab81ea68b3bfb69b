"""The audio task: log-mel features, the collator's augmentation, LoRA on the text tower with
the audio encoder trained in full, save/reload, and both objectives through the train,
export and evaluate stages on synthetic clips (tones and noise written as WAV files).

The clips: three classes whose spectra differ (a low hum with harmonics, a high whine, a
band of hiss), each with a random pitch, gain and background noise, so a from-scratch tiny
audio encoder learns them in a hundred steps; the test split is drawn with another seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from synthtune.audio.features import LogMelConfig, log_mel
from synthtune.audio.model import build_classifier, build_tiny_audio, load_tuned_classifier
from synthtune.audio.suite import predict_clips  # the suite registers itself on import
from synthtune.audio.task import AudioCollator  # the task registers itself on import
from synthtune.audio.wav import wav_bytes
from synthtune.config import Recipe, TrainConfig
from synthtune.config.base import fingerprint_dump
from synthtune.config.training import EvaluateConfig, ExportConfig
from synthtune.context import StageContext
from synthtune.evaluate.stage import EvaluateStage
from synthtune.export.stage import ExportStage
from synthtune.model_names import resolve_name
from synthtune.records import AudioMedia, Message, Payload, Record
from synthtune.store import RunStore
from synthtune.train.methods import METHODS
from synthtune.train.param_groups import apply_freezing, group_table, param_groups
from synthtune.train.stage import TrainStage

SR = 16_000
CLASSES = ("hiss", "hum", "whine")  # sorted: the task's label order
MACHINES = ("fan", "pump")
MINILM = resolve_name("all-MiniLM-L6-v2")


def synth_wave(label: str, rng: np.random.Generator, seconds: float = 1.0) -> np.ndarray:
    """A hum (harmonics of 60-120 Hz), a whine (a 1.5-2.5 kHz tone) or a hiss (noise above
    3 kHz), over white noise, at a random gain."""
    t = np.arange(int(SR * seconds)) / SR
    if label == "hum":
        f0 = rng.uniform(60, 120)
        wave = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 6))
    elif label == "whine":
        wave = np.sin(2 * np.pi * rng.uniform(1500, 2500) * t)
    else:
        wave = np.diff(rng.standard_normal(len(t) + 1))  # differenced noise: high-passed
    wave = wave / np.abs(wave).max() + rng.normal(0, rng.uniform(0.05, 0.3), len(t))
    return (rng.uniform(0.1, 0.9) * wave / np.abs(wave).max()).astype(np.float32)


def clip_records(root: Path, n: int, seed: int) -> list[Record]:
    """``n`` audio records under ``root/audio``, classes in turn, each from (seed, index)."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        label, machine = CLASSES[i % len(CLASSES)], MACHINES[int(rng.integers(2))]
        path = f"audio/{seed}-{i:04d}.wav"
        (root / path).write_bytes(wav_bytes(synth_wave(label, rng), SR))
        payload = Payload(
            messages=[Message(role="user", content=f"the sound of a {machine} with {label}")],
            label=label,
            media=(AudioMedia(type="audio", path=path, sample_rate=SR, seconds=1.0),),
        )
        slots = {"machine": machine, "anomaly": label}
        records.append(Record.create("synthetic", payload, lineage={"slots": slots}))
    return records


# ----------------------------------------------------------------------------- features
def test_log_mel_is_a_fixed_size_standardised_map_independent_of_gain() -> None:
    cfg = LogMelConfig()
    wave = synth_wave("hum", np.random.default_rng(0))
    first = log_mel(wave, SR, cfg)
    assert first.shape == (1, cfg.n_mels, cfg.frames) and first.dtype == np.float32
    assert np.array_equal(first, log_mel(wave, SR, cfg))  # deterministic
    assert abs(first.mean()) < 1e-4 and abs(first.std() - 1) < 1e-2
    np.testing.assert_allclose(log_mel(0.25 * wave, SR, cfg), first, atol=1e-3)  # gain-free
    # a hum's energy sits in the low mel bands, a whine's higher up
    whine = log_mel(synth_wave("whine", np.random.default_rng(0)), SR, cfg)
    assert first[0, :8].mean() > whine[0, :8].mean()


def test_other_rates_and_lengths_give_the_same_map_shape() -> None:
    cfg = LogMelConfig()
    rng = np.random.default_rng(1)
    for rate, seconds in ((22_050, 1.0), (8_000, 0.3), (16_000, 3.0)):
        wave = synth_wave("whine", rng, seconds)[: int(rate * seconds)]
        assert log_mel(wave, rate, cfg).shape == (1, cfg.n_mels, cfg.frames)
    assert cfg.samples == 63 * 256 and round(cfg.seconds, 3) == 1.008


def test_clip_paths_resolve_inside_the_run_or_absolute_for_real_data(tmp_path: Path) -> None:
    from synthtune.audio.model import audio_path
    from synthtune.store import UnsafeMediaPath

    (record,) = clip_records(tmp_path / "run", 1, seed=0)
    assert audio_path(record, tmp_path / "run") == (tmp_path / "run" / "audio/0-0000.wav")
    real = tmp_path / "real" / "hum.wav"  # real data: an absolute path named by the recipe
    real.parent.mkdir()
    real.write_bytes((tmp_path / "run" / "audio/0-0000.wav").read_bytes())

    def with_path(path: str) -> Record:
        media = (AudioMedia(type="audio", path=path, sample_rate=SR, seconds=1.0),)
        return record.model_copy(
            update={"payload": record.payload.model_copy(update={"media": media})}
        )

    assert audio_path(with_path(str(real)), tmp_path / "run") == real
    with pytest.raises(UnsafeMediaPath):
        audio_path(with_path("../real/hum.wav"), tmp_path / "run")


# ----------------------------------------------------------------------------- collator
class _Inputs:
    class tokenizer:  # stands in for a tokenizer: the collator reads the pad id only
        pad_token_id = 0


def _features(seed: int) -> dict[str, Any]:
    maps = log_mel(synth_wave("hum", np.random.default_rng(seed)), SR, LogMelConfig())
    return {"input_features": maps, "input_ids": [101, 7, 102][: 2 + seed % 2], "labels": 1}


def test_collator_augments_by_seed_epoch_and_clip_alone() -> None:
    features = [_features(0), _features(1)]
    batch = AudioCollator(_Inputs, 1.0, 0.0, seed=3)(features)
    assert batch["input_features"].shape == (2, 1, 64, 64)
    assert batch["input_ids"].tolist() == [[101, 7, 0], [101, 7, 102]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    again = AudioCollator(_Inputs, 1.0, 0.0, seed=3)(features[::-1])  # order does not matter
    assert torch.equal(batch["input_features"], again["input_features"].flip(0))
    clean = torch.from_numpy(np.stack([f["input_features"] for f in features]))
    assert not torch.equal(batch["input_features"], clean)  # masked and shifted
    later = AudioCollator(_Inputs, 1.0, 0.0, seed=3)
    later.epoch = 1
    assert not torch.equal(later(features)["input_features"], batch["input_features"])
    evaluating = AudioCollator(_Inputs, 1.0, 0.0, seed=3)
    evaluating.training = False
    assert torch.equal(evaluating(features)["input_features"], clean)
    assert torch.equal(AudioCollator(_Inputs, 0.0, 0.0, seed=3)(features)["input_features"], clean)


# ----------------------------------------------------------------------------- model
@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audio-encoder")
    build_tiny_audio(out, seed=0)
    return out


PROMPTS = [[f"the sound of {label}"] for label in CLASSES]


def _batch(tokenizer: Any) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(5)
    maps = np.stack([log_mel(synth_wave(c, rng), SR, LogMelConfig()) for c in CLASSES])
    captions = tokenizer([f"a {c}" for c in CLASSES], padding=True, return_tensors="pt")
    return {
        "input_features": torch.from_numpy(maps),
        "input_ids": captions["input_ids"],
        "attention_mask": captions["attention_mask"],
        "labels": torch.arange(len(CLASSES)),
    }


@pytest.mark.parametrize("objective", ["contrastive", "head"])
def test_lora_adapts_the_text_tower_and_trains_the_audio_encoder_in_full(
    encoder_dir: Path, objective: str
) -> None:
    cfg = TrainConfig(task="audio", lr={"adapter": 2e-3})
    model, _, _ = build_classifier(encoder_dir, MINILM, list(CLASSES), PROMPTS, objective)
    model = METHODS.get("lora").prepare(model, cfg)
    apply_freezing(model, cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    text_lora = [n for n in trainable if "text_encoder" in n]
    assert text_lora and all("lora_" in n for n in text_lora)
    assert {n.rsplit(".lora_", 1)[0].rsplit(".", 1)[-1] for n in text_lora} == {
        "query",
        "key",
        "value",
    }
    # the random-init audio encoder and the joint space train in full (modules_to_save)
    audio = [n for n in trainable if "audio_encoder" in n]
    assert any("patch_embedding" in n for n in audio) and any("fc1" in n for n in audio)
    assert any("joint.modules_to_save" in n for n in trainable)
    assert any("classifier" in n for n in trainable) == (objective == "head")
    assert {g["lr"] for g in param_groups(model, cfg)} == {2e-3}
    assert {row["group"] for row in group_table(model, cfg)} == {"adapter", "frozen"}


@pytest.mark.parametrize("objective", ["contrastive", "head"])
def test_tuned_models_reload_with_the_same_scores(
    encoder_dir: Path, tmp_path: Path, objective: str
) -> None:
    """After real optimizer steps (LoRA B no longer zero): the adapter over the base, and the
    merged whole model, give the scores the trained model gave."""
    from synthtune.audio.model import AudioInputs
    from synthtune.vision.onnx_export import plain_classifier

    torch.manual_seed(0)
    cfg = TrainConfig(task="audio", audio={"objective": objective})
    model, tokenizer, features = build_classifier(
        encoder_dir, MINILM, list(CLASSES), PROMPTS, objective
    )
    model = METHODS.get("lora").prepare(model, cfg)
    optimizer = torch.optim.AdamW(param_groups(model, cfg))
    batch = _batch(tokenizer)
    for _ in range(3):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    task = {**model.get_base_model().task_info(), "text_model": "all-MiniLM-L6-v2"}
    inputs = AudioInputs(tokenizer, features, tmp_path, task)
    model.save_pretrained(tmp_path / "adapter")
    inputs.save_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        expected = model.eval()(input_features=batch["input_features"]).logits
    again, loaded = load_tuned_classifier(tmp_path / "adapter", str(encoder_dir), tmp_path)
    assert loaded.task == task and loaded.features == features
    merged = plain_classifier(again)
    merged.save_pretrained(tmp_path / "whole")
    loaded.save_pretrained(tmp_path / "whole")
    whole, _ = load_tuned_classifier(tmp_path / "whole", "unused: a whole model", tmp_path)
    with torch.no_grad():
        for reloaded in (again, merged, whole):
            logits = reloaded(input_features=batch["input_features"]).logits
            torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- config
def test_new_sections_leave_existing_fingerprints_alone_and_audio_batches_randomly() -> None:
    assert "audio" not in fingerprint_dump(TrainConfig())
    assert "audio" not in fingerprint_dump(ExportConfig())
    assert "audio_heldout" not in fingerprint_dump(EvaluateConfig())
    assert fingerprint_dump(TrainConfig(audio={"objective": "head"}))["audio"]["objective"]
    assert TrainConfig(task="clip").batching == "grouped"
    assert TrainConfig(task="audio").batching == "padded"  # caption length follows the class
    assert TrainConfig(task="audio", batching="grouped").batching == "grouped"


def test_a_heldout_set_needs_an_audio_generator_and_its_own_seed() -> None:
    from synthtune.errors import RecipeError

    recipe = audio_recipe({}, evaluate={"audio_heldout": {"n": 10, "seed": 0}})
    with pytest.raises(RecipeError) as caught:
        EvaluateStage().check(recipe)
    assert "evaluate.audio_heldout.seed: 0 is the recipe's seed" in str(caught.value)
    assert "needs a generate section with an audio backend" in str(caught.value)


# ----------------------------------------------------------------------------- stages
def audio_recipe(train: dict[str, Any], evaluate: dict[str, Any] | None = None) -> Recipe:
    """A recipe for the train/export/evaluate stages (the records are written directly to
    mix/; the generate section only satisfies the recipe's need for a data source)."""
    return Recipe.model_validate(
        {
            "name": "audio-test",
            "seed": 0,
            "generate": {
                "n": 1,
                "templates": [{"id": "t", "prompt": "a", "response": "-"}],
            },
            "train": {
                "task": "audio",
                "base": "local-tiny-audio",
                "log_to": [],
                "warmup_ratio": 0.1,
                **train,
            },
            "evaluate": {"suites": ["audio"], **(evaluate or {})},
            "export": {
                "formats": [],
                "dataset_files": [],
                "audio": {"batch_sizes": [1, 8], "timed_batches": 2},
            },
        }
    )


def run_stages(root: Path, train: dict[str, Any], n_train: int, n_test: int) -> Path:
    """Records in mix/{train,val,test} (the test split from another seed), then train,
    export, evaluate."""
    store = RunStore(root)
    store.write_table("mix", "train", clip_records(root, n_train, seed=1))
    store.write_table("mix", "val", clip_records(root, n_test, seed=2))
    store.write_table("mix", "test", clip_records(root, n_test, seed=3))
    ctx = StageContext(audio_recipe(train), store, quiet=True)
    for stage in (TrainStage(), ExportStage(), EvaluateStage()):
        stage.run(ctx)
    return root


def _json(root: Path, stage: str, name: str) -> Any:
    return json.loads((root / stage / name).read_text(encoding="utf-8"))


# Measured (2 CPU cores): 96 clips, 6 epochs of 16 = 36 steps, about 6 s of training.
HEAD = {
    "audio": {"objective": "head"},
    "epochs": 6,
    "batch_size": 16,
    "augment": {"noise_prob": 0.5},
}
# CLAP through MiniLM with LoRA is ~2.5x slower per step: a short run must only beat chance.
CONTRASTIVE = {
    "audio": {"objective": "contrastive", "prompt": "the sound of a {machine} with {label}"},
    "epochs": 3,
    "batch_size": 16,
    "eval_strategy": "no",
}


@pytest.fixture(scope="module")
def head_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_stages(tmp_path_factory.mktemp("head"), HEAD, n_train=96, n_test=30)


@pytest.fixture(scope="module")
def contrastive_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_stages(tmp_path_factory.mktemp("clap"), CONTRASTIVE, n_train=48, n_test=30)


def test_the_audio_task_learns_held_out_clips(head_run: Path) -> None:
    suite = _json(head_run, "evaluate", "metrics.json")["suites"]["audio"]
    assert suite["labels"] == list(CLASSES) and suite["n"] == 30
    tuned, base = suite["tuned"], suite["base"]
    print(f"macro-F1 base (zero-shot) {base['macro_f1']}, tuned {tuned['macro_f1']}")
    assert tuned["macro_f1"] >= 0.9
    assert tuned["macro_f1"] > base["macro_f1"] + 0.4  # random init: base is near chance
    assert sum(map(sum, tuned["confusion_matrix"])) == 30
    metrics = _json(head_run, "train", "metrics.json")
    assert metrics["task"] == "audio" and metrics["labels"] == list(CLASSES)
    assert any("eval_macro_f1" in h for h in metrics["log_history"])


def test_suite_metrics_are_scikit_learns_on_the_tuned_models_predictions(head_run: Path) -> None:
    from sklearn.metrics import accuracy_score, f1_score

    store = RunStore(head_run)
    test = store.read_table("mix", "test")
    model, inputs = load_tuned_classifier(
        store.path("train", "adapter"), str(head_run / "models" / "local-tiny-audio"), head_run
    )
    truth = [CLASSES.index(str(r.payload.label)) for r in test]
    predicted = predict_clips(model, inputs, test)
    tuned = _json(head_run, "evaluate", "metrics.json")["suites"]["audio"]["tuned"]
    assert tuned["macro_f1"] == round(f1_score(truth, predicted, average="macro"), 4)
    assert tuned["accuracy"] == round(accuracy_score(truth, predicted), 4)
    per_class = f1_score(truth, predicted, average=None)
    assert [tuned["per_class"][c]["f1"] for c in CLASSES] == [round(v, 4) for v in per_class]


def test_the_export_stage_writes_onnx_that_matches_pytorch(head_run: Path) -> None:
    report = _json(head_run, "export", "audio.json")
    assert report["agreement"]["ort_fp32"]["max_abs_diff"] < 1e-4
    assert report["agreement"]["ort_int8"]["argmax_agreement"] >= 0.9
    assert report["quality"]["ort_int8"]["macro_f1"] >= 0.85
    assert set(report["speed"]) == {"batch_1", "batch_8"}
    for speed in report["speed"].values():
        assert set(speed["clips_per_second"]) == {"torch_fp32", "ort_fp32", "ort_int8"}
        assert min(speed["real_time_factor"].values()) > 0
    model = head_run / "export" / "audio" / "model"
    for name in ("audio_task.json", "audio_features.json", "audio_heads.safetensors"):
        assert (model / name).exists()
    assert (head_run / "export" / "audio" / "model-int8.onnx").exists()


def test_clap_with_lora_beats_chance_zero_shot(contrastive_run: Path) -> None:
    config = _json(contrastive_run, "train", "adapter/adapter_config.json")
    assert set(config["target_modules"]) == {"query", "key", "value"}
    assert {"audio_encoder", "joint"} <= set(config["modules_to_save"])
    task = _json(contrastive_run, "train", "adapter/audio_task.json")
    assert task["objective"] == "contrastive" and task["text_model"] == "all-MiniLM-L6-v2"
    assert set(task["prompts"][0]) == {f"the sound of a {m} with hiss" for m in MACHINES}
    suite = _json(contrastive_run, "evaluate", "metrics.json")["suites"]["audio"]
    print(
        f"zero-shot macro-F1 base {suite['base']['macro_f1']}, tuned {suite['tuned']['macro_f1']}"
    )
    assert suite["tuned"]["macro_f1"] >= 0.8  # chance: 1/3
    assert suite["tuned"]["macro_f1"] > suite["base"]["macro_f1"]
