"""Background materials: real photographed textures shipped with scikit-image, plus one
procedural one (brushed metal), as float RGB arrays in [0, 1].

scikit-image 0.26 ships ``brick``, ``grass`` and ``gravel`` (512 x 512 grey, Brodatz-style
photographs) and the ``moon`` surface offline; ``rough_wall`` is gone from recent releases
(it needs a download), so it is not offered. Each grey texture gets a material tint so a
classifier cannot tell materials by grey level alone, and its grey range is stretched to
[0.15, 0.85] so that darkening and lightening defects always have room to show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from synthtune.registry import Registry


@dataclass(frozen=True)
class Texture:
    """A grey texture source and the RGB tint that turns it into a material."""

    load: Callable[[], np.ndarray]  # grey float array in [0, 1], any size >= 128
    tint: tuple[float, float, float]


TEXTURES: Registry[Texture] = Registry("texture")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data  # lazy: scikit-image is the `vision` extra

        image = np.asarray(getattr(data, name)(), dtype=np.float32)
        return image / 255.0

    return load


def _brushed_metal() -> np.ndarray:
    """Brushed metal: noise smeared along rows (fixed seed: a material, not a sample)."""
    rng = np.random.default_rng(1234)
    noise = rng.normal(0.5, 0.12, (512, 552)).astype(np.float32)
    kernel = np.ones(41, dtype=np.float32) / 41
    streaks = np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="valid"), 1, noise)
    return np.clip(streaks[:, :512] * 3 - 1, 0, 1)  # "valid": no dark borders


TEXTURES.register("brick", Texture(_skimage("brick"), (1.0, 0.72, 0.6)))
TEXTURES.register("grass", Texture(_skimage("grass"), (0.7, 1.0, 0.6)))
TEXTURES.register("gravel", Texture(_skimage("gravel"), (0.95, 0.92, 0.85)))
TEXTURES.register("moon", Texture(_skimage("moon"), (0.9, 0.9, 1.0)))
TEXTURES.register("metal", Texture(_brushed_metal, (0.85, 0.9, 0.95)))


@cache
def grey_texture(material: str) -> np.ndarray:
    """The material's grey texture, contrast-stretched to [0.15, 0.85] (read-only)."""
    grey = TEXTURES.get(material).load()
    low, high = np.percentile(grey, [1, 99])
    stretched = np.clip((grey - low) / max(float(high - low), 1e-6), 0, 1) * 0.7 + 0.15
    stretched = stretched.astype(np.float32)
    stretched.setflags(write=False)
    return stretched


def background(
    material: str, size: tuple[int, int], lighting: float, rng: np.random.Generator
) -> np.ndarray:
    """A random crop of the material (random scale, quarter-turn and flip), resized to
    ``size`` = (width, height), tinted, lit by ``lighting`` (global gain) times a random
    linear light gradient of +-15 %. Returns float32 RGB (H, W, 3) in [0.02, 0.98]."""
    from PIL import Image

    width, height = size
    grey = grey_texture(material)
    side = int(min(grey.shape) * rng.uniform(0.35, 1.0))
    top = int(rng.integers(0, grey.shape[0] - side + 1))
    left = int(rng.integers(0, grey.shape[1] - side + 1))
    crop = np.rot90(grey[top : top + side, left : left + side], int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    resized = Image.fromarray(np.ascontiguousarray(crop), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    grey_out = np.asarray(resized, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(angle) * (xs / width - 0.5) + np.sin(angle) * (ys / height - 0.5)) * 0.3
    lit = grey_out * lighting * (1.0 + ramp)
    rgb = lit[:, :, None] * np.asarray(TEXTURES.get(material).tint, dtype=np.float32)
    return np.clip(rgb, 0.02, 0.98).astype(np.float32)
