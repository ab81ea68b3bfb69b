"""Label-aware mixing (mix.labels): targets per label, quotas, off-manifold fill, per-label
distances, generation weights, synthetic-only training."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from synthtune.config import LabelTargetsConfig, load_recipe
from synthtune.errors import RecipeError
from synthtune.label_targets import label_targets
from synthtune.mix.stage import MixStage
from synthtune.pipeline import run_recipe
from synthtune.store import RunStore

REAL = {"a": 30, "b": 12, "c": 6, "d": 8}  # real train rows per label
SYMPTOMS = {
    "a": ["a cough", "a dry cough", "a chesty cough"],
    "b": ["a fever", "a high fever", "a mild fever"],
    "c": ["a rash", "an itchy rash", "a red rash"],
    "d": ["back pain", "lower back pain", "a stiff back"],
}
NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun"]
ADVICE = ["rest and drink fluids", "see a doctor if it lasts a week", "book an appointment"]
NOTE = "{name}, {age}, has had {symptom} for {days} days; advice: {advice}."


def _rows(label: str, count: int, rng: random.Random) -> list[str]:
    return [
        json.dumps(
            {
                "text": NOTE.format(
                    name=rng.choice(NAMES),
                    age=rng.randint(18, 80),
                    symptom=rng.choice(SYMPTOMS[label]),
                    days=rng.randint(1, 7),
                    advice=rng.choice(ADVICE),
                ),
                "label": label,
            }
        )
        for _ in range(count)
    ]


def _write(
    tmp_path: Path, mix: dict[str, Any] | None = None, n: int = 160, classes: str = "abcd"
) -> Path:
    """Real train/validation/test files with REAL label counts, and a template whose label
    ``d`` writes market notes: fluent, accepted, and far from every real row."""
    rng = random.Random(0)
    (tmp_path / "data").mkdir()
    for split, sizes in (("train", REAL), ("validation", dict.fromkeys(REAL, 2))):
        rows = [row for label, k in sizes.items() for row in _rows(label, k, rng)]
        (tmp_path / "data" / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    test = [row for label in REAL for row in _rows(label, 3, rng)]
    (tmp_path / "data" / "test.jsonl").write_text("\n".join(test) + "\n")
    note = "{{ name }}, {{ age }}, has had {{ symptom }} for {{ days }} days; advice: {{ advice }}."
    market = "Shares of {{ company }} rose {{ age }} percent after {{ quarter }} results."
    recipe = {
        "name": "labels",
        "seed": 0,
        "generate": {
            "n": n,
            "backend": {"type": "template"},
            "templates": [
                {
                    "id": "note",
                    "prompt": "Write one note (case {{ case }}).",
                    "response": "{% if cls == 'd' %}"
                    + market
                    + "{% else %}"
                    + note
                    + "{% endif %}",
                    "label": "{{ cls }}",
                    "slots": {
                        "case": {"randint": [1, 10**9]},
                        "cls": {"choice": list(classes)},
                        "symptom": {"choice": SYMPTOMS, "by": "cls"},
                        "name": {"choice": NAMES},
                        "age": {"randint": [18, 80]},
                        "days": {"randint": [1, 7]},
                        "advice": {"choice": ADVICE},
                        "company": {"choice": ["Acme", "Globex", "Initech", "Umbrella"]},
                        "quarter": {"choice": ["first-quarter", "annual", "third-quarter"]},
                    },
                }
            ],
        },
        "quality": {"perplexity": {"enabled": False}, "decontam": {"enabled": False}},
        "mix": {
            "real": {
                "train": "data/train.jsonl",
                "validation": "data/validation.jsonl",
                "test": "data/test.jsonl",
                "label_field": "label",
            },
            "ratio": "1:4",
            "schedule": {"max_rounds": 0},
            **(mix or {}),
        },
        "train": {"task": "classification"},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _mix(tmp_path: Path, mix: dict[str, Any] | None = None, classes: str = "abcd") -> dict:
    path = _write(tmp_path, mix, classes=classes)
    result = run_recipe(load_recipe(path), tmp_path / "runs", quiet=True, until="mix")
    return result.outcomes[-1].summary


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({}, {"a": 8, "b": 3, "c": 2, "d": 2}),  # round(rows / 4) per label
        ({"ratio_per_label": False}, {"a": 8, "b": 3, "c": 1, "d": 2}),  # 14 by real share
        ({"target": "balanced"}, {"a": 1, "b": 1, "c": 7, "d": 5}),  # 31, 13, 13, 13
        ({"target": {"a": 2, "b": 2}}, {"a": 7, "b": 7, "c": 1, "d": 1}),  # min 1 for c, d
        ({"target": "balanced", "allow_zero": ["a"]}, {"a": 0, "b": 2, "c": 7, "d": 5}),
    ],
)
def test_targets_per_label(labels: dict[str, Any], expected: dict[str, int]) -> None:
    assert label_targets(REAL, 0.25, LabelTargetsConfig(**labels)) == expected


def test_every_label_gets_its_quota_even_off_the_manifold(tmp_path: Path) -> None:
    summary = _mix(tmp_path)
    per_label = summary["per_label"]
    assert {k: v["target"] for k, v in per_label.items()} == {"a": 8, "b": 3, "c": 2, "d": 2}
    assert {k: v["synthetic"] for k, v in per_label.items()} == {"a": 8, "b": 3, "c": 2, "d": 2}
    # d's synthetic records are all market notes: taken off the manifold, closest first
    assert per_label["d"]["off_manifold"] == 2 and per_label["a"]["off_manifold"] == 0
    assert summary["labels_without_synthetic"] == []
    assert isinstance(per_label["a"]["distance"], float)  # 15 real rows in the probe half, 8
    assert per_label["c"]["distance"] is None  # too few rows to measure
    assert summary["labels"]["train"]["synthetic"] == {"a": 8, "b": 3, "c": 2, "d": 2}
    generate = RunStore(tmp_path / "runs" / "labels").state()["stages"]["generate"]["summary"]
    assert generate["label_targets"] == {"a": 8, "b": 3, "c": 2, "d": 2}
    from synthtune.report.html import build_report

    html = build_report(tmp_path / "runs" / "labels").read_text(encoding="utf-8")
    assert "Synthetic records per label" in html


def test_allow_zero_and_labels_without_synthetic(tmp_path: Path) -> None:
    summary = _mix(tmp_path, {"labels": {"allow_zero": ["d"]}}, classes="abd")
    assert summary["per_label"]["d"]["synthetic"] == 0  # off-manifold only: not filled
    assert summary["per_label"]["c"]["synthetic"] == 0  # no template writes c
    assert summary["labels_without_synthetic"] == ["c"]
    from synthtune.report.html import build_report

    html = build_report(tmp_path / "runs" / "labels").read_text(encoding="utf-8")
    assert "No synthetic records for: c" in html and "mix: no synthetic record" in html


def test_generation_weights_follow_the_targets(tmp_path: Path) -> None:
    path = _write(tmp_path, {"labels": {"target": "balanced"}}, n=400)
    run_recipe(load_recipe(path), tmp_path / "runs", quiet=True, until="generate")
    records = RunStore(tmp_path / "runs" / "labels").read_table("generate", "dataset")
    found = Counter(r.payload.label for r in records)
    targets = {"a": 1, "b": 1, "c": 7, "d": 5}
    for label, target in targets.items():
        assert abs(found[label] - 400 * target / 14) <= 25, (label, found)


def test_synthetic_only_training(tmp_path: Path) -> None:
    summary = _mix(tmp_path, {"use_real_train": False})
    assert summary["splits"]["train"] == {"synthetic": 15}
    assert summary["splits"]["val"] == {"real": 8} and summary["splits"]["test"] == {"real": 12}
    assert summary["per_label"]["a"]["real"] == 30  # targets still from the real train rows


def test_unknown_target_label_is_a_recipe_error(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, {"labels": {"target": {"a": 1, "zz": 1}}}))
    with pytest.raises(RecipeError, match=r"mix\.labels\.target") as found:
        MixStage().check(recipe)
    assert "'zz'" in str(found.value)


def test_the_distance_note_says_why_the_threshold_was_not_reached() -> None:
    from synthtune.mix.stage import distance_note

    rounds = [{"wasserstein": 4.9}, {"wasserstein": 4.86}, {"wasserstein": None}]
    note = distance_note("no improvement", rounds, 0.15)
    assert note is not None
    assert "from 4.90 to 4.86 over 2 measurement(s)" in note
    assert "32x the threshold" in note and "describe different things" in note
    near = distance_note("budget", [{"wasserstein": 0.3}, {"wasserstein": 0.2}], 0.15)
    assert near is not None and "different things" not in near
    assert distance_note("threshold", rounds, 0.15) is None
    assert distance_note("budget", [], 0.15) is None
