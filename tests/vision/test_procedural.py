"""Procedural defect images: exact labels, determinism, spec checks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from synthtune.errors import RegistryError
from synthtune.vision.procedural import (
    DEFECTS,
    NO_DEFECT,
    DefectSpec,
    generate_dataset,
    png_bytes,
    render_defect,
)
from synthtune.vision.textures import TEXTURES
from tests.vision.image_recipe import CLASSES


def test_every_defect_class_and_material_is_registered() -> None:
    assert set(CLASSES) | {NO_DEFECT} == set(DEFECTS.names())
    assert {"brick", "grass", "gravel", "moon", "metal"} == set(TEXTURES.names())


@pytest.mark.parametrize("defect", CLASSES)
def test_labels_are_exact(defect: str) -> None:
    """Box = tight box of the mask (so it holds every mask pixel), mask non-empty, and every
    mask pixel visibly changed against the same background drawn without the defect."""
    for i in range(12):
        material = sorted(TEXTURES.names())[i % len(TEXTURES.names())]
        spec = DefectSpec(defect, material, width=64 + 16 * (i % 3), height=64)
        image, label = render_defect(spec, np.random.default_rng(i))
        clean, _ = render_defect(replace(label.spec, defect=NO_DEFECT), np.random.default_rng(i))
        mask, box = label.mask, label.box
        assert mask.shape == (image.height, image.width) and mask.any()
        assert box is not None and box.label == defect
        rows, cols = np.nonzero(mask)
        assert (box.x0, box.y0, box.x1, box.y1) == (
            cols.min(),
            rows.min(),
            cols.max() + 1,
            rows.max() + 1,
        )
        inside = np.zeros_like(mask)
        inside[box.y0 : box.y1, box.x0 : box.x1] = True
        assert not (mask & ~inside).any()
        diff = np.abs(np.asarray(image, float) - np.asarray(clean, float)).max(axis=2)
        assert diff[mask].mean() > 8, (defect, material, diff[mask].mean())  # of 255
        assert (diff[mask] > 0).mean() > 0.95
        assert diff[~inside].mean() < diff[mask].mean() / 4  # the defect is in the box


def test_no_defect_has_no_box_and_an_empty_mask() -> None:
    _, label = render_defect(DefectSpec(NO_DEFECT, "brick"), np.random.default_rng(0))
    assert label.box is None and not label.mask.any()
    assert label.caption == "a photo of brick without defects"


def test_same_seed_same_bytes_other_seed_other_image_any_worker_count() -> None:
    first = generate_dataset(12, seed=4, size=48)
    again = generate_dataset(12, seed=4, size=48, workers=2)
    other = generate_dataset(12, seed=5, size=48)
    tail = generate_dataset(4, seed=4, size=48, start=8)
    assert [png_bytes(s.image) for s in first] == [png_bytes(s.image) for s in again]
    assert [png_bytes(s.image) for s in first[8:]] == [png_bytes(s.image) for s in tail]
    assert all(png_bytes(a.image) != png_bytes(b.image) for a, b in zip(first, other, strict=True))
    assert [s.label.defect for s in first] == (CLASSES * 2)  # balanced, in a fixed cycle
    assert first[0].caption == f"a photo of a scratch on {first[0].label.material}"


def test_slots_steer_the_drawing_and_bad_values_are_refused() -> None:
    spec = DefectSpec.from_slots(
        {"defect": "hole", "material": "gravel", "size": "0.5", "x": 0.5, "y": 0.5, "word": "x"}
    )
    _, label = render_defect(spec, np.random.default_rng(1))
    assert label.spec.size == 0.5 and label.box is not None
    centre = ((label.box.x0 + label.box.x1) / 2, (label.box.y0 + label.box.y1) / 2)
    assert abs(centre[0] - 64) < 8 and abs(centre[1] - 64) < 8
    named = DefectSpec.from_slots(
        {"defect": "scratch", "material": "metal", "size": "Large", "orientation": "vertical"}
    )
    assert (named.size, named.orientation) == (0.4, 90.0)
    with pytest.raises(ValueError, match="one of horizontal, diagonal"):
        DefectSpec.from_slots({"defect": "scratch", "material": "metal", "orientation": "up"})
    with pytest.raises(RegistryError, match="known: crack"):
        DefectSpec("burn", "brick")
    with pytest.raises(ValueError, match="size"):
        DefectSpec("spot", "brick", size=2.0)
    with pytest.raises(ValueError, match="material"):
        DefectSpec.from_slots({"defect": "spot"})
