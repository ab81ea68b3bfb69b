"""image: each item's rendered prompt is a caption, an image backend draws the image.

The record is an ordinary chat payload plus media: the caption is the user turn (a system
turn and an assistant reply are added when the template has them, e.g. for a vision-language
SFT export), the label is the template's ``label`` or else the class the backend drew, and
``media`` holds the image (path, size, boxes, mask). Image files are named by the hash of
their PNG bytes under ``generate/images/``, so a redrawn image after a resume lands on the
same file, and two identical images share one.
"""

from __future__ import annotations

import hashlib
from typing import Any

from synthtune import plugins
from synthtune.config import Recipe
from synthtune.config.generate import ImageStrategy
from synthtune.generate.strategies.base import (
    Output,
    WorkItem,
    plan_template_items,
)
from synthtune.llm.backends.base import GenerationResult
from synthtune.llm.engine import GenerationEngine
from synthtune.records import Record
from synthtune.templates import request_rng

IMAGE_DIR = "generate/images"


def image_seed(seed: int, index: int) -> int:
    """The seed of item ``index``'s image: ``(recipe seed, index)`` only."""
    return request_rng(seed, index, "image").getrandbits(63)


class ImageSynthesis:
    name = "image"

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self._backend: Any = None

    def plan(self) -> list[WorkItem]:
        return plan_template_items(self.recipe, self.recipe.generation.n)

    def restore(self, records: list[Record]) -> None:
        return None

    def estimate(self, item: WorkItem) -> tuple[int, int]:
        return 1, 0  # one image, no prompt tokens billed

    def _backend_for(self, engine: GenerationEngine) -> Any:
        if self._backend is None:
            # imported here: text-only runs never load the image stack
            from synthtune.vision.image_backends import create_image_backend

            self._backend = create_image_backend(
                self.recipe.generation.backend, engine.resolve_model
            )
        return self._backend

    def run(self, items: list[WorkItem], engine: GenerationEngine) -> list[list[Output]]:
        from synthtune.vision.image_backends import ImageRequest

        requests = [
            ImageRequest(
                it.key, str(it.render()["prompt"]), it.slots, image_seed(self.recipe.seed, it.index)
            )
            for it in items
        ]
        results = self._backend_for(engine).render(requests)
        engine.account(
            [
                GenerationResult(text=None, error=r.error or (None if r.image else "no image"))
                for r in results
            ]
        )
        return [
            [self._output(item, request.seed, result)]
            for item, request, result in zip(items, requests, results, strict=True)
        ]

    def _output(self, item: WorkItem, seed: int, result: Any) -> Output:
        from synthtune.vision.procedural import mask_image, png_bytes

        rendered = item.render()
        messages = item.messages()
        if rendered["response"]:
            messages.append({"role": "assistant", "content": str(rendered["response"])})
        label = rendered["label"] or result.label
        lineage = {"image_seed": seed, **result.lineage}
        if result.error is not None or result.image is None:
            return Output(messages, result.error or "image: no image", lineage, label)
        png = png_bytes(result.image)
        path = f"{IMAGE_DIR}/{hashlib.sha256(png).hexdigest()[:16]}.png"
        files = {path: png}
        mask_path = None
        if result.mask is not None and getattr(self.recipe.generation.backend, "masks", True):
            mask_path = path.replace(".png", ".mask.png")
            files[mask_path] = png_bytes(mask_image(result.mask))
        media = {
            "type": "image",
            "path": path,
            "width": result.image.width,
            "height": result.image.height,
            "boxes": [box.model_dump() for box in result.boxes],
            "mask": mask_path,
        }
        return Output(messages, None, lineage, label, media=[media], files=files)


plugins.register_strategy("image", ImageSynthesis, config=ImageStrategy)
