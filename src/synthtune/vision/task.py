"""The ``clip`` task, registered through the public plugin API like a third party's.

Light on purpose (numpy only): the recipe check asks the registry whether the task is
labelled without importing torch; the hooks import :mod:`synthtune.vision.clip_task`,
:mod:`synthtune.vision.images_suite` and :mod:`synthtune.vision.clip_export` when called.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING, Any

import numpy as np

from synthtune import plugins
from synthtune.records import Record
from synthtune.train.data import NoisyCollator
from synthtune.train.tasks import TaskSetup, TaskSpec, argmax_logits, classification_metrics

if TYPE_CHECKING:
    import torch


def _load(path: str, setup: TaskSetup) -> tuple[Any, Any]:
    from synthtune.vision.clip_task import load_clip_task

    return load_clip_task(path, setup)


def _encode(inputs: Any, record: Record, max_length: int, ids: dict[str, int]) -> dict[str, Any]:
    from synthtune.vision.clip_task import encode_clip

    return encode_clip(inputs, record, max_length, ids)


def _variants(ctx: Any, labels: list[str]) -> tuple[list[Any], str]:
    from synthtune.vision.images_suite import image_variants

    return image_variants(ctx, labels), "ONNX int8: export/vision.json"


def _export(ctx: Any, test: list[Record], train: dict[str, Any]) -> dict[str, Any]:
    from synthtune.vision.clip_export import export_clip

    return export_clip(ctx, test)


class ClipCollator(NoisyCollator):
    """Stacks pixel values and pads captions. In training, with probability ``noise_prob``
    (``train.augment.noise_prob``) an image is flipped and/or turned by a multiple of 90
    degrees -- a defect's class does not depend on its orientation. As for text noise, the
    draw depends only on (seed, epoch, the image), so a resumed run sees the same images.
    Captions get no token noise: they are not what the model learns to write."""

    def __init__(self, inputs: Any, noise_prob: float, token_rate: float, seed: int) -> None:
        self.pad_id = inputs.processor.tokenizer.pad_token_id
        self.noise_prob = noise_prob
        self.seed = seed
        self.epoch = 0
        self.training = True

    def _augment(self, pixels: np.ndarray) -> np.ndarray:
        digest = hashlib.sha256(pixels[:, ::7, ::7].tobytes()).digest()[:8]
        rng = random.Random(f"{self.seed}:{self.epoch}:{digest.hex()}")
        if not self.training or rng.random() >= self.noise_prob:
            return pixels
        turned = np.rot90(pixels, k=rng.randrange(4), axes=(1, 2))
        return np.ascontiguousarray(turned[:, :, ::-1] if rng.random() < 0.5 else turned)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = [
            list(f["input_ids"]) + [self.pad_id] * (width - len(f["input_ids"])) for f in features
        ]
        mask = [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
        pixels = np.stack([self._augment(np.asarray(f["pixel_values"])) for f in features])
        return {
            "pixel_values": torch.from_numpy(pixels),
            "input_ids": torch.tensor(ids),
            "attention_mask": torch.tensor(mask),
            "labels": torch.tensor([int(f["labels"]) for f in features]),
        }


plugins.register_task(
    "clip",
    TaskSpec(
        None,
        _load,
        _encode,
        ClipCollator,
        classification_metrics,
        labelled=True,
        heads=("classifier",),
        preprocess=argmax_logits,
        adversarial=False,  # FGM/PGD perturb token embeddings; a CLIP classifier reads pixels
        token_flops=False,  # the image tower's compute is per image, not per text token
        suite_kind="images",
        eval_variants=_variants,
        export=_export,
    ),
)
