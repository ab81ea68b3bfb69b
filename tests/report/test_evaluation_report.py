"""The report's evaluation and data sections on a hand-built run store: warnings, seconds per
stage, labels per split and source, sample records with their decisions, the classification
comparison with intervals, the per-class table and the confusion-matrix plot."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest

from synthtune.config.training import BootstrapConfig
from synthtune.evaluate.class_metrics import class_metrics
from synthtune.records import Message, Payload, Record
from synthtune.report import plots, sections
from synthtune.report.html import build_report
from synthtune.store import RunStore

LABELS = ["billing", "delivery", "refund"]
CI = BootstrapConfig(resamples=100)


def _record(text: str, label: str | None, source: str, split: str = "") -> Record:
    record = Record.create(
        source, Payload(messages=[Message(role="user", content=text)], label=label)
    )
    if split:
        record.lineage["split"] = split
    return record


def _tables() -> dict[str, list[Record]]:
    train = [_record(f"real train {i}", LABELS[i % 3], "real", "train") for i in range(30)]
    train += [_record(f"synthetic train {i}", "refund", "synthetic", "train") for i in range(6)]
    test = [_record(f"real test {i}", LABELS[i % 3], "real", "test") for i in range(12)]
    return {"train": train, "val": [], "test": test}


def _classification(tuned_right: int, base: bool = True) -> dict[str, Any]:
    truth = [i % 3 for i in range(12)]
    tuned = truth[:tuned_right] + [(t + 1) % 3 for t in truth[tuned_right:]]
    suite: dict[str, Any] = {
        "n": 12,
        "labels": LABELS,
        "bootstrap": {"resamples": 100, "confidence": 0.95},
        "tuned": class_metrics(truth, tuned, LABELS, CI, 0),
        "baseline": {
            "features": "word",
            "model": "logreg",
            "trained_on": "real",
            "train_rows": 30,
            **class_metrics(truth, truth, LABELS, CI, 0),
        },
    }
    if base:
        suite["base"] = class_metrics(truth, [0] * 12, LABELS, CI, 0)
    return suite


def _write_run(root: Path, evaluate: dict[str, Any], train: dict[str, Any]) -> RunStore:
    store = RunStore(root)
    tables = _tables()
    for split, records in tables.items():
        store.write_table("mix", split, records)
    rejected = _record("synthetic draft with ibuprofen", "refund", "synthetic")
    rejected.reject("rule no-antipyretic: forbidden 'ibuprofen'")
    accepted = _record("synthetic accepted text", "billing", "synthetic")
    store.write_table("quality", "dataset", [rejected, accepted])
    store.write_json("train", "metrics.json", train)
    store.write_json("evaluate", "metrics.json", evaluate)
    mix = {
        "records_in": 2,
        "records_out": 48,
        "splits": {"train": {"real": 30, "synthetic": 6}, "test": {"real": 12}},
        "real": {
            "rows_read": 45,
            "duplicates": 3,
            "duplicates_dropped": 3,
            "duplicates_policy": "drop",
        },
    }
    for name, summary, seconds in (
        ("quality", {"records_in": 2, "records_out": 1, "funnel": []}, 1.25),
        ("mix", mix, 2.5),
        ("train", {"records_in": 36}, 61.04),
        ("evaluate", {"records_in": 12}, 7.0),
    ):
        store.mark_complete(name, "fp", summary, seconds=seconds)
    return store


TRAIN = {
    "task": "classification",
    "method": "full",
    "base": "local-tiny",
    "log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "eval_loss": 0.9}],
    "parameter_groups": [],
    "early_stop": {
        "stopped": True,
        "step": 40,
        "reason": "eval accuracy did not improve for 3 evaluations",
    },
}


def _evaluate(suite: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    return {
        "n_test": 12,
        "models": {"tuned": "x"},
        "base": "run",
        "quantized": "none",
        "suites": {"classification": suite},
        "skipped": {},
        "warnings": warnings,
    }


def test_report_shows_the_classification_evaluation_a_practitioner_checks(tmp_path: Path) -> None:
    below = "classification: the tuned model (macro-F1 0.5) is below the TF-IDF baseline"
    store = _write_run(tmp_path, _evaluate(_classification(6), [below]), TRAIN)
    html = build_report(store.root).read_text()
    warnings = html.split("<h2>Warnings</h2>")[1].split("</ul>")[0]
    assert below in warnings
    assert "training stopped early at step 40: eval accuracy did not improve" in warnings
    assert "3 of 45 real rows were dropped as duplicates" in warnings
    assert "train split is heavily skewed" not in warnings  # 16 refund vs 10: not skewed
    # seconds per stage
    assert '<td class="num">61.0</td>' in html and '<td class="num">2.5</td>' in html
    # the comparison: base, tuned, baseline with intervals
    evaluation = html.split("<h2>Evaluation: classification</h2>")[1]
    comparison = evaluation.split("</table>")[0]
    assert "base (fresh head)" in comparison and "<b>tuned</b>" in comparison
    assert (
        "TF-IDF baseline" in comparison
        and "word n-grams + logreg, trained on 30 rows (real)" in comparison
    )
    tuned = _classification(6)["tuned"]
    low, high = tuned["ci"]["macro_f1"]
    assert f"{low:.3f}–{high:.3f}" in comparison
    assert "95 % interval (percentile bootstrap, 100 resamples" in evaluation
    # per-class table: every label with support and the baseline's F1 beside
    per_class = evaluation.split("<h3>Per class</h3>")[1].split("</table>")[0]
    for label in LABELS:
        assert f'<td>{label}</td><td class="num">4</td>' in per_class
    assert "baseline F1" in per_class and "base F1" in per_class and "macro average" in per_class
    assert 'alt="confusion matrices"' in evaluation


def test_report_shows_labels_per_split_and_source_and_sample_records(tmp_path: Path) -> None:
    store = _write_run(tmp_path, _evaluate(_classification(12), []), TRAIN)
    html = build_report(store.root).read_text()
    labels = html.split("<h2>Labels per split and source</h2>")[1].split("</table>")[0]
    # refund: 10 real train, 6 synthetic train, 4 real test
    assert (
        "<tr><td>refund</td>" + "".join(f'<td class="num">{n}</td>' for n in (10, 6, 4, 20))
        in labels
    )
    samples = html.split("<h2>Sample records</h2>")[1]
    assert "<h3>real</h3>" in samples and "<h3>synthetic</h3>" in samples
    assert "rule no-antipyretic: forbidden &#39;ibuprofen&#39;" in samples
    assert "synthetic draft with ibuprofen" in samples


def test_base_skipped_and_missing_optional_fields_still_render(tmp_path: Path) -> None:
    train = {k: v for k, v in TRAIN.items() if k != "early_stop"}  # older train stage
    store = _write_run(tmp_path, _evaluate(_classification(12, base=False), []), train)
    html = build_report(store.root).read_text()
    assert "not scored (evaluate.base: skip)" in html
    assert "stopped early" not in html


def test_skew_warnings_for_one_class_and_heavy_imbalance() -> None:
    one = {"train": [_record(f"t{i}", "spam", "real") for i in range(5)]}
    (warning,) = sections.skew_warnings(one)
    assert "one class only ('spam', 5 rows)" in warning
    skewed = {
        "test": [_record(f"a{i}", "ham", "real") for i in range(20)]
        + [_record("b", "spam", "real")]
    }
    (warning,) = sections.skew_warnings(skewed)
    assert "test split is heavily skewed ('ham' 20 rows, 'spam' 1)" in warning
    balanced = {"train": [_record(f"c{i}", ["a", "b"][i % 2], "real") for i in range(20)]}
    assert sections.skew_warnings(balanced) == []


def test_sample_records_take_a_few_per_source_and_status() -> None:
    records = [_record(f"real {i}", "a", "real") for i in range(10)]
    records += [_record(f"syn {i}", "a", "synthetic") for i in range(10)]
    for r in records[15:]:
        r.reject("too short")
    out = sections.sample_records(records, {}, per_group=2)
    assert len(out["real"]) == 2 and len(out["synthetic"]) == 4
    assert sorted(r["status"] for r in out["synthetic"]) == ["accepted"] * 2 + ["rejected"] * 2


@pytest.mark.parametrize(
    ("labels", "named"),
    [(["billing", "refund"], True), (["合同纠纷", "劳动争议"], False)],
)
def test_confusion_plot_names_classes_it_can_draw(labels: list[str], named: bool) -> None:
    from PIL import Image

    ticks, drawn = plots.tick_labels(labels)
    if not named and drawn:  # a CJK font is installed here: names are drawn after all
        pytest.skip("a CJK font is installed")
    assert drawn is named and (ticks == labels if named else ticks == ["#1", "#2"])
    suite = {"labels": labels}
    for name in ("tuned", "baseline"):
        suite[name] = class_metrics([0, 1, 1], [0, 1, 0], labels, CI, 0)
    uri = plots.confusion_matrices(suite, ("base", "tuned", "baseline"), normalize=True)
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.width > 1.6 * image.height  # two matrices side by side; no base column


def test_rows_shared_between_real_test_and_train_or_validation_are_warned_about() -> None:
    from synthtune.report.sections import run_warnings

    real = {
        "rows_read": 50,
        "duplicates": 0,
        "duplicates_dropped": 0,
        "duplicates_policy": "keep",
        "overlap": {"train_test": 2, "train_validation": 0, "validation_test": 1},
    }
    state = {"mix": {"summary": {"real": real}}}
    warnings = run_warnings(state, {"task": "causal_lm"}, None, {})
    assert "real data: 2 rows of the test split also occur in the train split" in warnings[0]
    assert "real data: 1 rows of the test split also occur in the validation split" in (warnings[1])
    dropped = {**real, "duplicates_policy": "drop", "duplicates_dropped": 3}
    after = run_warnings({"mix": {"summary": {"real": dropped}}}, {"task": "causal_lm"}, None, {})
    assert after == [
        "real data: 3 of 50 real rows were dropped as duplicates (mix.real.duplicates: drop)"
    ]
