"""Procedural defect images: a defect painted on a real texture, with exact labels.

Every defect class is a painter (registered in :data:`DEFECTS`) that returns the painted
image and the defect's coverage ``alpha`` in [0, 1] (1-pixel anti-aliased edges). The label is
derived from that same ``alpha``, never estimated afterwards: the mask is ``alpha >= 0.5`` and
the box is the mask's tight bounding box (``x0 <= x < x1``), so the box holds every mask pixel
by construction, and every mask pixel is changed by at least half the defect's contrast.

Contrast: ``intensity`` in [0, 1] maps to 0.35 .. 0.95 of the possible change of a pixel
(darkening towards black, lightening towards white, or blending towards a stain colour), so
even the faintest defect stays visible on the contrast-stretched textures of ``textures``.

Determinism: an image depends only on its :class:`DefectSpec` and the generator passed in;
:func:`generate_dataset` seeds sample ``i`` from ``(seed, i)`` alone, so any subset, order or
number of worker processes gives the same images.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from PIL import Image

from synthtune.records import Box
from synthtune.registry import Registry
from synthtune.vision.textures import TEXTURES, background

NO_DEFECT = "none"
CAPTION = "a photo of a {defect} on {material}"
CLEAN_CAPTION = "a photo of {material} without defects"


# Words a slot may use instead of a number, so captions can say "a large vertical scratch".
NAMED_VALUES: dict[str, dict[str, float]] = {
    "size": {"tiny": 0.08, "small": 0.15, "medium": 0.25, "large": 0.4, "huge": 0.6},
    "orientation": {"horizontal": 0.0, "diagonal": 45.0, "vertical": 90.0, "antidiagonal": 135.0},
    "intensity": {"faint": 0.15, "subtle": 0.35, "moderate": 0.6, "strong": 0.9},
    "lighting": {"dark": 0.6, "dim": 0.8, "normal": 1.0, "bright": 1.2, "harsh": 1.4},
}


@dataclass(frozen=True)
class DefectSpec:
    """What to draw. ``None`` fields are drawn from the generator (ranges in brackets).

    ``size``: the defect's extent as a share of the shorter image side [0.1, 0.35];
    ``orientation``: degrees [0, 180); ``intensity``: 0 faint .. 1 strong [0.3, 1];
    ``lighting``: global gain of the background [0.7, 1.3]; ``x``, ``y``: the defect's centre
    as shares of width and height [kept inside the image].
    """

    defect: str
    material: str
    width: int = 128
    height: int = 128
    size: float | None = None
    orientation: float | None = None
    intensity: float | None = None
    lighting: float | None = None
    x: float | None = None
    y: float | None = None

    def __post_init__(self) -> None:
        DEFECTS.get(self.defect)  # unknown names fail here, listing the known ones
        TEXTURES.get(self.material)
        if min(self.width, self.height) < 16:
            raise ValueError(f"image size {self.width}x{self.height}: at least 16x16")
        checks = {
            "size": (self.size, 0.01, 1.0),
            "intensity": (self.intensity, 0.0, 1.0),
            "lighting": (self.lighting, 0.1, 3.0),
            "x": (self.x, 0.0, 1.0),
            "y": (self.y, 0.0, 1.0),
        }
        for name, (value, low, high) in checks.items():
            if value is not None and not low <= value <= high:
                raise ValueError(f"defect {name} {value} is outside [{low}, {high}]")

    @classmethod
    def from_slots(cls, slots: dict[str, Any], width: int = 128, height: int = 128) -> DefectSpec:
        """A spec from recipe slot values: the keys named like fields are used, the others
        (caption words, say) are ignored. Numbers may come as strings, or as the words of
        :data:`NAMED_VALUES` ("large", "vertical", "dim" ...) so one slot can feed both the
        caption and the drawing."""
        known = {f.name for f in fields(cls)} - {"width", "height"}
        values: dict[str, Any] = {k: v for k, v in slots.items() if k in known}
        for key in set(values) - {"defect", "material"}:
            value = values[key]
            named = NAMED_VALUES.get(key, {})
            if isinstance(value, str) and value.strip().lower() in named:
                values[key] = named[value.strip().lower()]
            else:
                try:
                    values[key] = float(value)
                except ValueError:
                    words = ", ".join(named) or "none"
                    raise ValueError(f"slot {key}={value!r}: a number or one of {words}") from None
        missing = {"defect", "material"} - set(values)
        if missing:
            raise ValueError(f"slots need {' and '.join(sorted(missing))} (got {sorted(slots)})")
        return cls(width=width, height=height, **values)

    def resolved(self, rng: np.random.Generator) -> DefectSpec:
        """Every ``None`` drawn from ``rng`` (always in the same order, so a spec that fixes
        some fields still draws the same values for the others)."""
        draws = {
            "size": rng.uniform(0.1, 0.35),
            "orientation": rng.uniform(0, 180),
            "intensity": rng.uniform(0.3, 1.0),
            "lighting": rng.uniform(0.7, 1.3),
        }
        filled = {k: v if getattr(self, k) is None else getattr(self, k) for k, v in draws.items()}
        extent = filled["size"] * min(self.width, self.height)
        # the centre keeps most of the defect inside the image (labels are exact either way)
        margin_x = min(0.45, (extent / 2 + 2) / self.width)
        margin_y = min(0.45, (extent / 2 + 2) / self.height)
        x = rng.uniform(margin_x, 1 - margin_x)
        y = rng.uniform(margin_y, 1 - margin_y)
        return replace(
            self,
            size=filled["size"],
            orientation=filled["orientation"],
            intensity=filled["intensity"],
            lighting=filled["lighting"],
            x=x if self.x is None else self.x,
            y=y if self.y is None else self.y,
        )


@dataclass(frozen=True)
class DefectLabel:
    """The exact label of a rendered image: class, material, box (None: no defect), the
    boolean mask (H, W) and the fully resolved spec that drew it."""

    defect: str
    material: str
    box: Box | None
    mask: np.ndarray
    spec: DefectSpec

    @property
    def caption(self) -> str:
        return caption_for(self.defect, self.material)


def caption_for(defect: str, material: str) -> str:
    """The default caption, also the zero-shot class prompt: "a photo of a crack on brick"."""
    if defect == NO_DEFECT:
        return CLEAN_CAPTION.format(material=material)
    return CAPTION.format(defect=defect, material=material)


# --------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Geometry:
    """Where a painter draws, in pixels: centre, extent (longest dimension), angle (rad)."""

    cx: float
    cy: float
    extent: float
    angle: float
    height: int
    width: int

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre offsets from the centre, rotated into the defect's frame (u along)."""
        ys, xs = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)
        dx, dy = xs - self.cx, ys - self.cy
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        return dx * cos + dy * sin, -dx * sin + dy * cos


