"""Blank and exposure checks: cheap, explainable reasons to reject an image.

Measured on the grey image scaled to [0, 1]. Blank: almost no variation (standard deviation
below ``min_std``: a flat colour, a failed render, a black diffusion output from a safety
checker). Over-/under-exposed: more than ``max_clipped`` of the pixels at the white or black
end (>= 0.98 or <= 0.02), where the sensor (or generator) lost the detail a defect needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

WHITE, BLACK = 0.98, 0.02


@dataclass(frozen=True)
class Exposure:
    std: float
    white: float  # share of pixels at the white end
    black: float  # share at the black end

    def as_dict(self) -> dict[str, float]:
        return {
            "std": round(self.std, 4),
            "white": round(self.white, 4),
            "black": round(self.black, 4),
        }


def measure_exposure(image: Image.Image) -> Exposure:
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    return Exposure(float(grey.std()), float((grey >= WHITE).mean()), float((grey <= BLACK).mean()))


def exposure_reasons(found: Exposure, min_std: float, max_clipped: float) -> list[str]:
    """Reasons (empty: fine), each with the measured value, in the quality-tier format."""
    reasons = []
    if found.std < min_std:
        reasons.append(f"image: blank (grey std {found.std:.3f} < {min_std:g})")
    if found.white > max_clipped:
        reasons.append(f"image: over-exposed ({found.white:.0%} of pixels white)")
    if found.black > max_clipped:
        reasons.append(f"image: under-exposed ({found.black:.0%} of pixels black)")
    return reasons
