"""The ``diffusers`` image backend: Stable Diffusion text-to-image, or inpainting a defect.

``text2img``: the caption is the prompt; the image has no box (the model decides where the
defect goes), the label comes from the template. ``inpaint``: the procedural generator gives
a clean texture and the defect's shape from the same slots (defect, material, size, x, y,
...); the shape, grown by one latent cell (8 px) because Stable Diffusion inpaints in an
8x-downsampled latent, is the inpainting mask, and the painted region is the label (box and
mask), so inpainted images come with boxes as procedural ones do.

Every image has its own ``torch.Generator`` seeded from its request, so an image does not
depend on its batch neighbours: a resumed run redraws the same image (on the same device and
library versions). Runs on the first GPU when present, in float16 there, float32 on CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from synthtune import plugins
from synthtune.config.generate import DiffusersBackendConfig
from synthtune.errors import BackendError, SynthtuneError
from synthtune.vision.image_backends import ImageRequest, ImageResult
from synthtune.vision.procedural import NO_DEFECT, DefectSpec, box_of, render_defect

LATENT_CELL = 8  # Stable Diffusion's VAE downsamples by 8


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` dilated by a square of ``pixels`` on each side (no scipy needed)."""
    padded = np.pad(mask, pixels)
    out = np.zeros_like(mask)
    height, width = mask.shape
    for dy in range(2 * pixels + 1):
        for dx in range(2 * pixels + 1):
            out |= padded[dy : dy + height, dx : dx + width]
    return out


def inpaint_inputs(
    request: ImageRequest, width: int, height: int
) -> tuple[Image.Image, np.ndarray, str]:
    """(clean image, inpainting mask, defect class) from the request's slots and seed."""
    spec = DefectSpec.from_slots(request.slots, width, height)
    _, drawn = render_defect(spec, np.random.default_rng(request.seed))
    clean, _ = render_defect(
        DefectSpec(NO_DEFECT, drawn.spec.material, width, height, **_fixed(drawn.spec)),
        np.random.default_rng(request.seed),
    )
    return clean, grow(drawn.mask, LATENT_CELL), drawn.defect


def _fixed(spec: DefectSpec) -> dict[str, Any]:
    keys = ("size", "orientation", "intensity", "lighting", "x", "y")
    return {k: getattr(spec, k) for k in keys}


@lru_cache(maxsize=2)
def load_pipeline(path: str, mode: str, device: str, dtype: str) -> tuple[Any, str]:
    """The pipeline for ``mode`` on its device (loaded once per process: a few GB for SD)."""
    try:
        import torch
        from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline
    except ImportError as exc:
        raise BackendError(
            "generate.backend diffusers needs the diffusers package: "
            "pip install 'synthtune[diffusion]'"
        ) from exc
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    chosen = dtypes.get(dtype, torch.float16 if device.startswith("cuda") else torch.float32)
    loader = StableDiffusionInpaintPipeline if mode == "inpaint" else StableDiffusionPipeline
    try:
        pipe = loader.from_pretrained(path, torch_dtype=chosen)
    except (OSError, ValueError) as exc:
        raise BackendError(f"generate.backend.model {path!r}: {exc}") from exc
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, device


class DiffusersBackend:
    name = "diffusers"

    def __init__(self, config: Any, resolve_model: Callable[[str], str]) -> None:
        self.config = config
        self.model = config.model
        self.path = resolve_model(config.model)
        self._pipe: Any = None
        self._device = "cpu"

    def _pipeline(self) -> Any:
        if self._pipe is None:
            cfg = self.config
            self._pipe, self._device = load_pipeline(self.path, cfg.mode, cfg.device, cfg.dtype)
        return self._pipe

    def render(self, requests: list[ImageRequest]) -> list[ImageResult]:
        out: list[ImageResult] = []
        size = self.config.batch_size
        for start in range(0, len(requests), size):
            out.extend(self._batch(requests[start : start + size]))
        return out

    def _batch(self, requests: list[ImageRequest]) -> list[ImageResult]:
        if self.config.mode == "text2img":
            images = self._call(requests, {})
            return [ImageResult(im.convert("RGB")) for im in images]
        # a request the inpainting cannot prepare fails alone, not with its whole batch
        results: list[ImageResult | None] = [None] * len(requests)
        prepared = []
        for i, request in enumerate(requests):
            try:
                prepared.append((i, inpaint_inputs(request, self.config.width, self.config.height)))
            except (ValueError, TypeError, SynthtuneError) as exc:
                results[i] = ImageResult(None, error=f"diffusers: {exc}")
        if prepared:
            masks = [
                Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
                for _, (_, mask, _) in prepared
            ]
            images = self._call(
                [requests[i] for i, _ in prepared],
                {"image": [clean for _, (clean, _, _) in prepared], "mask_image": masks},
            )
            for image, (i, (_, mask, defect)) in zip(images, prepared, strict=True):
                box = box_of(mask, defect)
                results[i] = ImageResult(
                    image.convert("RGB"),
                    (box,) if box else (),
                    mask,
                    defect,
                    lineage={"inpainted_pixels": int(mask.sum())},
                )
        return [r for r in results if r is not None]

    def _call(self, requests: list[ImageRequest], extra: dict[str, Any]) -> list[Any]:
        """One pipeline call for ``requests``, each with its own seeded generator."""
        import torch

        cfg = self.config
        pipe = self._pipeline()
        generators = [torch.Generator(self._device).manual_seed(r.seed) for r in requests]
        return list(
            pipe(
                prompt=[r.caption for r in requests],
                negative_prompt=[cfg.negative_prompt] * len(requests)
                if cfg.negative_prompt
                else None,
                num_inference_steps=cfg.steps,
                guidance_scale=cfg.guidance_scale,
                width=cfg.width,
                height=cfg.height,
                generator=generators,
                output_type="pil",
                **extra,
            ).images
        )


plugins.register_image_backend("diffusers", DiffusersBackend, config=DiffusersBackendConfig)
