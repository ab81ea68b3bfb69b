"""How much of the intended and of the real distribution a set of records covers.

Three views, each a pure measure:

* **slots**: of the values a recipe declares for each template slot, the share that records
  actually took (``declared_domains`` + ``slot_coverage``);
* **n-grams**: distinct-n, the share of distinct n-grams among all n-grams (Li et al. 2016,
  "A Diversity-Promoting Objective Function for Neural Conversation Models"); tokens are
  words for Latin script and characters for CJK (``textsim.tokens``);
* **clusters**: k-means clusters of the real vectors, and how many of them (and how much real
  mass) the synthetic vectors reach (``ClusterCoverage``). The per-cluster shares are what the
  mix schedule uses to pick what to add next.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any, TypeAlias

import numpy as np
from typing_extensions import Self

from synthtune.config import Recipe
from synthtune.config.generate import ChoiceSlot, RandIntSlot, UniformSlot
from synthtune.errors import StageError
from synthtune.records import Record, canonical_json
from synthtune.textsim import tokens

NUMERIC_BINS = 10
MINIBATCH_ABOVE = 20_000  # rows: above this, full k-means costs more than it adds

Domain: TypeAlias = list[Any] | tuple[float, float]


# --------------------------------------------------------------------------- n-grams
def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over ``texts`` (n-grams never span two texts).

    1.0 means no n-gram repeats; 0.0 when the texts hold no n-gram at all.
    """
    if n < 1:
        raise ValueError(f"distinct_n: n={n} must be at least 1")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        toks = tokens(text)
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        seen.update(grams)
        total += len(grams)
    return len(seen) / total if total else 0.0


# --------------------------------------------------------------------------- slots
def declared_domains(recipe: Recipe) -> dict[str, Domain]:
    """Declared values of each template slot: a list for ``choice`` (every list of a ``by``
    mapping included) and ``(low, high)`` for ``randint`` / ``uniform``.

    ``faker`` and ``template`` slots have no declared domain, and ``sample`` slots draw sets,
    so they are left out. A slot declared by several templates gets the union of its values
    (the widest range); a name declared as a list in one template and a range in another is
    left out, as no single coverage describes it.
    """
    domains: dict[str, Domain] = {}
    conflicting: set[str] = set()
    for template in recipe.generate.templates if recipe.generate is not None else []:
        for name, spec in template.slots.items():
            domain = _domain_of(spec)
            if domain is None:
                continue
            merged = _merge(domains.get(name), domain)
            if merged is None:
                conflicting.add(name)
            else:
                domains[name] = merged
    return {name: d for name, d in domains.items() if name not in conflicting}


def _domain_of(spec: Any) -> Domain | None:
    if isinstance(spec, ChoiceSlot):
        choice = spec.choice
        return _unique(choice if isinstance(choice, list) else list(chain(*choice.values())))
    if isinstance(spec, RandIntSlot):
        return spec.randint
    if isinstance(spec, UniformSlot):
        return spec.uniform
    return None


def _unique(values: list[Any]) -> list[Any]:
    keys: dict[str, Any] = {}
    for value in values:
        keys.setdefault(canonical_json(value), value)
    return list(keys.values())


def _merge(old: Domain | None, new: Domain) -> Domain | None:
    if old is None:
        return new
    if isinstance(old, list) and isinstance(new, list):
        return _unique(old + new)
    if isinstance(old, tuple) and isinstance(new, tuple):
        return (min(old[0], new[0]), max(old[1], new[1]))
    return None


def slot_coverage(records: Sequence[Record], domains: dict[str, Domain]) -> dict[str, float]:
    """Share of each slot's declared domain that ``records`` reached (``lineage.slots``).

    A value list: the share of declared values seen. A range: the share of 10 equal-width bins
    with at least one value; an integer range of fewer than 10 values has one bin per value
    (``randint: [1, 7]`` could otherwise never exceed 0.7). Values outside the domain do not
    count. Every declared slot gets an entry (0.0 when no record has it).
    """
    out: dict[str, float] = {}
    for name, domain in domains.items():
        values = [r.lineage["slots"][name] for r in records if name in r.lineage.get("slots", {})]
        if isinstance(domain, list):
            seen = {canonical_json(v) for v in values}
            declared = {canonical_json(v) for v in domain}
            out[name] = len(seen & declared) / len(declared) if declared else 0.0
        else:
            out[name] = _range_coverage(values, domain)
    return out


