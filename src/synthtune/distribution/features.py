"""Feature spaces: records -> vectors, and records -> per-record scalar features.

A feature space is fitted once on the reference (real) records and then only transforms, so
vectors of different rounds live in one fixed space and their distances are comparable.
Text spaces read ``payload.text(view)``: ``embedding`` (a sentence-transformers model) and
``tfidf`` (no model: hashed character n-grams, which work for any script, Chinese included).
Image spaces read each record's first image: ``clip`` (a CLIP checkpoint's image tower) and
``pixels`` (pixel statistics, no model). What a space reads is its ``inputs`` method, so the
distances, clusters and schedule downstream never know which kind it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from typing_extensions import Self

from synthtune import plugins
from synthtune.embeddings import embed_texts
from synthtune.errors import StageError
from synthtune.records import Record
from synthtune.textsim import tokens


class TextFeatures(Protocol):
    """A feature space: ``inputs`` turns records into what the space reads (texts, image
    paths), ``fit`` on the reference inputs once, then ``transform`` any inputs to float32
    vectors of shape (n, d), with d fixed by the fit."""

    name: str

    @classmethod
    def from_config(cls, cfg: Any, seed: int, media_root: Path | None = None) -> Self:
        """Build from ``mix.features`` (``media_root``: the run folder, for image paths)."""
        ...

    def inputs(self, records: Sequence[Record], view: View) -> list[Any]: ...

    def fit(self, reference_texts: Sequence[Any]) -> Self: ...

    def transform(self, texts: Sequence[Any]) -> np.ndarray: ...


View = Literal["all", "response", "prompt"]
FEATURE_SPACES = plugins.FEATURE_SPACES  # name -> TextFeatures subclass


class TextInputs:
    """Text spaces read ``payload.text(view)``."""

    def inputs(self, records: Sequence[Record], view: View) -> list[str]:
        return [r.payload.text(view) for r in records]


class EmbeddingFeatures(TextInputs):
    """Unit-length sentence embeddings; the model is the space, so ``fit`` does nothing."""

    name = "embedding"

    def __init__(self, model: str = "all-MiniLM-L6-v2", batch_size: int = 64) -> None:
        self.model = model
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, cfg: Any, seed: int, media_root: Path | None = None) -> Self:
        return cls(model=cfg.model)

    def fit(self, reference_texts: Sequence[str]) -> Self:
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        return embed_texts(
            texts, self.model, self.batch_size, normalize=True, field="mix.features.model"
        )


class HashedTfidfFeatures(TextInputs):
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
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

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

    @classmethod
    def from_config(cls, cfg: Any, seed: int, media_root: Path | None = None) -> Self:
        return cls(components=cfg.components, seed=seed)

    def fit(self, reference_texts: Sequence[str]) -> Self:
        from sklearn.decomposition import TruncatedSVD

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


class ImageFeatures:
    """An image space: each record's first image through ``embed`` (images -> (n, d)).

    Relative media paths resolve inside ``media_root`` (the run directory; never outside it,
    see ``store.resolve_inside``); absolute ones are real data named by the recipe. Images
    are read per batch, so a large pool need not fit in memory. The embedding function is
    the space, so ``fit`` does nothing.
    """

    name = "image"

    def __init__(
        self,
        embed: Callable[[list[Any]], np.ndarray],
        media_root: Path | None = None,
        batch_size: int = 64,
    ) -> None:
        self.embed = embed
        self.media_root = media_root
        self.batch_size = batch_size

    def inputs(self, records: Sequence[Record], view: View) -> list[Path]:
        from synthtune.store import resolve_inside

        paths = []
        for record in records:
            if not record.payload.media:
                raise StageError(
                    f"record {record.id} has no image: the {self.name} feature space "
                    "(mix.features.space) compares image records; use tfidf or embedding"
                )
            path = Path(record.payload.media[0].path)
            if not path.is_absolute():
                if self.media_root is None:
                    raise StageError(f"record {record.id}: relative image path, no run folder")
                path = resolve_inside(self.media_root, str(path))
            paths.append(path)
        return paths

    def fit(self, reference: Sequence[Path]) -> Self:
        return self

    def transform(self, paths: Sequence[Path]) -> np.ndarray:
        from PIL import Image

        out = []
        for start in range(0, len(paths), self.batch_size):
            images = []
            for path in paths[start : start + self.batch_size]:
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
            out.append(np.asarray(self.embed(images), dtype=np.float32))
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


plugins.register_feature_space("embedding", EmbeddingFeatures)
plugins.register_feature_space("tfidf", HashedTfidfFeatures)


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
