"""A tiny classification recipe with an ablate section: template-generated headlines whose
label follows from one word, a few real rows of the same kind, a one-layer local-tiny
classifier trained for two steps. Cheap enough to run 2 variants x 2 seeds in a test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

WORDS = {"positive": ["surge", "rally", "soar"], "negative": ["plunge", "slump", "sink"]}


def real_rows(n: int = 60) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        word = WORDS[label][i % 3]
        rows.append({"text": f"Firm {i} shares {word} after report {i * 7}", "label": label})
    return rows


def write_tiny_recipe(folder: Path, ablate: dict[str, Any], **sections: Any) -> Path:
    (folder / "real.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in real_rows()), encoding="utf-8"
    )
    recipe: dict[str, Any] = {
        "name": "tiny-ablate",
        "seed": 1,
        "generate": {
            "n": 16,
            "backend": {"type": "template"},
            "templates": [
                {
                    "id": "headline",
                    "prompt": "{{ company }} stock {{ move }} on {{ day }}",
                    "response": "{{ sentiment }}",
                    "label": "{{ sentiment }}",
                    "slots": {
                        "company": {"choice": ["Acme", "Globex", "Initech", "Umbrella"]},
                        "day": {"choice": ["Monday", "Tuesday", "Friday"]},
                        "sentiment": {"choice": ["positive", "negative"]},
                        "move": {"by": "sentiment", "choice": WORDS},
                    },
                }
            ],
        },
        "quality": {"perplexity": {"enabled": False}, "review": {"fraction": 0.0}},
        "mix": {
            "real": {"path": "real.jsonl", "text_field": "text", "label_field": "label"},
            "ratio": "1:2",
            "schedule": {"max_rounds": 0},
        },
        "train": {
            "task": "classification",
            "max_steps": 2,
            "batch_size": 8,
            "max_length": 32,
            "eval_strategy": "no",
            "log_to": [],
        },
        "evaluate": {"bootstrap": {"resamples": 20}},
        "export": {"merge": False, "dataset_files": []},
        "local_tiny": {
            "vocab_size": 300,
            "hidden_size": 16,
            "layers": 1,
            "heads": 2,
            "pretrain_epochs": 0.1,
            "pretrain_on": ["real"],
        },
        "ablate": ablate,
        **sections,
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path
