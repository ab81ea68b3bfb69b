"""Image backends: a batch of captions (with their slots) -> images with labels.

The text backends (``llm.backends``) turn chat requests into text; an image backend's reply
is an image, so it has its own contract and registry, chosen by the same
``generate.backend.type`` key; the ``image`` generation strategy drives it. Like a text
backend it returns a failure as a result with ``error`` set, never raises for one request,
and depends only on the request (its ``seed`` included), so a resumed run redraws the same
image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

from synthtune import plugins
from synthtune.config.generate import ProceduralBackendConfig
from synthtune.errors import SynthtuneError
from synthtune.records import Box
from synthtune.vision.procedural import DefectSpec, render_defect


@dataclass(frozen=True)
class ImageRequest:
    key: str
    caption: str  # the rendered template prompt
    slots: dict[str, Any]
    seed: int  # from (recipe seed, item index): the image depends on nothing else


@dataclass(frozen=True)
class ImageResult:
    image: Image.Image | None
    boxes: tuple[Box, ...] = ()
    mask: np.ndarray | None = None  # boolean (H, W): the labelled pixels
    label: str | None = None  # the class actually drawn, when the backend knows it
    error: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)


class ImageBackend(Protocol):
    name: str
    model: str

    def render(self, requests: list[ImageRequest]) -> list[ImageResult]: ...


# A factory takes the backend's config section and a model resolver (name -> local path).
ImageBackendFactory = Callable[[Any, Callable[[str], str]], ImageBackend]
IMAGE_BACKENDS = plugins.IMAGE_BACKENDS  # name -> ImageBackendFactory


def create_image_backend(config: Any, resolve_model: Callable[[str], str]) -> ImageBackend:
    return IMAGE_BACKENDS.get(config.type)(config, resolve_model)


class ProceduralBackend:
    """Defects on textures (``vision.procedural``): slots give the spec, the rest is drawn
    from the request's seed. A slot value the painter refuses (an unknown defect or material,
    a size out of range) fails that request with the reason."""

    name = "procedural"
    model = "procedural"

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height

    def render(self, requests: list[ImageRequest]) -> list[ImageResult]:
        return [self._one(r) for r in requests]

    def _one(self, request: ImageRequest) -> ImageResult:
        try:
            spec = DefectSpec.from_slots(request.slots, self.width, self.height)
            image, label = render_defect(spec, np.random.default_rng(request.seed))
        except (ValueError, TypeError, SynthtuneError) as exc:  # an unknown defect, a bad size
            return ImageResult(None, error=f"procedural: {exc}")
        resolved = label.spec
        lineage = {
            "drawn": {
                "size": round(float(resolved.size or 0), 4),
                "orientation": round(float(resolved.orientation or 0), 2),
                "intensity": round(float(resolved.intensity or 0), 4),
                "lighting": round(float(resolved.lighting or 0), 4),
                "x": round(float(resolved.x or 0), 4),
                "y": round(float(resolved.y or 0), 4),
            }
        }
        boxes = (label.box,) if label.box is not None else ()
        mask = label.mask if label.box is not None else None
        return ImageResult(image, boxes, mask, label.defect, lineage=lineage)


def _procedural(config: Any, resolve_model: Callable[[str], str]) -> ProceduralBackend:
    return ProceduralBackend(config.width, config.height)


plugins.register_image_backend("procedural", _procedural, config=ProceduralBackendConfig)


# Importing the module registers it; it imports diffusers only when a pipeline is built.
from synthtune.vision import diffusion as _diffusion  # noqa: E402, F401  # isort: skip
