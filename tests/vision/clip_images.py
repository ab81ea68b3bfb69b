"""Procedural defect images (``synthtune.vision.procedural``) as image records in a run
directory, for the CLIP tests: PNGs under ``root/images``, the caption as the user turn, the
defect as the label, the defect and material as slots (what the generate stage records).

The learning problem is kept small for a from-scratch tiny CLIP on a CPU: 64x64 images, four
classes that differ in shape and colour, defects of a quarter to 40 % of the image side
(``DefectSpec.size``) and strong intensity, on the brushed-metal texture. (On metal and brick
together the same budget reached 0.81 accuracy: dark spots and cracks get confused on brick.)"""

from __future__ import annotations

from pathlib import Path

from synthtune.records import Media, Message, Payload, Record
from synthtune.vision.procedural import DefectSpec, caption_for, render_defect, sample_rng

CLASSES = ("scratch", "crack", "stain", "spot")
MATERIALS = ("metal",)


def defect_records(root: Path, n: int, seed: int, size: int = 64) -> list[Record]:
    """``n`` image records, classes in turn, each drawn from ``(seed, index)`` alone."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        rng = sample_rng(seed, i)
        defect = CLASSES[i % len(CLASSES)]
        material = MATERIALS[int(rng.integers(0, len(MATERIALS)))]
        spec = DefectSpec(
            defect,
            material,
            size,
            size,
            size=float(rng.uniform(0.25, 0.4)),
            intensity=float(rng.uniform(0.7, 1.0)),
        )
        image, label = render_defect(spec, rng)
        path = f"images/{seed}-{i:05d}.png"
        image.save(root / path)
        payload = Payload(
            messages=[Message(role="user", content=caption_for(defect, material))],
            label=defect,
            media=(Media(path=path, width=size, height=size, boxes=(label.box,)),),
        )
        slots = {"defect": defect, "material": material}
        records.append(Record.create("synthetic", payload, lineage={"slots": slots}))
    return records
