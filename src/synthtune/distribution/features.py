"""Feature spaces: texts -> vectors, and records -> per-record scalar features.

A feature space is fitted once on the reference (real) texts and then only transforms, so
vectors of different rounds live in one fixed space and their distances are comparable. Two
spaces are registered: ``embedding`` (a sentence-transformers model) and ``tfidf`` (no model:
hashed character n-grams, which work for any script, Chinese included).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from typing_extensions import Self

from synthtune.embeddings import embed_texts
from synthtune.errors import StageError
from synthtune.records import Record
from synthtune.registry import Registry
from synthtune.textsim import tokens


class TextFeatures(Protocol):
    """A text feature space: ``fit`` on the reference texts once, then ``transform`` any texts
    to float32 vectors of shape (n, d), with d fixed by the fit."""

    name: str

    def fit(self, reference_texts: Sequence[str]) -> Self: ...

    def transform(self, texts: Sequence[str]) -> np.ndarray: ...


FEATURE_SPACES: Registry[Callable[..., TextFeatures]] = Registry("feature space")


class EmbeddingFeatures:
    """Unit-length sentence embeddings; the model is the space, so ``fit`` does nothing."""

    name = "embedding"

    def __init__(self, model: str = "all-MiniLM-L6-v2", batch_size: int = 64) -> None:
        self.model = model
        self.batch_size = batch_size

    def fit(self, reference_texts: Sequence[str]) -> Self:
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        return embed_texts(
            texts, self.model, self.batch_size, normalize=True, field="mix.features.model"
        )


class HashedTfidfFeatures:
    """Character n-gram TF-IDF reduced by SVD, fitted on the reference texts (LSA).

    ``char_wb`` n-grams need no tokenizer, so Chinese (no spaces) works as well as English;
    hashing keeps memory fixed whatever the vocabulary. The IDF weights and the SVD basis come
    from the reference only, which fixes the space across rounds. When the reference has fewer
    rows (or distinct n-grams) than ``components``, the space has that many dimensions instead
    (``dims``): directions beyond the rank would be noise.

    Off-distribution text must stay visible. Each TF-IDF row is L2-normalised over *all* its
    n-grams (those the reference never uses weigh in with the largest IDF) before the
    projection, and one more coordinate holds the *residual*: the length of the row's part
    outside the reference subspace, ``sqrt(1 - |projection|^2)``. A text about something else
    projects to almost nothing and has a residual near 1; normalising after the projection
    (or dropping unknown n-grams before normalising) would make it look like a real text.
    """

    name = "tfidf"

    def __init__(
        self,
        components: int = 64,
        seed: int = 0,
        ngram_range: tuple[int, int] = (1, 3),
        n_features: int = 2**18,
    ) -> None:
        if components < 1:
            raise StageError(f"mix.features.components: {components} must be at least 1")
        self.components = components
        self.seed = seed
        self.hasher = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=ngram_range,
            n_features=n_features,
            alternate_sign=False,
            norm=None,
        )
        # sublinear tf: a long text repeating an n-gram should not outweigh its other n-grams
        self.tfidf = TfidfTransformer(sublinear_tf=True)
        self.svd: TruncatedSVD | None = None
        self.columns = np.zeros(0, dtype=np.int64)
        self.dims = 0
        self._fitted_rows = 0

    def fit(self, reference_texts: Sequence[str]) -> Self:
        counts = self.hasher.transform(list(reference_texts))
        # Only the hashed columns the reference uses: the SVD basis is zero on the others, so
        # the result is the same, and randomized SVD over all 2**18 columns is 2-4x slower
        # (900 demo texts: 6-7 s against 1.5-3 s on a busy 2-core machine).
        self.columns = np.flatnonzero(counts.getnnz(axis=0))
        counts = counts[:, self.columns]
        rank = min(counts.shape[0], len(self.columns))
        if rank == 0:
            raise StageError(
                "tfidf feature space: the reference (real) texts are empty; check mix.real "
                "(path, text field) or use mix.features.space: embedding"
            )
        weighted = self.tfidf.fit_transform(counts)
        self._fitted_rows = counts.shape[0]
        # at most a quarter of the rows: directions fitted on few rows describe those rows
        self.dims = min(self.components, rank, max(2, counts.shape[0] // 4))
        self.svd = TruncatedSVD(n_components=self.dims, random_state=self.seed).fit(weighted)
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        if self.svd is None:
            raise StageError("tfidf feature space: call fit(reference_texts) before transform")
        if not texts:
            return np.zeros((0, self.dims + 1), dtype=np.float32)
        counts = self.hasher.transform(list(texts)).tocsr()
        # sublinear tf as in the fitted transformer: 1 + log(tf)
        counts.data = 1.0 + np.log(counts.data)
        known = counts[:, self.columns]
        known = known.multiply(self.tfidf.idf_).tocsr()
        unseen_idf = float(np.log((1 + self._fitted_rows) / 1.0) + 1.0)
        unknown_sq = (
            np.asarray(counts.multiply(counts).sum(axis=1)).ravel()
            - np.asarray(
                counts[:, self.columns].multiply(counts[:, self.columns]).sum(axis=1)
            ).ravel()
        )
        norm = np.sqrt(
            np.asarray(known.multiply(known).sum(axis=1)).ravel()
            + unseen_idf**2 * np.maximum(unknown_sq, 0.0)
        )
        norm[norm == 0] = 1.0
        reduced = self.svd.transform(known.multiply(1.0 / norm[:, None]).tocsr())
        residual = np.sqrt(np.maximum(1.0 - (reduced**2).sum(axis=1), 0.0))
        return np.hstack([reduced, residual[:, None]]).astype(np.float32)


FEATURE_SPACES.register("embedding", EmbeddingFeatures)
FEATURE_SPACES.register("tfidf", HashedTfidfFeatures)


@dataclass
class ScalarFeatures:
    """Per-record scalar features of a set of records, one entry per feature name.

    ``numeric``: ``chars`` and ``words`` of the text and every numeric slot (``slot.<name>``);
    ``categorical``: ``label`` and every string or boolean slot (``slot.<name>``). A feature
    some records lack holds only the values present, so two sides are compared on what each
    actually has. Slots carry the ``slot.`` prefix so a slot named ``label`` or ``words``
    cannot mix with the built-in features.
    """

    numeric: dict[str, list[float]] = field(default_factory=dict)
    categorical: dict[str, list[str]] = field(default_factory=dict)


def scalar_features(
    records: Sequence[Record], view: Literal["all", "response", "prompt"] = "all"
) -> ScalarFeatures:
    """Numeric and categorical features of ``records`` (see :class:`ScalarFeatures`);
    lengths are of ``payload.text(view)``."""
    numeric: dict[str, list[float]] = {"chars": [], "words": []}
    categorical: dict[str, list[str]] = {}
    for record in records:
        text = record.payload.text(view)
        numeric["chars"].append(float(len(text)))
        numeric["words"].append(float(len(tokens(text))))  # CJK: one word per character
        if record.payload.label is not None:
            categorical.setdefault("label", []).append(record.payload.label)
        for slot, value in record.lineage.get("slots", {}).items():
            _add_slot(f"slot.{slot}", value, numeric, categorical)
    return ScalarFeatures(numeric=numeric, categorical=categorical)


def _add_slot(
    name: str, value: Any, numeric: dict[str, list[float]], categorical: dict[str, list[str]]
) -> None:
    # bool before int: True is an int in Python but a category here
    if isinstance(value, (bool, str)):
        categorical.setdefault(name, []).append(str(value))
    elif isinstance(value, (int, float)) and math.isfinite(value):
        numeric.setdefault(name, []).append(float(value))
