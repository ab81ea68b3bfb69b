"""A small procedural-image recipe for the image tests (generate -> quality in seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CLASSES = ["scratch", "spot", "crack", "hole", "stain", "dent"]
MATERIALS = ["brick", "grass", "gravel", "metal"]


def write_image_recipe(folder: Path, n: int = 24, **generate: Any) -> Path:
    recipe = {
        "name": "defects",
        "seed": 5,
        "generate": {
            "n": n,
            "flush_every": 8,
            "backend": {"type": "procedural", "width": 64, "height": 64},
            "templates": [
                {
                    "id": "defect",
                    "prompt": "a photo of a {{ defect }} on {{ material }}",
                    "label": "{{ defect }}",
                    "slots": {
                        "defect": {"choice": CLASSES},
                        "material": {"choice": MATERIALS},
                        "size": {"uniform": [0.2, 0.4], "round": 3},
                        "intensity": {"uniform": [0.5, 1.0], "round": 2},
                        "lighting": {"uniform": [0.8, 1.2], "round": 2},
                    },
                }
            ],
            **generate,
        },
        "quality": {"perplexity": {"enabled": False}},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path
