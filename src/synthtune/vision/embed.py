"""Image (and caption) embeddings: a CLIP checkpoint, or pixel statistics with no model.

``ClipEmbedder`` loads any transformers ``CLIPModel`` folder or id (the base model, or the one
the train stage fine-tuned) with its tokenizer and the slow, PIL-based ``CLIPImageProcessor``
(the fast one needs torchvision, which does not install beside torch here). Vectors are unit
length, so a dot product is the cosine similarity CLIP was trained on.

``pixel_statistics`` is the model-free fallback: colour moments, grey-level and gradient
histograms and an 8x8 grey thumbnail. It sees brightness, colour, texture energy and layout,
not semantics; good enough to tell two image sets apart, not to read a caption.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image
from typing_extensions import Self

from synthtune import plugins
from synthtune.distribution.features import ImageFeatures
from synthtune.registry import Registry


def pixel_statistics(images: Sequence[Image.Image]) -> np.ndarray:
    """(n, 94) float32: RGB mean and std (6), 16-bin grey histogram, 8-bin gradient-magnitude
    histogram, 8x8 grey thumbnail (64). Every image is first resized to 64x64."""
    rows = []
    for image in images:
        rgb = np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.float32) / 255.0
        grey = rgb.mean(axis=2)
        gy, gx = np.gradient(grey)
        magnitude = np.hypot(gx, gy)
        rows.append(
            np.concatenate(
                [
                    rgb.mean(axis=(0, 1)),
                    rgb.std(axis=(0, 1)),
                    np.histogram(grey, bins=16, range=(0, 1))[0] / grey.size,
                    np.histogram(magnitude, bins=8, range=(0, 0.5))[0] / grey.size,
                    grey.reshape(8, 8, 8, 8).mean(axis=(1, 3)).ravel(),
                ]
            )
        )
    if not rows:
        return np.zeros((0, 94), dtype=np.float32)
    return np.stack(rows).astype(np.float32)


class ClipEmbedder:
    """Unit-length CLIP image and text embeddings on CPU or the first GPU."""

    def __init__(self, model: str, batch_size: int = 32, device: str = "auto") -> None:
        import torch
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.batch_size = batch_size
        self.model = CLIPModel.from_pretrained(model).eval()
        self.model.to(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.processor = CLIPImageProcessor.from_pretrained(model)

    def images(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") for im in images[start : start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                features = self.model.get_image_features(pixel_values=pixels.to(self.device))
            out.append(_unit(_tensor(features)))
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.model.config.text_config.max_position_embeddings,
                return_tensors="pt",
            ).to(self.device)
            with torch.no_grad():
                features = self.model.get_text_features(
                    input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
                )
            out.append(_unit(_tensor(features)))
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)


def _tensor(features: Any) -> np.ndarray:
    """transformers 5 may return a model output instead of a tensor; take the embeddings."""
    tensor = getattr(features, "pooler_output", features)
    return np.asarray(tensor.float().cpu().numpy(), dtype=np.float32)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)


@lru_cache(maxsize=4)
def clip_embedder(model: str, batch_size: int = 32) -> ClipEmbedder:
    """One loaded model per (path, batch size) per process: quality and mix share it."""
    return ClipEmbedder(model, batch_size)


class CaptionScorer(Protocol):
    """Agreement of each image with its caption; higher is better."""

    def score(self, images: Sequence[Image.Image], captions: Sequence[str]) -> np.ndarray: ...


class ClipCaptionScorer:
    """CLIP cosine similarity of image and caption (the CLIPScore of Hessel et al. 2021,
    without its 2.5 rescaling): about 0.2-0.35 for matching pairs with OpenAI's CLIP."""

    def __init__(self, model: str, batch_size: int = 32) -> None:
        self.embedder = clip_embedder(model, batch_size)

    def score(self, images: Sequence[Image.Image], captions: Sequence[str]) -> np.ndarray:
        if not images:
            return np.zeros(0, dtype=np.float32)
        image_vectors = self.embedder.images(images)
        text_vectors = self.embedder.texts(captions)
        return np.asarray((image_vectors * text_vectors).sum(axis=1), dtype=np.float32)


CaptionScorerFactory = Callable[[str, int], CaptionScorer]
CAPTION_SCORERS: Registry[CaptionScorerFactory] = Registry("caption scorer")
CAPTION_SCORERS.register("clip", ClipCaptionScorer)


# Feature spaces of image records for mix.features.space (distribution distances).
class ClipImageFeatures(ImageFeatures):
    """Unit-length image embeddings of a CLIP checkpoint (``mix.features.model``: an id or
    folder, e.g. the fine-tuned model)."""

    name = "clip"
    needs_model_path = True  # mix resolves an offline name (local-tiny-clip) to its folder

    @classmethod
    def from_config(cls, cfg: Any, seed: int, media_root: Path | None = None) -> Self:
        return cls(clip_embedder(cfg.model).images, media_root)


class PixelFeatures(ImageFeatures):
    """Pixel statistics (``vision.embed.pixel_statistics``): no model, offline, fast."""

    name = "pixels"

    @classmethod
    def from_config(cls, cfg: Any, seed: int, media_root: Path | None = None) -> Self:
        return cls(pixel_statistics, media_root)


plugins.register_feature_space("clip", ClipImageFeatures)
plugins.register_feature_space("pixels", PixelFeatures)
