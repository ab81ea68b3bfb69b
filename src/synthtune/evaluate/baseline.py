"""The linear baseline of every classification evaluation: TF-IDF + a linear model.

Trained on the real rows of the training split (``mix/train``, ``source == "real"``), or on
every training row when there are none (then ``trained_on`` says so), and scored on the same
test rows as base and tuned with the same metrics and bootstrap resamples. A fine-tuned
transformer that does not beat it has not earned its cost.

Features: word 1-2-grams, or character 1-3-grams for text that is mostly CJK or has no spaces
(a word tokenizer would see each sentence as one token there), or character 2-5-grams inside
word boundaries (style, spelling, hashtags). ``features: auto`` and ``c: auto`` are chosen as a
practitioner would: on the validation rows (real, labelled), never on the test rows; without
validation rows, word n-grams and C = 1 (scikit-learn's default).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

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


_ANALYZERS: dict[str, tuple[str, tuple[int, int]]] = {
    "word": ("word", (1, 2)),
    "char": ("char", (1, 3)),
    "char_wb": ("char_wb", (2, 5)),
}


def _pipeline(features: str, model: str, seed: int, c: float = 1.0) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    analyzer, ngrams = _ANALYZERS[features]
    vectorizer = TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, sublinear_tf=True)
    classifier = (
        LinearSVC(C=c, random_state=seed)
        if model == "linear_svc"
        else LogisticRegression(C=c, max_iter=2000, random_state=seed)
    )
    return make_pipeline(vectorizer, classifier)


def _candidates(texts: Sequence[str], cfg: BaselineConfig) -> list[tuple[str, float]]:
    """(features, C) pairs to choose from on the validation rows."""
    if cfg.features != "auto":
        features = [cfg.features]
    elif choose_features(texts) == "char":
        features = ["char"]
    else:
        features = ["word", "char_wb"]
    cs = [1.0, 10.0] if cfg.c == "auto" else [float(cfg.c)]
    return [(f, c) for f in features for c in cs]


def training_rows(train: list[Record], labels: Sequence[str]) -> tuple[list[Record], str]:
    """``(rows, trained_on)``: the real labelled rows, or every labelled row when none is
    real."""
    known = set(labels)
    rows = [r for r in train if r.payload.label in known]
    real = [r for r in rows if r.source == "real"]
    if real:
        return real, "real"
    return rows, "all (no real training rows)"


def _labelled(rows: Sequence[Record], ids: dict[str, int]) -> tuple[list[str], list[int]]:
    kept = [r for r in rows if r.payload.label in ids]
    return [r.payload.input_text() for r in kept], [ids[str(r.payload.label)] for r in kept]


def score_baseline(
    train: list[Record],
    val: list[Record],
    test_texts: Sequence[str],
    test_truth: Sequence[int],
    labels: Sequence[str],
    cfg: BaselineConfig,
    bootstrap: BootstrapConfig,
    seed: int,
) -> dict[str, Any]:
    """The baseline's column: the same metrics as the models, plus how it was built (and,
    when settings were chosen, each candidate's validation accuracy); a ``skipped`` reason
    when it cannot be trained (fewer than two classes to learn)."""
    rows, trained_on = training_rows(train, labels)
    ids = {label: i for i, label in enumerate(labels)}
    texts, targets = _labelled(rows, ids)
    val_texts, val_targets = _labelled([r for r in val if r.source == "real"], ids)
    about: dict[str, Any] = {"model": cfg.model, "trained_on": trained_on, "train_rows": len(rows)}
    if len(set(targets)) < 2:
        return {**about, "skipped": "fewer than two classes among the training rows"}
    candidates = _candidates(texts, cfg)
    if val_texts and len(candidates) > 1:
        scored = {}
        for option in candidates:
            fitted = _pipeline(option[0], cfg.model, seed, option[1]).fit(texts, targets)
            hits = fitted.predict(val_texts) == np.asarray(val_targets)
            scored[option] = float(hits.mean())
        features, c = max(candidates, key=lambda option: scored[option])  # first on ties
        about["chosen_on_validation"] = {
            f"{f} C={value:g}": round(accuracy, 4) for (f, value), accuracy in scored.items()
        }
    else:
        features = choose_features(texts, cfg.features)
        c = 1.0 if cfg.c == "auto" else float(cfg.c)
    about.update({"features": features, "c": c})
    pipeline = _pipeline(features, cfg.model, seed, c).fit(texts, targets)
    predicted = pipeline.predict(list(test_texts)) if len(test_texts) else []
    return {**about, **class_metrics(test_truth, predicted, labels, bootstrap, seed)}
