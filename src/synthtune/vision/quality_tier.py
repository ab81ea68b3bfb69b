"""The image tier: checks of the records that carry images, cheap to costly.

1. blank / over- / under-exposed (``vision.exposure``), per image of a record;
2. perceptual near-duplicates (``vision.phash``) of a record's first image: each cluster keeps
   its best record, as text dedup does, the others are rejected naming the one kept;
3. caption agreement (``quality.image.caption_score``): a scorer (CLIP) rates each image
   against its caption (the record's ``input_text``); below ``min_score`` is rejected.

Records without media pass untouched. Images are read one at a time for 1-2 (a large run does
not have to fit in memory) and per batch for 3. Measured values land in ``quality.image``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from synthtune import plugins
from synthtune.config.generate import is_image_backend
from synthtune.config.quality import ImageQualityConfig
from synthtune.context import StageContext
from synthtune.quality import dedup
from synthtune.records import Record


def _with_images(records: list[Record]) -> list[Record]:
    return [r for r in records if r.status == "accepted" and r.payload.media]


def exposure_checks(
    records: list[Record], load: Callable[[str], Image.Image], cfg: ImageQualityConfig
) -> np.ndarray:
    """Exposure reasons per image, and (n, bits) pHash bits of each record's first image."""
    from synthtune.vision.exposure import exposure_reasons, measure_exposure
    from synthtune.vision.phash import perceptual_hashes

    hashes = []
    for record in records:
        media = record.payload.media or ()
        measures = []
        for n, item in enumerate(media):
            image = load(item.path)
            found = measure_exposure(image)
            measures.append(found.as_dict())
            for reason in exposure_reasons(found, cfg.min_std, cfg.max_clipped):
                record.reject(reason)
            if n == 0:
                hashes.append(perceptual_hashes([image], cfg.hash_size)[0])
        record.quality.setdefault("image", {})["exposure"] = measures
    return np.stack(hashes) if hashes else np.zeros((0, cfg.hash_size**2), dtype=bool)


def perceptual_dedup(records: list[Record], bits: np.ndarray, max_distance: int) -> int:
    """Reject all but the best record of each near-duplicate cluster; returns how many."""
    from synthtune.vision.phash import hamming_pairs

    pool = [i for i, r in enumerate(records) if r.status == "accepted"]
    union = dedup.UnionFind(len(pool))
    for a, b in hamming_pairs(bits[pool], max_distance):
        union.union(a, b)
    return dedup.keep_best(
        [records[i] for i in pool], union.groups(), "perceptual", dedup.preference
    )


def caption_agreement(
    records: list[Record],
    load: Callable[[str], Image.Image],
    cfg: ImageQualityConfig,
    batch: int = 64,
) -> None:
    from synthtune.vision.embed import CAPTION_SCORERS

    score_cfg = cfg.caption_score
    assert score_cfg is not None
    scorer = CAPTION_SCORERS.get(score_cfg.scorer)(score_cfg.model, score_cfg.batch_size)
    alive = [r for r in records if r.status == "accepted"]
    for start in range(0, len(alive), batch):
        part = alive[start : start + batch]
        images = [load((r.payload.media or ())[0].path) for r in part]
        scores = scorer.score(images, [r.payload.input_text() for r in part])
        for record, score in zip(part, scores, strict=True):
            record.quality.setdefault("image", {})["caption_score"] = round(float(score), 4)
            if score < score_cfg.min_score:
                measured = f"{score_cfg.scorer} {score:.3f} < {score_cfg.min_score:g}"
                record.reject(f"image: caption disagrees ({measured})")


def check_images(
    records: list[Record], load: Callable[[str], Image.Image], cfg: ImageQualityConfig
) -> None:
    """Run the three checks on the accepted records with images (``load``: media path ->
    RGB image, the caller resolving paths safely)."""
    pool = _with_images(records)
    bits = exposure_checks(pool, load, cfg)
    if cfg.phash_distance is not None:
        perceptual_dedup(pool, bits, cfg.phash_distance)
    if cfg.caption_score is not None:
        caption_agreement(pool, load, cfg)


def image_tier(ctx: StageContext, records: list[Record]) -> None:
    def load(relative: str) -> Image.Image:
        with Image.open(ctx.store.media_path(relative)) as image:
            return image.convert("RGB")

    cfg = ctx.recipe.quality.image
    if cfg.caption_score is not None:  # an offline name (local-tiny-clip) is built first
        model = ctx.resolve_model(cfg.caption_score.model)
        score = cfg.caption_score.model_copy(update={"model": model})
        cfg = cfg.model_copy(update={"caption_score": score})
    check_images(records, load, cfg)


def _image_run(recipe: Any) -> bool:
    generate = recipe.generate
    return bool(
        recipe.quality.image.enabled
        and generate is not None
        and is_image_backend(generate.backend.type)
    )


plugins.register_quality_filter("image", plugins.QualityFilter(20, image_tier, _image_run))
