"""The ``logmel`` feature space of audio records (``mix.features.space: logmel``): how far the
synthetic clips are from the real ones, for the mix's distance and injection schedule.

Each record's first clip becomes its log-mel map (``audio.features``: 64 bands, standardised
per clip, so a microphone's gain does not count) summarised as the mean and the standard
deviation of every band over time: the spectral shape and how it moves, 128 numbers, no
model. The image spaces' reader resolves the paths (relative ones inside the run folder,
absolute ones are real data); only the reading differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import Self

from synthtune import plugins
from synthtune.distribution.features import ImageFeatures


def band_statistics(paths: Sequence[Path]) -> np.ndarray:
    """(n, 2 x bands) float32: per-band mean and std over time of each clip's log-mel map."""
    from synthtune.audio.features import LogMelConfig, clip_features

    cfg = LogMelConfig()
    rows = []
    for path in paths:
        bands = clip_features(path, cfg)[0]  # (n_mels, frames)
        rows.append(np.concatenate([bands.mean(axis=1), bands.std(axis=1)]))
    if not rows:
        return np.zeros((0, 2 * cfg.n_mels), dtype=np.float32)
    return np.stack(rows).astype(np.float32)


class LogMelFeatures(ImageFeatures):
    """Band statistics of each record's first clip (no model, offline)."""

    name = "logmel"

    @classmethod
    def from_config(cls, cfg: Any, seed: int, media_root: Path | None = None) -> Self:
        return cls(lambda _: np.zeros(0), media_root)

    def transform(self, paths: Sequence[Path]) -> np.ndarray:
        return band_statistics(paths)


plugins.register_feature_space("logmel", LogMelFeatures)
