"""image: each item's rendered prompt is a caption, an image backend draws the image.

The record is an ordinary chat payload plus media (``generate.strategies.base.MediaSynthesis``):
the caption is the user turn (a system turn and an assistant reply are added when the template
has them, e.g. for a vision-language SFT export), the label is the template's ``label`` or
else the class the backend drew, and ``media`` holds the image (path, size, boxes, mask).
Image files are named by the hash of their PNG bytes under ``generate/images/``, so a redrawn
image after a resume lands on the same file, and two identical images share one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from synthtune import plugins
from synthtune.config.generate import ImageStrategy
from synthtune.generate.strategies.base import MediaSynthesis, WorkItem

IMAGE_DIR = "generate/images"


class ImageSynthesis(MediaSynthesis):
    name = "image"
    kind = "image"
    missing = "image: no image"
    folder = IMAGE_DIR

    def create_backend(self, resolve_model: Callable[[str], str]) -> Any:
        # imported here: text-only runs never load the image stack
        from synthtune.vision.image_backends import create_image_backend

        return create_image_backend(self.recipe.generation.backend, resolve_model)

    def request(self, item: WorkItem, seed: int) -> Any:
        from synthtune.vision.image_backends import ImageRequest

        return ImageRequest(item.key, str(item.render()["prompt"]), item.slots, seed)

    def made(self, result: Any) -> bool:
        return result.image is not None

    def media(self, result: Any, folder: str) -> tuple[dict[str, Any], dict[str, bytes]]:
        from synthtune.vision.procedural import mask_image, png_bytes

        png = png_bytes(result.image)
        path = f"{folder}/{hashlib.sha256(png).hexdigest()[:16]}.png"
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
        return media, files


plugins.register_strategy("image", ImageSynthesis, config=ImageStrategy)
