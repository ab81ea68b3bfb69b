"""Dedup: exact (normalised hash), near (MinHash LSH over character n-grams), semantic
(embedding cosine, optional). Each cluster keeps its best record; the others are rejected with
the id of the one kept.

Character n-grams (not words) make MinHash work for Chinese, which has no spaces.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from synthtune import embeddings
from synthtune.quality import minhash
from synthtune.records import Record

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """NFKC, lower case, punctuation and whitespace removed: what 'the same text' means."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text).lower())


def content_text(record: Record) -> str:
    """What exact dedup compares: the text, plus the media file names when there are any
    (content hashes, see ``vision.image_strategy``): one caption on two images is not
    a duplicate, one image twice with one caption is."""
    paths = [m.path for m in record.payload.media or ()]
    return "\n".join([record.payload.text("all"), *paths])


def exact_key(text: str) -> str:
    """Equal for texts that are 'the same' (``normalise``)."""
    return hashlib.sha1(normalise(text).encode()).hexdigest()


def key_clusters(keys: Sequence[str]) -> list[list[int]]:
    """Groups of two or more positions sharing a key, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def exact_clusters(texts: Sequence[str]) -> list[list[int]]:
    return key_clusters([exact_key(t) for t in texts])


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            out.setdefault(self.find(i), []).append(i)
        return [g for g in out.values() if len(g) > 1]


def minhash_signatures(texts: Sequence[str], num_perm: int = 128, k: int = 5) -> np.ndarray:
    """(len(texts), num_perm) MinHash signatures of the normalised texts' character k-grams;
    each row depends on its own text only, so shards of texts can be signed apart."""
    norm = [normalise(t) for t in texts]
    hashes, owner = minhash.shingle_hashes(norm, k)
    return minhash.signatures(hashes, owner, len(norm), num_perm)


def minhash_clusters(
    texts: Sequence[str],
    threshold: float,
    num_perm: int = 128,
    k: int = 5,
    sig: np.ndarray | None = None,
) -> list[list[int]]:
    """Clusters of near-duplicates: LSH candidates confirmed by the exact Jaccard of their
    character-k-gram sets (see ``quality.minhash`` for why this is vectorised by hand).
    ``sig``: the texts' ``minhash_signatures`` when they were computed elsewhere (shards)."""
    if sig is None:
        sig = minhash_signatures(texts, num_perm, k)
    # Banding tuned for recall (false-negative weight 0.9): candidates are confirmed exactly
    # below, so a false positive costs one set intersection, while a balanced choice
    # (b=9, r=13 at 0.8) misses 7 % of pairs at Jaccard 0.9.
    bands, rows = minhash.lsh_params(threshold, num_perm, fn_weight=0.9)
    candidates = sorted(minhash.band_candidates(sig, bands, rows))
    # the shingle sets of the candidates only, hashed in one vectorised call
    members = sorted({i for pair in candidates for i in pair})
    position = {i: p for p, i in enumerate(members)}
    hashes, owner = minhash.shingle_hashes([normalise(texts[i]) for i in members], k)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=len(members)))])
    unique: dict[int, np.ndarray] = {}

    def shingle_set(i: int) -> np.ndarray:
        if i not in unique:
            p = position[i]
            unique[i] = np.unique(hashes[offsets[p] : offsets[p + 1]])
        return unique[i]

    uf = UnionFind(len(texts))
    for i, j in candidates:
        a, b = shingle_set(i), shingle_set(j)
        shared = len(np.intersect1d(a, b, assume_unique=True))
        if shared / (len(a) + len(b) - shared) >= threshold:
            uf.union(i, j)
    return uf.groups()


def embedding_clusters(vectors: np.ndarray, threshold: float, block: int = 2048) -> list[list[int]]:
    """Clusters of rows whose cosine similarity is at least ``threshold`` (blocked matmul)."""
    unit = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    uf = UnionFind(len(unit))
    for start in range(0, len(unit), block):
        sims = unit[start : start + block] @ unit.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows + start, cols, strict=True):
            if r < c:
                uf.union(int(r), int(c))
    return uf.groups()


def keep_best(
    records: list[Record],
    clusters: list[list[int]],
    kind: str,
    better: Callable[[Record], tuple[float, ...]],
) -> int:
    """Reject all but the best record of each cluster; returns how many were rejected."""
    rejected = 0
    for cluster in clusters:
        members = [records[i] for i in cluster]
        best = max(members, key=better)
        for record in members:
            if record is not best:
                record.quality.setdefault("dedup", {})[kind] = best.id
                record.reject(f"dedup: {kind} duplicate (kept {best.id})")
                rejected += 1
    return rejected


def preference(record: Record) -> tuple[float, ...]:
    """Best of a cluster: still accepted, then the fullest reply, then the earliest request."""
    return (
        float(record.status == "accepted"),
        float(len(record.payload.text("response"))),
        -float(record.lineage.get("request_index", 0)),
    )


def embed_texts(texts: Sequence[str], model: str, batch_size: int) -> np.ndarray:
    """Embeddings for semantic dedup (``synthtune.embeddings``); a missing dependency is
    reported against ``quality.dedup.embedding``."""
    return embeddings.embed_texts(texts, model, batch_size, field="quality.dedup.embedding")