def stroke_alpha(geo: Geometry, points: np.ndarray, width: float) -> np.ndarray:
    """Coverage of a polyline of the given width (points in pixels, shape (k, 2) as x, y)."""
    ys, xs = np.mgrid[0 : geo.height, 0 : geo.width].astype(np.float32)
    dist = np.full((geo.height, geo.width), np.inf, dtype=np.float32)
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        vx, vy = x1 - x0, y1 - y0
        t = np.clip(((xs - x0) * vx + (ys - y0) * vy) / max(vx * vx + vy * vy, 1e-9), 0, 1)
        dist = np.minimum(dist, np.hypot(xs - (x0 + t * vx), ys - (y0 + t * vy)))
    return np.clip(width / 2 + 0.5 - dist, 0, 1)


def blob_alpha(
    geo: Geometry,
    radius: float,
    aspect: float,
    wobble: float,
    rng: np.random.Generator,
    softness: float = 1.0,
) -> np.ndarray:
    """Coverage of an irregular blob: an ellipse (``aspect`` = long/short axis) whose radius
    varies with the polar angle by low harmonics of relative size ``wobble``; edges fade over
    ``softness`` pixels."""
    u, v = geo.grid()
    v = v * aspect
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    bound = np.ones_like(theta)
    for k in (2, 3, 5):
        bound += wobble * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    edge = radius * np.clip(bound, 0.4, None)
    return np.clip((edge - r) / softness + 0.5, 0, 1)


def _contrast(intensity: float) -> float:
    return 0.35 + 0.6 * intensity


def darken(image: np.ndarray, alpha: np.ndarray, strength: np.ndarray | float) -> np.ndarray:
    return image * (1 - (alpha * strength)[:, :, None])


def lighten(image: np.ndarray, alpha: np.ndarray, strength: float) -> np.ndarray:
    return image + (1 - image) * (alpha * strength)[:, :, None]


