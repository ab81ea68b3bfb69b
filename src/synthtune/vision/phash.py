"""Perceptual-hash near-duplicate detection (``imagehash`` pHash, 64 bits by default).

pHash keeps the low-frequency DCT signs of a 32x32 grey thumbnail, so a re-encoded, slightly
resized or re-compressed copy lands within a few bits of the original while unrelated images
differ in about half of them (32 of 64). Pairs are found with one matrix product per block
of rows: for 0/1 vectors, ``hamming = |a| + |b| - 2 a.b``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


def perceptual_hashes(images: Sequence[Image.Image], hash_size: int = 8) -> np.ndarray:
    """(n, hash_size**2) boolean pHash bits of each image."""
    import imagehash  # lazy: the `vision` extra

    if not images:
        return np.zeros((0, hash_size * hash_size), dtype=bool)
    return np.stack([imagehash.phash(im, hash_size=hash_size).hash.ravel() for im in images])


def hamming_pairs(bits: np.ndarray, max_distance: int, block: int = 2048) -> list[tuple[int, int]]:
    """Index pairs ``i < j`` whose hashes differ in at most ``max_distance`` bits."""
    ones = bits.astype(np.float32)
    counts = ones.sum(axis=1)
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(ones), block):
        part = ones[start : start + block]
        distance = counts[start : start + block, None] + counts[None, :] - 2 * (part @ ones.T)
        rows, cols = np.nonzero(distance <= max_distance + 0.5)
        pairs.extend(
            (int(r) + start, int(c)) for r, c in zip(rows, cols, strict=True) if r + start < c
        )
    return pairs
