"""The ``audio`` task, registered through the public plugin API like a third party's.

Light on purpose (numpy only): the recipe check asks the registry whether the task is
labelled without importing torch; the hooks import :mod:`synthtune.audio.model`,
:mod:`synthtune.audio.suite` and :mod:`synthtune.audio.export` when called.
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

# SpecAugment (Park et al., 2019) on a 64x64 map: one frequency and one time mask of up to
# an eighth of the axis each, and a circular time shift of up to a quarter (a stationary
# machine sound has no start; a clip cut elsewhere is the same sound)
MAX_MASK_SHARE, MAX_SHIFT_SHARE = 8, 4


def _load(path: str, setup: TaskSetup) -> tuple[Any, Any]:
    from synthtune.audio.model import load_audio_task

    return load_audio_task(path, setup)


def _encode(inputs: Any, record: Record, max_length: int, ids: dict[str, int]) -> dict[str, Any]:
    from synthtune.audio.model import encode_audio

    return encode_audio(inputs, record, max_length, ids)


def _variants(ctx: Any, labels: list[str]) -> tuple[list[Any], str]:
    from synthtune.audio.suite import audio_variants

    return audio_variants(ctx, labels), "ONNX int8: export/audio.json"


def _export(ctx: Any, test: list[Record], train: dict[str, Any]) -> dict[str, Any]:
    from synthtune.audio.export import export_audio

    return export_audio(ctx, test)


def augment_map(features: np.ndarray, rng: random.Random) -> np.ndarray:
    """A (1, n_mels, frames) standardised log-mel map, shifted in time and with one band
    of frequencies and one span of frames set to the clip's mean (0). A gain change is not
    among them: the maps are standardised per clip, so it would change nothing."""
    _, mels, frames = features.shape
    out = np.roll(features, rng.randint(-frames // MAX_SHIFT_SHARE, frames // MAX_SHIFT_SHARE), 2)
    for axis, size in ((1, mels), (2, frames)):
        width = rng.randint(0, size // MAX_MASK_SHARE)
        start = rng.randint(0, size - width)
        index = [slice(None)] * 3
        index[axis] = slice(start, start + width)
        out[tuple(index)] = 0.0
    return out


class AudioCollator(NoisyCollator):
    """Stacks log-mel maps and pads captions. In training, with probability ``noise_prob``
    (``train.augment.noise_prob``) a map gets SpecAugment-style masks and a time shift
    (:func:`augment_map`). As for text noise, the draw depends only on (seed, epoch, the
    clip), so a resumed run sees the same clips. Captions get no token noise."""

    def __init__(self, inputs: Any, noise_prob: float, token_rate: float, seed: int) -> None:
        self.pad_id = inputs.tokenizer.pad_token_id
        self.noise_prob = noise_prob
        self.seed = seed
        self.epoch = 0
        self.training = True

    def _augment(self, features: np.ndarray) -> np.ndarray:
        digest = hashlib.sha256(features[:, ::5, ::5].tobytes()).digest()[:8]
        rng = random.Random(f"{self.seed}:{self.epoch}:{digest.hex()}")
        if not self.training or rng.random() >= self.noise_prob:
            return features
        return augment_map(features, rng)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = [
            list(f["input_ids"]) + [self.pad_id] * (width - len(f["input_ids"])) for f in features
        ]
        mask = [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
        maps = np.stack([self._augment(np.asarray(f["input_features"])) for f in features])
        return {
            "input_features": torch.from_numpy(maps),
            "input_ids": torch.tensor(ids),
            "attention_mask": torch.tensor(mask),
            "labels": torch.tensor([int(f["labels"]) for f in features]),
        }


plugins.register_task(
    "audio",
    TaskSpec(
        None,
        _load,
        _encode,
        AudioCollator,
        classification_metrics,
        labelled=True,
        heads=("classifier", "audio_encoder", "joint"),
        preprocess=argmax_logits,
        adversarial=False,  # FGM/PGD perturb token embeddings; an audio classifier reads spectra
        token_flops=False,  # the audio tower's compute is per clip, not per text token
        suite_kind="audio",
        eval_variants=_variants,
        export=_export,
    ),
)
