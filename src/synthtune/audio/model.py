"""The audio-text classifier of ``train.task: audio`` and the offline ``local-tiny-audio``.

:class:`AudioTextClassifier` joins two towers:

* the audio encoder: a ViT over the one-channel log-mel map (``CLIPVisionModelWithProjection``
  with ``num_channels=1``; ``synthtune.audio.features``), a standard Hugging Face folder;
* the text encoder: a sentence encoder (the packaged ``all-MiniLM-L6-v2`` by default),
  mean-pooled as sentence-transformers pools it, then projected into the joint space
  (``joint.text``) -- CLAP's layout (Elizarde et al., 2023): both towers project into one
  space where a learned temperature (``joint.logit_scale``, CLIP's) scales cosine similarity.

Objectives, as for the clip task (``synthtune.vision.clip_task``, whose label-aware InfoNCE
and class prompts are reused here): ``contrastive`` pulls a clip towards its caption and the
captions of its class and predicts classes zero-shot from the class prompts; ``head`` is a
linear classifier on the audio embeddings. Both return class ``logits``.

The model's ``config`` is the text encoder's, so LoRA aliases (``train.lora.target_modules:
attention``) resolve on the text tower (BERT's query/key/value); the audio encoder, the joint
projection and the head are new modules (``TaskSpec.heads``): they train in full at
``lr.adapter`` and are saved with an adapter (peft ``modules_to_save``). The audio encoder
has no pre-training, so adapting a frozen random tower with LoRA would learn little.

``local-tiny-audio`` is that audio encoder, randomly initialised (seeded) and saved as a
normal HF folder with its feature settings (``audio_features.json``): zero-shot it is at
chance, everything it knows comes from fine-tuning.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from synthtune.audio.features import LogMelConfig, clip_features
from synthtune.errors import StageError
from synthtune.models import LOCAL_MODELS, seed_everything
from synthtune.records import Record
from synthtune.vision.clip_task import (
    ClipOutput,
    class_scores,
    contrastive_loss,
    mean_class_embeds,
    register_prompts,
)

LOCAL_TINY_AUDIO = "local-tiny-audio"
TASK_FILE = "audio_task.json"
HEADS_FILE = "audio_heads.safetensors"  # joint space (+ classifier) of a fully trained model
TEXT_FOLDER = "text"  # the text encoder inside a fully trained model's folder
# modules created for the task, saved in audio_heads.safetensors by a whole-model save (with
# the audio encoder they are the task's TaskSpec.heads: trained in full, saved with adapters)
JOINT, CLASSIFIER = "joint", "classifier"
# CLIP's initial temperature 0.07 and its cap of 100 on the logit scale (Radford et al., 2021)
INITIAL_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = 100.0


@dataclass(frozen=True)
class TinyAudioShape:
    """Size of ``local-tiny-audio``: a 64x64 log-mel map in 8x8 patches (64 tokens), four
    128-wide blocks (0.56 M parameters). Measured on 2 CPU cores (docs/audio_training.md):
    ~55 ms per training step of 16 clips with the head objective; macro-F1 0.91 on 200
    held-aside machine-sound clips of 4 anomaly classes after 540 steps (29 s)."""

    size: int = 64  # n_mels = frames: CLIP's vision embeddings take square inputs
    patch_size: int = 8
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    projection_dim: int = 128


def tiny_audio_config(shape: TinyAudioShape) -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        num_channels=1,
        image_size=shape.size,
        patch_size=shape.patch_size,
        hidden_size=shape.hidden_size,
        intermediate_size=2 * shape.hidden_size,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        projection_dim=shape.projection_dim,
    )


def build_tiny_audio(out_dir: Path, seed: int, shape: TinyAudioShape | None = None) -> dict:
    """A seeded ``CLIPVisionModelWithProjection`` over log-mel maps, saved with its feature
    settings as an HF folder. Deterministic for a given shape and seed. Returns a summary."""
    from transformers import CLIPVisionModelWithProjection

    shape = shape or TinyAudioShape()
    seed_everything(seed)
    model = CLIPVisionModelWithProjection(tiny_audio_config(shape))
    model.save_pretrained(out_dir)
    LogMelConfig(n_mels=shape.size, frames=shape.size).save(out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters()), **asdict(shape)}


def ensure_local_tiny_audio(out: Path, recipe: Any) -> Path:
    """Build ``local-tiny-audio`` under ``out`` unless the same build is already there."""
    from synthtune.records import content_hash
    from synthtune.store import atomic_write_json

    fingerprint = content_hash({"shape": asdict(TinyAudioShape()), "seed": recipe.seed})
    marker = out / "synthtune.json"
    if marker.exists() and json.loads(marker.read_text())["fingerprint"] == fingerprint:
        return out
    summary = build_tiny_audio(out, recipe.seed)
    atomic_write_json(marker, {"fingerprint": fingerprint, **summary})
    return out


def load_audio_encoder(path: str | Path) -> tuple[Any, LogMelConfig]:
    """``(CLIPVisionModelWithProjection in fp32, its log-mel settings)`` from a folder."""
    from transformers import CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection.from_pretrained(str(path), dtype=torch.float32)
    return model, LogMelConfig.load(path)


def load_text_encoder(
    path: str | Path, tokenizer_path: str | Path | None = None
) -> tuple[Any, Any]:
    """``(encoder, tokenizer)``; sentence embeddings are mean-pooled, a BERT pooler is left
    unused. The tokenizer comes from ``tokenizer_path`` when given (a tuned model keeps it
    beside the towers), else from ``path``."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(path), dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(str(tokenizer_path or path))


