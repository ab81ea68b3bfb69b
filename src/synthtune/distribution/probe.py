"""The real train split as a fixed yardstick: features, clusters and distances fitted once.

The mix schedule and the evolve loop both ask the same questions of a set of synthetic
records (how far from the real data, which real clusters it under-covers, what it covers), so
both use one ``DistributionProbe``. The feature space and the clusters are fitted on the real
train split only (never the test split) and stay fixed, so measures of different rounds are
comparable. Vectors are cached by record id: a pool that grows by a round is embedded once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from synthtune.config import MixConfig, Recipe
from synthtune.distribution.coverage import ClusterCoverage, coverage_report, declared_domains
from synthtune.distribution.distances import (
    MIN_ROWS,
    DistanceOptions,
    mmd_rbf,
    sliced_wasserstein,
    total_variation,
    wasserstein_1d,
)
from synthtune.distribution.features import FEATURE_SPACES, TextFeatures, scalar_features
from synthtune.realdata import load_real_splits
from synthtune.records import Record

SUPPORT_K = 3  # k of the k-NN balls that make up the real data's support
SUPPORT_QUERY = 10  # real neighbours checked per vector (a ball further away rarely covers it)


def real_train(recipe: Recipe) -> list[Record]:
    """The real records of the train split (``realdata.load_real_splits``, as mix splits)."""
    if recipe.mix.real is None:
        return []
    return load_real_splits(recipe).splits["train"]


def make_space(mix: MixConfig, seed: int, media_root: Path | None = None) -> TextFeatures:
    """The configured space; ``media_root`` (the run folder) resolves relative image paths."""
    return FEATURE_SPACES.get(mix.features.space).from_config(mix.features, seed, media_root)


class DistributionProbe:
    def __init__(
        self,
        real: list[Record],
        mix: MixConfig,
        seed: int,
        domains: Any = None,
        media_root: Path | None = None,
    ):
        # Compare replies with replies: real text-only records are all reply, and for
        # question/answer data the prompt wording and system turns of a template would put
        # every synthetic record off the real manifold.
        from sklearn.neighbors import NearestNeighbors

        self.view: Literal["all", "response"] = "response"
        # A space fitted on some rows sits closer to them than to any new text; fitting it on
        # one half of the real rows and measuring against the other keeps identical data at ~0.
        fit_rows, real = (real[::2], real[1::2]) if len(real) >= 4 * MIN_ROWS else (real, real)
        self.mix = mix
        self.real = real
        space = make_space(mix, seed, media_root)
        self.space = space.fit(space.inputs(fit_rows, self.view))
        self.real_vectors = self.space.transform(self.space.inputs(real, self.view))
        self.clusters = ClusterCoverage(k=mix.schedule.clusters, seed=seed).fit(self.real_vectors)
        # The real data's support, as a union of k-NN balls (Kynkaanniemi et al. 2019,
        # "Improved precision and recall"): a vector is on the real manifold when it lies
        # within some real record's distance to its k-th nearest real neighbour. Off-manifold
        # synthetic records go to the extra "outside" bucket, never counted as under-covered
        # and never injected while other records are left.
        k = min(SUPPORT_K + 1, len(self.real_vectors))
        self.neighbours = NearestNeighbors(n_neighbors=k).fit(self.real_vectors)
        self.radius = self.neighbours.kneighbors(self.real_vectors)[0][:, -1]
        self.opts = DistanceOptions(
            components=mix.distance.components,
            projections=mix.distance.projections,
            bootstrap=mix.distance.bootstrap,
            level=mix.distance.level,
            seed=seed,
        )
        self.real_scalars = scalar_features(real, self.view)
        self.domains = domains or {}
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> DistributionProbe:
        return cls(real_train(recipe), recipe.mix, recipe.seed, declared_domains(recipe))

    # ----------------------------------------------------------------- vectors
    def vectors(self, records: list[Record]) -> np.ndarray:
        missing = [r for r in records if r.id not in self._cache]
        if missing:
            fresh = self.space.transform(self.space.inputs(missing, self.view))
            self._cache.update({r.id: v for r, v in zip(missing, fresh, strict=True)})
        if not records:
            return np.zeros((0, self.real_vectors.shape[1]), dtype=np.float32)
        return np.stack([self._cache[r.id] for r in records])

    def on_manifold(self, vectors: np.ndarray) -> np.ndarray:
        """True where a vector lies inside some real record's k-NN ball."""
        count = min(SUPPORT_QUERY, len(self.real_vectors))
        distances, index = self.neighbours.kneighbors(vectors, n_neighbors=count)
        return (distances <= self.radius[index]).any(axis=1)

    @property
    def reference_share(self) -> np.ndarray:
        """Real share per cluster, plus 0 for the last bucket ("outside every cluster")."""
        return np.append(np.asarray(self.clusters.reference_share), 0.0)

    def cluster_of(self, records: list[Record]) -> np.ndarray:
        """Real cluster per record; ``k`` (the outside bucket) when off the real manifold."""
        if not records:
            return np.zeros(0, dtype=np.int64)
        vectors = self.vectors(records)
        labels = np.asarray(self.clusters.assign(vectors))
        return np.where(self.on_manifold(vectors), labels, len(self.clusters.reference_share))

    # ----------------------------------------------------------------- questions
    def distance(self, records: list[Record]) -> dict[str, Any] | None:
        """Sliced Wasserstein of ``records`` to the real train split (None: too few rows)."""
        if len(records) < MIN_ROWS or len(self.real) < MIN_ROWS:
            return None
        return sliced_wasserstein(self.vectors(records), self.real_vectors, self.opts).as_dict()

    def label_distance(self, records: list[Record], label: str) -> float | None:
        """Sliced Wasserstein (no interval) of ``records`` to the real train rows labelled
        ``label``; None when either side has too few rows."""
        mine = [i for i, r in enumerate(self.real) if str(r.payload.label) == label]
        if len(records) < MIN_ROWS or len(mine) < MIN_ROWS:
            return None
        opts = DistanceOptions(
            components=self.opts.components,
            projections=self.opts.projections,
            bootstrap=0,
            seed=self.opts.seed,
        )
        found = sliced_wasserstein(self.vectors(records), self.real_vectors[mine], opts)
        return round(found.value, 4)

    def label_closeness(self, records: list[Record]) -> np.ndarray:
        """Per record: the distance to the nearest real row of its label (of any label when
        the real rows here have none of it)."""
        from sklearn.neighbors import NearestNeighbors

        out = np.zeros(len(records))
        real_labels = np.array([str(r.payload.label) for r in self.real])
        by_label: dict[str, list[int]] = {}
        for i, record in enumerate(records):
            by_label.setdefault(str(record.payload.label), []).append(i)
        for label, rows in by_label.items():
            mine = real_labels == label
            reference = self.real_vectors[mine] if mine.any() else self.real_vectors
            nearest = NearestNeighbors(n_neighbors=1).fit(reference)
            out[rows] = nearest.kneighbors(self.vectors([records[i] for i in rows]))[0][:, 0]
        return out

    def in_support(self, records: list[Record]) -> list[Record]:
        """The records on the real manifold (the ones mixing could use)."""
        outside = len(self.clusters.reference_share)
        return [r for r, c in zip(records, self.cluster_of(records), strict=True) if c != outside]

    def measure(self, records: list[Record], detail: bool = True) -> dict[str, Any]:
        """The stop distance (``wasserstein``, with interval) and, with ``detail``, MMD, 1-D
        Wasserstein per shared scalar feature, label total variation and cluster coverage."""
        found = self.distance(records)
        ci = None if found is None or found["ci"] is None else [round(x, 4) for x in found["ci"]]
        out: dict[str, Any] = {
            "wasserstein": None if found is None else round(found["value"], 4),
            "wasserstein_ci": ci,
            # what stop decisions compare with the threshold: the interval's upper end, so a
            # small, noisy sample does not stop a schedule by luck
            "wasserstein_upper": ci[1]
            if ci
            else (None if found is None else round(found["value"], 4)),
        }
        if not detail or found is None:
            return out
        vectors = self.vectors(records)
        out["mmd"] = round(mmd_rbf(vectors, self.real_vectors, self.opts).value, 4)
        syn = scalar_features(records, self.view)
        no_ci = DistanceOptions(bootstrap=0, seed=self.opts.seed)
        out["scalars"] = {
            name: round(wasserstein_1d(values, self.real_scalars.numeric[name], no_ci).value, 4)
            for name, values in syn.numeric.items()
            if name in self.real_scalars.numeric
            and min(len(values), len(self.real_scalars.numeric[name])) >= MIN_ROWS
        }
        labels, real_labels = (
            syn.categorical.get("label"),
            self.real_scalars.categorical.get("label"),
        )
        if labels and real_labels:
            out["label_tv"] = round(total_variation(labels, real_labels).value, 4)
        cover = self.clusters.measure(vectors)
        out["clusters_covered"] = round(cover["clusters_covered"], 4)
        out["mass_covered"] = round(cover["mass_covered"], 4)
        return out

    def under_covered(self, pool: list[Record], new: list[Record]) -> list[bool]:
        """For each new record: does it land in a real cluster the pool has too few of?"""
        share = self.reference_share
        counts = np.bincount(self.cluster_of(pool), minlength=len(share)) if pool else None
        pool_share = counts / counts.sum() if counts is not None else np.zeros(len(share))
        short = pool_share < share
        return [bool(short[c]) for c in self.cluster_of(new)] if new else []

    def coverage(self, records: list[Record]) -> dict[str, Any]:
        """Slot, n-gram and cluster coverage of the real data by ``records`` (for the report)."""
        return coverage_report(
            self.real,
            records,
            self.real_vectors,
            self.vectors(records),
            self.domains,
            clusters=self.clusters,
        )
