"""Coverage on known data: distinct-n of known strings, slot coverage of known values, and
cluster coverage of well-separated real blobs by synthetic data drawn from some or all."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synthtune.config import Recipe, load_recipe
from synthtune.distribution import coverage
from synthtune.distribution.coverage import (
    ClusterCoverage,
    coverage_report,
    declared_domains,
    distinct_n,
    slot_coverage,
)
from synthtune.errors import StageError
from synthtune.records import Message, Payload, Record
from tests.conftest import write_recipe


def test_distinct_n_on_known_strings() -> None:
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["我爱我家"], 1) == 0.75  # CJK: one token per character
    assert distinct_n(["我爱我家"], 2) == 1.0
    assert distinct_n(["A b.", "a B"], 2) == 0.5  # case and punctuation do not make n-grams new
    assert distinct_n(["a", "b"], 2) == 0.0  # n-grams never span two texts
    assert distinct_n([], 1) == 0.0
    with pytest.raises(ValueError, match="n=0"):
        distinct_n(["a"], 0)


def _record(text: str = "x", **slots: object) -> Record:
    payload = Payload(messages=[Message(role="user", content=text)])
    return Record.create("synthetic", payload, lineage={"slots": slots})


def test_slot_coverage_on_known_values() -> None:
    domains: dict[str, coverage.Domain] = {
        "gender": ["male", "female"],
        "age": (18, 80),
        "days": (1, 7),
        "temp": (36.5, 40.0),
        "unused": ["a"],
    }
    records = [
        _record(gender="male", age=18, days=1, temp=36.5),
        _record(gender="male", age=25, days=2, temp=40.0),
        _record(gender="other", age=80, days=7, temp=41.0),
        _record(age=90),
    ]
    assert slot_coverage(records, domains) == {
        "gender": 0.5,  # 'other' is not declared
        "age": 0.3,  # bins of 6.2 years: 18 -> 0, 25 -> 1, 80 -> 9; 90 is out of range
        "days": pytest.approx(3 / 7),  # fewer than 10 integers: one bin per value
        "temp": 0.2,  # 41.0 is out of range
        "unused": 0.0,
    }


def test_declared_domains_of_the_demo_recipe(tmp_path: Path) -> None:
    domains = declared_domains(load_recipe(write_recipe(tmp_path)))
    assert domains["age"] == (18, 80) and domains["days"] == (1, 7)
    assert domains["temp"] == (36.5, 40.0)
    assert domains["gender"] == ["male", "female"]
    symptom = domains["symptom"]  # the `by` mapping's lists and the follow-up template's list
    assert isinstance(symptom, list) and len(symptom) == 8 + 4
    assert {"dizziness", "a sore throat", "the sore throat"} <= set(symptom)
    # faker, template and sample slots declare no domain
    assert {"name", "age_group", "others"}.isdisjoint(domains)


def test_declared_domains_merge_across_templates() -> None:
    def template(tid: str, slots: dict[str, object]) -> dict[str, object]:
        return {"id": tid, "prompt": "p", "response": "r", "slots": slots}

    recipe = Recipe.model_validate(
        {
            "name": "merge",
            "generate": {
                "templates": [
                    template(
                        "a",
                        {
                            "n": {"randint": [1, 5]},
                            "c": {"choice": ["x", "y"]},
                            "m": {"choice": [1]},
                        },
                    ),
                    template(
                        "b",
                        {
                            "n": {"randint": [3, 9]},
                            "c": {"choice": ["y", "z"]},
                            "m": {"uniform": [0, 1]},
                        },
                    ),
                ]
            },
        }
    )
    assert declared_domains(recipe) == {"n": (1, 9), "c": ["x", "y", "z"]}  # m: list vs range


def _blobs(per_blob: int, seed: int, blobs: list[int]) -> np.ndarray:
    """Points around 4 well-separated centres (10 apart, spread 0.5) in 8 dimensions."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:4] * 10
    return np.concatenate([centres[b] + rng.normal(0, 0.5, (per_blob, 8)) for b in blobs])


@pytest.mark.parametrize("k", [4, None])
def test_cluster_coverage_of_half_and_of_all_blobs(k: int | None) -> None:
    real = _blobs(50, 0, [0, 1, 2, 3])
    clusters = ClusterCoverage(k=k, seed=0).fit(real)
    assert clusters.clusters == (4 if k else 16)  # default: min(16, 200 // 5)
    assert sum(clusters.reference_share) == pytest.approx(1.0)

    half = clusters.measure(_blobs(40, 1, [0, 2]))
    assert half["mass_covered"] == pytest.approx(0.5)
    assert half["clusters_covered"] == (0.5 if k else pytest.approx(0.5, abs=0.15))
    deficit = np.subtract(half["reference_share"], half["synthetic_share"])
    uncovered = np.asarray(half["synthetic_share"]) == 0
    assert (deficit[uncovered] > 0).all()  # what the mix schedule adds next
    assert deficit[~uncovered].sum() == pytest.approx(-0.5)  # half the mass, all of the data

    full = clusters.measure(_blobs(40, 2, [0, 1, 2, 3]))
    assert full["clusters_covered"] == 1.0 and full["mass_covered"] == pytest.approx(1.0)
    assert clusters.measure(np.zeros((0, 8)))["clusters_covered"] == 0.0


def test_cluster_coverage_minibatch_and_small_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coverage, "MINIBATCH_ABOVE", 100)
    clusters = ClusterCoverage(k=4, seed=0).fit(_blobs(50, 0, [0, 1, 2, 3]))
    assert type(clusters.model).__name__ == "MiniBatchKMeans"
    assert clusters.measure(_blobs(10, 1, [3]))["mass_covered"] == pytest.approx(0.25)
    # k is capped by the distinct rows; one distinct row cannot be clustered
    assert ClusterCoverage(k=8).fit(np.array([[0.0], [1.0], [1.0]])).clusters == 2
    with pytest.raises(StageError, match="2 distinct real records"):
        ClusterCoverage().fit(np.ones((5, 3)))
    with pytest.raises(StageError, match="fit"):
        ClusterCoverage().assign(np.ones((1, 3)))


def test_coverage_report_is_json_and_combines_the_measures() -> None:
    real = [_record(f"real text {i}") for i in range(8)]
    synthetic = [_record("a b a b", gender="male"), _record("a b", gender="male")]
    report = coverage_report(
        real,
        synthetic,
        _blobs(10, 0, [0, 1, 2, 3]),
        _blobs(5, 1, [1]),
        {"gender": ["male", "female"]},
    )
    assert json.loads(json.dumps(report)) == report
    assert report["records"] == {"real": 8, "synthetic": 2}
    assert report["slots"] == {"gender": 0.5}
    assert report["distinct"]["synthetic"] == {"distinct_1": 2 / 6, "distinct_2": 2 / 4}
    assert report["distinct"]["real"]["distinct_1"] == 10 / 24
    assert report["clusters"]["clusters"] == 8  # default k: 40 // 5
    assert report["clusters"]["mass_covered"] == pytest.approx(0.25)
    empty = coverage_report([], [], np.zeros((0, 2)), np.zeros((0, 2)), {})
    assert empty["clusters"] is None and empty["distinct"]["real"]["distinct_1"] == 0.0