class JointSpace(nn.Module):
    """The text side's projection into the audio embedding space and the temperature."""

    def __init__(self, text_width: int, dim: int) -> None:
        super().__init__()
        self.text = nn.Linear(text_width, dim)
        self.logit_scale = nn.Parameter(torch.tensor(INITIAL_LOGIT_SCALE))

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)


class AudioTextClassifier(nn.Module):
    """An audio encoder and a text encoder that score clips against classes (module
    docstring)."""

    base_model_prefix = "text_encoder"  # the tower whose config the model carries

    def __init__(
        self,
        audio: Any,
        text: Any,
        tokenizer: Any,
        labels: list[str],
        prompts: list[list[str]],
        objective: str,
    ) -> None:
        super().__init__()
        self.audio_encoder, self.text_encoder = audio, text
        self.config = text.config  # peft resolves module aliases from config.model_type
        self.labels, self.prompts, self.objective = list(labels), prompts, objective
        dim = audio.config.projection_dim
        self.joint = JointSpace(text.config.hidden_size, dim)
        self.classifier = nn.Linear(dim, len(labels)) if objective == "head" else None
        self.prompt_ids: torch.Tensor
        self.prompt_mask: torch.Tensor
        self.prompt_class: torch.Tensor
        register_prompts(self, tokenizer, prompts)

    def audio_embeds(self, features: torch.Tensor) -> torch.Tensor:
        """(N, 1, n_mels, frames) log-mel maps -> (N, dim) unnormalised embeddings."""
        embeds: torch.Tensor = self.audio_encoder(pixel_values=features).image_embeds
        return embeds

    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unit vectors in the joint space: mean-pooled, normalised sentence embeddings
        (all-MiniLM-L6-v2's own pooling) through ``joint.text``."""
        hidden = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask)
        mask = attention_mask[..., None].to(hidden.last_hidden_state.dtype)
        pooled = (hidden.last_hidden_state * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        projected = self.joint.text(nn.functional.normalize(pooled, dim=-1))
        return nn.functional.normalize(projected, dim=-1)

    def class_embeds(self) -> torch.Tensor:
        """One unit vector per class: the mean of its normalised prompt embeddings."""
        prompts = self.text_embeds(self.prompt_ids, self.prompt_mask)
        return mean_class_embeds(prompts, self.prompt_class, len(self.labels))

    def scores(self, audio: torch.Tensor) -> torch.Tensor:
        """Class logits from (unnormalised) audio embeddings."""
        return class_scores(audio, self.classifier, self.joint.scale(), self.class_embeds)

    def caption_embeds(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """:meth:`text_embeds` of a batch's captions; template captions repeat within a
        batch, so each distinct one is encoded once."""
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        unique, inverse = torch.unique(
            torch.cat([input_ids, mask], dim=1), dim=0, return_inverse=True
        )
        width = input_ids.shape[1]
        return self.text_embeds(unique[:, :width], unique[:, width:])[inverse]

    def forward(
        self,
        input_features: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> ClipOutput:
        audio = self.audio_embeds(input_features)
        contrastive = self.classifier is None and input_ids is not None
        # a contrastive training step needs the loss alone: no class prompts through the text
        # tower (evaluation, in eval mode, gets the logits)
        training_step = contrastive and labels is not None and self.training
        logits = None if training_step else self.scores(audio)
        loss = None
        if labels is not None and contrastive and input_ids is not None:
            text = self.caption_embeds(input_ids, attention_mask)
            unit = nn.functional.normalize(audio, dim=-1)
            loss = contrastive_loss(unit, text, self.joint.scale(), labels)
        elif labels is not None and logits is not None:
            loss = nn.functional.cross_entropy(logits, labels)
        return ClipOutput(loss=loss, logits=logits)

    def task_info(self) -> dict[str, Any]:
        return {"objective": self.objective, "labels": self.labels, "prompts": self.prompts}

    def save_pretrained(self, out_dir: Path | str, **kwargs: Any) -> None:
        """The audio encoder as an HF folder (loadable by any CLIP vision code), the text
        encoder in ``text/``, the joint space and head in ``audio_heads.safetensors``."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        self.audio_encoder.save_pretrained(out)
        self.text_encoder.save_pretrained(out / TEXT_FOLDER)
        heads = {f"{JOINT}.{k}": v for k, v in self.joint.state_dict().items()}
        if self.classifier is not None:
            heads |= {f"{CLASSIFIER}.{k}": v for k, v in self.classifier.state_dict().items()}
        save_file({k: v.contiguous() for k, v in heads.items()}, str(out / HEADS_FILE))

    def load_heads(self, folder: Path) -> None:
        """The joint space and head saved by :meth:`save_pretrained`."""
        from safetensors.torch import load_file

        state = load_file(str(folder / HEADS_FILE))
        for name, module in ((JOINT, self.joint), (CLASSIFIER, self.classifier)):
            if module is not None:
                prefix = f"{name}."
                module.load_state_dict(
                    {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                )


@dataclass
class AudioInputs:
    """What the audio task encodes records with (the stage's "tokenizer" slot): the text
    tokenizer, the log-mel settings of the audio encoder, and the run directory the records'
    audio paths are relative to."""

    tokenizer: Any
    features: LogMelConfig
    root: Path
    task: dict[str, Any]  # objective, labels, prompts, text_model: saved as audio_task.json

    def save_pretrained(self, out_dir: Path | str) -> None:
        self.tokenizer.save_pretrained(out_dir)
        self.features.save(out_dir)
        text = json.dumps(self.task, indent=2)
        (Path(out_dir) / TASK_FILE).write_text(text, encoding="utf-8")

    def clip(self, record: Record) -> np.ndarray:
        """The record's (1, n_mels, frames) log-mel map."""
        return clip_features(audio_path(record, self.root), self.features)


def audio_path(record: Record, root: Path) -> Path:
    """The record's WAV file: an absolute path is real data named by the recipe, a relative
    one resolves inside the run directory ``root`` (never outside it: record files are not
    trusted, ``store.resolve_inside``). A record without a clip is a user error, named."""
    from synthtune.store import resolve_inside

    for media in record.payload.media or ():
        if media.type == "audio":
            path = Path(media.path)
            return path if path.is_absolute() else resolve_inside(Path(root), media.path)
    raise StageError(f"record {record.id}: train.task audio needs a clip (payload.media audio)")


def build_classifier(
    encoder_path: str | Path,
    text_path: str | Path,
    labels: list[str],
    prompts: list[list[str]],
    objective: str,
    tokenizer_path: str | Path | None = None,
) -> tuple[AudioTextClassifier, Any, LogMelConfig]:
    """``(classifier, text tokenizer, log-mel settings)`` from the two towers' folders."""
    audio, features = load_audio_encoder(encoder_path)
    text, tokenizer = load_text_encoder(text_path, tokenizer_path)
    model = AudioTextClassifier(audio, text, tokenizer, labels, prompts, objective)
    return model, tokenizer, features


def load_audio_task(path: str, setup: Any) -> tuple[AudioTextClassifier, AudioInputs]:
    """The train stage's loader (``TaskSpec.load``): the classifier over the train labels,
    its class prompts filled from the train records' slots."""
    from synthtune.model_names import resolve_name
    from synthtune.vision.clip_task import class_prompts

    cfg = setup.config.audio
    prompts = class_prompts(cfg.prompt, setup.labels, setup.records)
    text_path = resolve_name(cfg.text_model)
    model, tokenizer, features = build_classifier(
        path, text_path, setup.labels, prompts, cfg.objective
    )
    task = {**model.task_info(), "text_model": cfg.text_model}
    return model, AudioInputs(tokenizer, features, Path(setup.root), task)


def load_tuned_classifier(folder: Path, base_path: str, root: Path) -> tuple[Any, AudioInputs]:
    """What the train stage saved in ``folder``: a peft adapter over ``base_path`` and the
    text model named in ``audio_task.json``, or a whole fine-tuned model folder; ``root``:
    the directory record audio paths are relative to. The model is in eval mode."""
    from synthtune.model_names import resolve_name

    task = json.loads((folder / TASK_FILE).read_text(encoding="utf-8"))
    args = (task["labels"], task["prompts"], task["objective"])
    if (folder / "adapter_config.json").exists():
        from peft import PeftModel

        model, tokenizer, features = build_classifier(
            base_path, resolve_name(task["text_model"]), *args
        )
        tuned: Any = PeftModel.from_pretrained(model, str(folder))
    else:
        tuned, tokenizer, features = build_classifier(
            folder, folder / TEXT_FOLDER, *args, tokenizer_path=folder
        )
        tuned.load_heads(folder)
    return tuned.eval(), AudioInputs(tokenizer, features, Path(root), task)


def encode_audio(
    inputs: AudioInputs, record: Record, max_length: int, ids: dict[str, int]
) -> dict[str, Any]:
    """One record as model inputs: log-mel map, caption token ids, class index."""
    from synthtune.train.tasks import label_id

    limit = min(max_length, getattr(inputs.tokenizer, "model_max_length", max_length))
    caption = inputs.tokenizer(record.payload.input_text(), truncation=True, max_length=limit)
    return {
        "input_features": inputs.clip(record),
        "input_ids": caption["input_ids"],
        "labels": label_id(record, ids),
    }


LOCAL_MODELS.register(LOCAL_TINY_AUDIO, ensure_local_tiny_audio)
