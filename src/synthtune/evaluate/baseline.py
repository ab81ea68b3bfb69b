"""The linear baseline of every classification evaluation: TF-IDF + a linear model.

Trained on the real rows of the training split (``mix/train``, ``source == "real"``), or on
every training row when there are none (then ``trained_on`` says so), and scored on the same
test rows as base and tuned with the same metrics and bootstrap resamples. A fine-tuned
transformer that does not beat it has not earned its cost.

Features: word 1-2-grams, or character 1-3-grams for text that is mostly CJK or has no spaces
(a word tokenizer would see each sentence as one token there); ``features: auto`` decides from
the training texts.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from synthtune.config.training import BaselineConfig, BootstrapConfig
from synthtune.evaluate.class_metrics import class_metrics
from synthtune.records import Record

# share of letters that are CJK, and of texts without whitespace, above which char n-grams win
_CJK_SHARE = 0.3
_NO_SPACE_SHARE = 0.5


def _is_cjk(char: str) -> bool:
    name = unicodedata.name(char, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL"))


def choose_features(texts: Sequence[str], requested: str = "auto") -> str:
    """``word`` or ``char``: ``requested`` unless it is ``auto``."""
    if requested != "auto":
        return requested
    letters = [c for text in texts for c in text if c.isalpha()]
    cjk = sum(_is_cjk(c) for c in letters)
    spaceless = sum(not any(c.isspace() for c in text.strip()) for text in texts)
    if letters and cjk / len(letters) >= _CJK_SHARE:
        return "char"
    if texts and spaceless / len(texts) >= _NO_SPACE_SHARE:
        return "char"
    return "word"


def _pipeline(features: str, model: str, seed: int) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    if features == "char":
        vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    else:
        vectorizer = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)
    classifier = (
        LinearSVC(random_state=seed)
        if model == "linear_svc"
        else LogisticRegression(max_iter=2000, random_state=seed)
    )
    return make_pipeline(vectorizer, classifier)


def training_rows(train: list[Record], labels: Sequence[str]) -> tuple[list[Record], str]:
    """``(rows, trained_on)``: the real labelled rows, or every labelled row when none is
    real."""
    known = set(labels)
    rows = [r for r in train if r.payload.label in known]
    real = [r for r in rows if r.source == "real"]
    if real:
        return real, "real"
    return rows, "all (no real training rows)"


def score_baseline(
    train: list[Record],
    test_texts: Sequence[str],
    test_truth: Sequence[int],
    labels: Sequence[str],
    cfg: BaselineConfig,
    bootstrap: BootstrapConfig,
    seed: int,
) -> dict[str, Any]:
    """The baseline's column: the same metrics as the models, plus how it was built; a
    ``skipped`` reason when it cannot be trained (fewer than two classes to learn)."""
    rows, trained_on = training_rows(train, labels)
    ids = {label: i for i, label in enumerate(labels)}
    texts = [r.payload.input_text() for r in rows]
    targets = [ids[str(r.payload.label)] for r in rows]
    features = choose_features(texts, cfg.features)
    about = {
        "features": features,
        "model": cfg.model,
        "trained_on": trained_on,
        "train_rows": len(rows),
    }
    if len(set(targets)) < 2:
        return {**about, "skipped": "fewer than two classes among the training rows"}
    pipeline = _pipeline(features, cfg.model, seed).fit(texts, targets)
    predicted = pipeline.predict(list(test_texts)) if len(test_texts) else []
    return {**about, **class_metrics(test_truth, predicted, labels, bootstrap, seed)}