# --------------------------------------------------------------------------- painters
Painter = Callable[
    [np.ndarray, Geometry, float, np.random.Generator], tuple[np.ndarray, np.ndarray]
]
DEFECTS: Registry[Painter] = Registry("defect")


@DEFECTS.decorator(NO_DEFECT)
def _none(
    image: np.ndarray, geo: Geometry, intensity: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    return image, np.zeros(image.shape[:2], dtype=np.float32)


@DEFECTS.decorator("scratch")
def _scratch(
    image: np.ndarray, geo: Geometry, intensity: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A thin, slightly bowed bright line (scratches expose lighter material)."""
    t = np.linspace(-0.5, 0.5, 9)
    bow = rng.uniform(-0.08, 0.08) * geo.extent * np.sin(np.pi * (t + 0.5))
    along, across = t * geo.extent, bow
    cos, sin = math.cos(geo.angle), math.sin(geo.angle)
    points = np.stack([geo.cx + along * cos - across * sin, geo.cy + along * sin + across * cos], 1)
    alpha = stroke_alpha(geo, points, rng.uniform(1.2, 2.6))
    return lighten(image, alpha, _contrast(intensity)), alpha


@DEFECTS.decorator("crack")
def _crack(
    image: np.ndarray, geo: Geometry, intensity: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A jagged dark random walk along the orientation, with one or two short branches."""
    steps = 10
    step = geo.extent / steps
    heading = geo.angle + np.cumsum(rng.uniform(-0.45, 0.45, steps))
    start = np.array([geo.cx, geo.cy]) - geo.extent / 2 * np.array(
        [math.cos(geo.angle), math.sin(geo.angle)]
    )
    moves = step * np.stack([np.cos(heading), np.sin(heading)], 1)
    trunk = np.vstack([start, start + np.cumsum(moves, 0)])
    alpha = stroke_alpha(geo, trunk, rng.uniform(1.2, 2.2))
    for _ in range(int(rng.integers(1, 3))):
        root = trunk[int(rng.integers(2, steps - 1))]
        turn = heading[0] + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1)
        branch_heading = turn + np.cumsum(rng.uniform(-0.4, 0.4, 4))
        branch_moves = 0.7 * step * np.stack([np.cos(branch_heading), np.sin(branch_heading)], 1)
        branch = np.vstack([root, root + np.cumsum(branch_moves, 0)])
        alpha = np.maximum(alpha, stroke_alpha(geo, branch, rng.uniform(1.0, 1.6)))
    return darken(image, alpha, _contrast(intensity)), alpha


@DEFECTS.decorator("spot")
def _spot(
    image: np.ndarray, geo: Geometry, intensity: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A small, nearly round dark spot (a fraction of the extent)."""
    radius = max(2.0, geo.extent * rng.uniform(0.15, 0.25))
    alpha = blob_alpha(geo, radius, rng.uniform(1.0, 1.4), 0.08, rng)
    return darken(image, alpha, _contrast(intensity)), alpha


@DEFECTS.decorator("hole")
def _hole(
    image: np.ndarray, geo: Geometry, intensity: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A round hole: near-black core, a darker shadow falling to one side."""
    radius = max(2.5, geo.extent * rng.uniform(0.25, 0.4))
    alpha = blob_alpha(geo, radius, rng.uniform(1.0, 1.2), 0.04, rng)
    u, _ = geo.grid()
    shade = 0.75 + 0.2 * np.clip(u / radius, -1, 1)  # the far wall catches some light
    return darken(image, alpha, np.clip(shade * (0.7 + 0.3 * intensity), 0, 0.97)), alpha


@DEFECTS.decorator("stain")
def _stain(
    image: np.ndarray, geo: Geometry, intensity: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """An irregular, soft-edged blotch of a rust, oil or water colour."""
    radius = max(3.0, geo.extent / 2)
    alpha = blob_alpha(geo, radius, rng.uniform(1.0, 1.8), 0.25, rng, softness=radius * 0.25)
    palette = np.array([[0.55, 0.3, 0.1], [0.2, 0.18, 0.12], [0.75, 0.65, 0.3]], np.float32)
    colour = palette[int(rng.integers(0, len(palette)))]
    weight = (alpha * _contrast(intensity))[:, :, None]
    return image * (1 - weight) + colour * weight, alpha


@DEFECTS.decorator("dent")
def _dent(
    image: np.ndarray, geo: Geometry, intensity: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """An elongated shallow depression: shaded darker towards one side (light comes from
    the other), with no sharp edge."""
    radius = max(3.0, geo.extent / 2)
    alpha = blob_alpha(geo, radius, rng.uniform(1.3, 2.0), 0.05, rng, softness=2.0)
    u, _ = geo.grid()
    side = np.clip(u / radius, -1, 1) * rng.choice([-1, 1])
    strength = _contrast(intensity) * (0.55 + 0.45 * side)
    return darken(image, alpha, np.clip(strength, 0.5 * _contrast(intensity), 0.95)), alpha


# --------------------------------------------------------------------------- render
def box_of(mask: np.ndarray, label: str) -> Box | None:
    """Tight box of a boolean mask (``x0 <= x < x1``); None when the mask is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return Box(
        label=label, x0=int(cols[0]), y0=int(rows[0]), x1=int(cols[-1]) + 1, y1=int(rows[-1]) + 1
    )


def render_defect(spec: DefectSpec, rng: np.random.Generator) -> tuple[Image.Image, DefectLabel]:
    """Draw ``spec`` (its ``None`` fields drawn from ``rng``): the RGB image and its label."""
    spec = spec.resolved(rng)
    assert spec.size is not None and spec.orientation is not None  # resolved
    assert spec.intensity is not None and spec.lighting is not None
    assert spec.x is not None and spec.y is not None
    base = background(spec.material, (spec.width, spec.height), spec.lighting, rng)
    geo = Geometry(
        cx=spec.x * spec.width,
        cy=spec.y * spec.height,
        extent=max(4.0, spec.size * min(spec.width, spec.height)),
        angle=math.radians(spec.orientation),
        height=spec.height,
        width=spec.width,
    )
    painted, alpha = DEFECTS.get(spec.defect)(base, geo, spec.intensity, rng)
    mask = alpha >= 0.5
    if spec.defect != NO_DEFECT and not mask.any():
        raise ValueError(f"{spec.defect} at ({spec.x:.2f}, {spec.y:.2f}) lies outside the image")
    pixels = (np.clip(painted, 0, 1) * 255).round().astype(np.uint8)
    label = DefectLabel(spec.defect, spec.material, box_of(mask, spec.defect), mask, spec)
    return Image.fromarray(pixels, mode="RGB"), label


def mask_image(mask: np.ndarray) -> Image.Image:
    """A boolean mask as a 1-bit PNG-ready image (white = defect)."""
    return Image.fromarray(mask.astype(np.uint8) * 255, mode="L").convert("1")


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding with fixed settings (the same image always gives the same bytes)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


# --------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class DefectSample:
    image: Image.Image
    label: DefectLabel
    caption: str


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index``: depends on ``(seed, index)`` only."""
    return np.random.default_rng([seed, index])


def _render_one(args: tuple[int, int, Sequence[str], Sequence[str], int, int]) -> DefectSample:
    index, seed, classes, materials, width, height = args
    rng = sample_rng(seed, index)
    defect = classes[index % len(classes)]  # balanced classes, in a fixed cycle
    material = materials[int(rng.integers(0, len(materials)))]
    image, label = render_defect(DefectSpec(defect, material, width, height), rng)
    return DefectSample(image, label, label.caption)


def generate_dataset(
    n: int,
    classes: Sequence[str] = ("scratch", "spot", "crack", "hole", "stain", "dent"),
    materials: Sequence[str] = ("brick", "grass", "gravel", "metal"),
    seed: int = 0,
    size: int | tuple[int, int] = 128,
    workers: int = 1,
    start: int = 0,
) -> list[DefectSample]:
    """Samples ``start .. start+n-1``: class ``classes[i % len(classes)]`` (balanced), a
    random material, everything else random; each sample from ``(seed, i)`` alone, so two
    calls with different ``start`` never overlap and ``workers`` never changes the result.
    ``workers > 1`` renders in that many processes (see bench/procedural_images.py)."""
    width, height = (size, size) if isinstance(size, int) else size
    jobs = [
        (i, seed, tuple(classes), tuple(materials), width, height) for i in range(start, start + n)
    ]
    if workers <= 1:
        return [_render_one(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_render_one, jobs, chunksize=max(1, n // (workers * 4))))
