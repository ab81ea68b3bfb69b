"""Class-level metrics, bootstrap intervals and the TF-IDF baseline on small known inputs."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from synthtune.config.training import BaselineConfig, BootstrapConfig
from synthtune.evaluate.baseline import choose_features, score_baseline, training_rows
from synthtune.evaluate.class_metrics import bootstrap_intervals, class_metrics
from synthtune.records import Message, Payload, Record

LABELS = ["negative", "neutral", "positive", "unused"]
TRUTH = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2]
PRED = [0, 0, 1, 2, 1, 0, 2, 2, 2, 1, 2, 2]
CI = BootstrapConfig(resamples=500)


def test_metrics_match_scikit_learn() -> None:
    out = class_metrics(TRUTH, PRED, LABELS, CI, seed=0)
    assert out["accuracy"] == pytest.approx(accuracy_score(TRUTH, PRED), abs=1e-4)
    # macro over the classes seen in truth or predictions ("unused" is neither)
    assert out["macro_f1"] == pytest.approx(f1_score(TRUTH, PRED, average="macro"), abs=1e-4)
    assert out["weighted"]["f1"] == pytest.approx(
        f1_score(TRUTH, PRED, average="weighted"), abs=1e-4
    )
    p, r, f, s = precision_recall_fscore_support(TRUTH, PRED, labels=[0, 1, 2], zero_division=0)
    for i, label in enumerate(LABELS[:3]):
        row = out["per_class"][label]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx(
            (p[i], r[i], f[i]), abs=1e-4
        )
        assert row["support"] == s[i]
    assert out["per_class"]["unused"] == {"precision": 0, "recall": 0, "f1": 0, "support": 0}
    assert out["confusion_matrix"][0] == [2, 1, 1, 0]  # true negative: 2 right, 1 neutral, 1 pos
    assert np.asarray(out["confusion_matrix"]).sum() == out["n"] == len(TRUTH)


def test_bootstrap_interval_brackets_the_value_is_seeded_and_narrows_with_more_data() -> None:
    out = class_metrics(TRUTH, PRED, LABELS, CI, seed=0)
    for name in ("accuracy", "macro_f1"):
        low, high = out["ci"][name]
        assert low <= out[name] <= high and high - low > 0.1  # 12 records: a wide interval
    assert class_metrics(TRUTH, PRED, LABELS, CI, seed=0)["ci"] == out["ci"]
    assert class_metrics(TRUTH, PRED, LABELS, CI, seed=1)["ci"] != out["ci"]
    big = class_metrics(TRUTH * 50, PRED * 50, LABELS, CI, seed=0)["ci"]["accuracy"]
    assert big[1] - big[0] < (out["ci"]["accuracy"][1] - out["ci"]["accuracy"][0]) / 4


def test_bootstrap_chunks_give_the_same_answer_as_one_pass(monkeypatch) -> None:
    from synthtune.evaluate import class_metrics as module

    whole = bootstrap_intervals(TRUTH, PRED, 4, CI, seed=3)
    monkeypatch.setattr(module, "_CHUNK_CELLS", len(TRUTH) * 7)  # 7 resamples per chunk
    assert bootstrap_intervals(TRUTH, PRED, 4, CI, seed=3) == whole


def test_bootstrap_coverage_of_accuracy_is_near_nominal() -> None:
    """Draw test sets from a known 80 %-accurate model: the 95 % interval holds 0.8 in
    roughly 95 % of them (percentile bootstrap, n=200)."""
    rng = np.random.default_rng(0)
    hits = 0
    for trial in range(60):
        truth = rng.integers(0, 2, 200)
        pred = np.where(rng.random(200) < 0.8, truth, 1 - truth)
        low, high = bootstrap_intervals(truth, pred, 2, BootstrapConfig(resamples=300), trial)[
            "accuracy"
        ]
        hits += low <= 0.8 <= high
    assert 0.85 <= hits / 60 <= 1.0


def test_no_resamples_no_interval() -> None:
    assert class_metrics(TRUTH, PRED, LABELS, BootstrapConfig(resamples=0), 0)["ci"] == {}


def _record(text: str, label: str, source: str = "real") -> Record:
    return Record.create(
        source, Payload(messages=[Message(role="user", content=text)], label=label)
    )


def test_features_auto_picks_char_for_cjk_and_spaceless_text() -> None:
    assert choose_features(["Shares surge after record profit", "Bank stock slides"]) == "word"
    assert choose_features(["合同纠纷案件的审理", "劳动争议仲裁申请"]) == "char"
    assert choose_features(["thequickbrownfox", "jumpsoverthelazydog"]) == "char"
    assert choose_features(["合同纠纷案件的审理"], "word") == "word"  # an explicit choice wins


WORDS = {
    "positive": ["surge", "rally", "soar", "climb"],
    "negative": ["plunge", "slump", "sink", "slide"],
}


def _rows(source: str, n: int, offset: int = 0) -> list[Record]:
    out = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        word = WORDS[label][i % 4]
        out.append(_record(f"Company {i + offset} shares {word} today", label, source))
    return out


@pytest.mark.parametrize("model", ["logreg", "linear_svc"])
def test_baseline_learns_from_real_rows_only(model: str) -> None:
    # synthetic rows with flipped labels: a baseline that used them would fail
    flipped = [
        _record(
            r.payload.input_text(),
            "negative" if r.payload.label == "positive" else "positive",
            "synthetic",
        )
        for r in _rows("synthetic", 60, 1000)
    ]
    train = _rows("real", 40) + flipped
    test = _rows("real", 20, 500)
    labels = ["negative", "positive"]
    truth = [labels.index(str(r.payload.label)) for r in test]
    texts = [r.payload.input_text() for r in test]
    cfg = BaselineConfig(model=model)
    out = score_baseline(train, [], texts, truth, labels, cfg, CI, seed=0)
    assert out["trained_on"] == "real" and out["train_rows"] == 40
    assert out["features"] == "word" and out["model"] == model and out["c"] == 1.0
    assert out["accuracy"] >= 0.9 and out["ci"]["accuracy"][1] <= 1.0


def test_baseline_without_real_rows_uses_all_and_says_so() -> None:
    rows, trained_on = training_rows(_rows("synthetic", 6), ["negative", "positive"])
    assert len(rows) == 6 and trained_on.startswith("all")


def test_baseline_with_one_class_is_skipped_with_the_reason() -> None:
    train = [_record(f"text {i}", "positive") for i in range(5)]
    out = score_baseline(train, [], ["x"], [0], ["negative", "positive"], BaselineConfig(), CI, 0)
    assert "fewer than two classes" in out["skipped"] and "accuracy" not in out


def test_baseline_settings_are_chosen_on_validation_rows_never_on_test() -> None:
    # the label is a suffix glued to the word ("...zq" vs "...xv"): word n-grams see only
    # unseen words, character n-grams see the suffix; validation must pick char_wb
    def rows(n: int, offset: int) -> list[Record]:
        return [
            _record(f"item {i + offset}{'zq' if i % 2 else 'xv'} today", "pos" if i % 2 else "neg")
            for i in range(n)
        ]

    labels = ["neg", "pos"]
    test = rows(20, 900)
    truth = [labels.index(str(r.payload.label)) for r in test]
    texts = [r.payload.input_text() for r in test]
    out = score_baseline(rows(40, 0), rows(20, 500), texts, truth, labels, BaselineConfig(), CI, 0)
    assert out["features"] == "char_wb"
    assert set(out["chosen_on_validation"]) == {
        "word C=1",
        "word C=10",
        "char_wb C=1",
        "char_wb C=10",
    }
    assert out["chosen_on_validation"]["word C=1"] <= 0.6 < out["accuracy"]
    fixed = score_baseline(
        rows(40, 0),
        rows(20, 500),
        texts,
        truth,
        labels,
        BaselineConfig(features="word", c=1),
        CI,
        0,
    )
    assert fixed["features"] == "word" and "chosen_on_validation" not in fixed