def _range_coverage(values: list[Any], domain: tuple[float, float]) -> float:
    low, high = domain
    numbers = np.array(
        [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)],
        dtype=np.float64,
    )
    numbers = numbers[(numbers >= low) & (numbers <= high)]
    if isinstance(low, int) and isinstance(high, int) and high - low + 1 < NUMERIC_BINS:
        bins = high - low + 1
        index = np.rint(numbers - low).astype(np.int64)
    elif high == low:
        bins, index = 1, np.zeros(len(numbers), dtype=np.int64)
    else:
        bins = NUMERIC_BINS
        index = np.minimum(((numbers - low) / (high - low) * bins).astype(np.int64), bins - 1)
    return len(np.unique(index)) / bins


# --------------------------------------------------------------------------- clusters
class ClusterCoverage:
    """k-means clusters of the reference (real) vectors, and how synthetic vectors fill them.

    ``k`` defaults to min(16, n // 5) (at least 2: about five real records per cluster, so a
    cluster is a region of the data rather than one record), and is capped by the number of
    distinct reference rows. Above 20,000 rows MiniBatchKMeans stands in for KMeans. Seeded.
    """

    def __init__(self, k: int | None = None, seed: int = 0) -> None:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        if k is not None and k < 2:
            raise StageError(f"mix.schedule.clusters: {k} must be at least 2")
        self.k = k
        self.seed = seed
        self.model: KMeans | MiniBatchKMeans | None = None
        self.reference_share: list[float] = []

    def fit(self, reference: np.ndarray) -> Self:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        reference = np.asarray(reference)
        distinct = len(np.unique(reference, axis=0)) if len(reference) else 0
        if distinct < 2:
            raise StageError(
                f"cluster coverage needs at least 2 distinct real records, got {distinct}; "
                "add real data (mix.real) or check its text field"
            )
        k = min(self.k or max(2, min(16, len(reference) // 5)), distinct)
        if len(reference) > MINIBATCH_ABOVE:
            self.model = MiniBatchKMeans(n_clusters=k, random_state=self.seed, n_init=3)
        else:
            self.model = KMeans(n_clusters=k, random_state=self.seed, n_init=4)
        labels = self.model.fit_predict(reference)
        self.reference_share = (np.bincount(labels, minlength=k) / len(labels)).tolist()
        return self

    @property
    def clusters(self) -> int:
        return len(self.reference_share)

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """The nearest reference cluster of each row (int64, shape (n,))."""
        if self.model is None:
            raise StageError("cluster coverage: call fit(reference_vectors) before assign")
        if len(vectors) == 0:
            return np.zeros(0, dtype=np.int64)
        return self.model.predict(np.asarray(vectors, dtype=self.model.cluster_centers_.dtype))

    def measure(self, synthetic: np.ndarray) -> dict[str, Any]:
        """``clusters_covered``: share of real clusters holding >= 1 synthetic vector;
        ``mass_covered``: share of real records in those clusters; ``reference_share`` and
        ``synthetic_share`` per cluster (their difference is the cluster's deficit)."""
        counts = np.bincount(self.assign(synthetic), minlength=self.clusters)
        share = counts / counts.sum() if counts.sum() else np.zeros(self.clusters)
        reference = np.asarray(self.reference_share)
        covered = counts > 0
        return {
            "clusters": self.clusters,
            "clusters_covered": float(covered.mean()),
            "mass_covered": float(reference[covered].sum()),
            "reference_share": self.reference_share,
            "synthetic_share": share.tolist(),
        }


# --------------------------------------------------------------------------- report
def coverage_report(
    real_records: Sequence[Record],
    synthetic_records: Sequence[Record],
    vectors_real: np.ndarray,
    vectors_syn: np.ndarray,
    domains: dict[str, Domain],
    clusters: ClusterCoverage | None = None,
) -> dict[str, Any]:
    """A JSON-able summary for the report's before/after tables: slot coverage of the
    synthetic records, distinct-1/2 of both sides, and cluster coverage of the real vectors
    by the synthetic ones (``clusters``, fitted on ``vectors_real``, or fitted here with the
    defaults; None with fewer than 2 distinct real rows)."""
    real_texts = [r.payload.text("all") for r in real_records]
    syn_texts = [r.payload.text("all") for r in synthetic_records]
    if clusters is None and len(np.unique(np.asarray(vectors_real), axis=0)) >= 2:
        clusters = ClusterCoverage().fit(vectors_real)
    return {
        "records": {"real": len(real_records), "synthetic": len(synthetic_records)},
        "slots": slot_coverage(synthetic_records, domains),
        "distinct": {
            side: {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2)}
            for side, texts in (("real", real_texts), ("synthetic", syn_texts))
        },
        "clusters": None if clusters is None else clusters.measure(vectors_syn),
    }
