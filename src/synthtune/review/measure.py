"""What expert reviews say about the machine: each tier's precision and recall estimated from
a stratified review sample, agreement between reviewers (and with the LLM judge), and batch
decisions with a stated error rate.

**Precision and recall from a sample.** The review sample is stratified by tier outcome:
records the filter accepted, and records each tier rejected (the first tier that rejected
them). Within stratum ``h`` (``N_h`` records, ``n_h`` reviewed, ``b_h`` judged bad) the bad
share is ``p_h``. A tier's precision is the bad share of what it rejected (``p_t``); its
recall is the share of all bad records that it rejected, ``N_t p_t / sum_h N_h p_h``: the
strata weighted back to the population. Intervals come from Jeffreys posteriors
``Beta(b_h + 1/2, n_h - b_h + 1/2)`` per stratum, pushed through the ratio by seeded
Monte Carlo (percentiles of 4,000 draws): a ratio of proportions has no closed-form Wilson
interval, and Jeffreys intervals keep close to nominal coverage at small counts (Brown, Cai
& DasGupta 2001). A reviewer who errs with a known rate ``e`` (measured on overlap or gold
items) is corrected for by Rogan–Gladen, ``p = (p_observed - e) / (1 - 2e)``, in every draw.

**Batch decisions.** A generated batch is accepted when the one-sided Clopper–Pearson upper
bound of its sampled defect rate is at most the acceptable quality level (AQL), rejected
when the lower bound is above it, and sent for more reviews otherwise. Sequential looks
split the risk evenly (Bonferroni over the looks allowed), so the chance of accepting a
batch worse than the AQL stays within ``risk`` however many looks it takes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ACCEPTED = "accepted"
DRAWS = 4_000
TRUST_KAPPA = 0.6  # below it (moderate agreement or worse), a tier's labels are not trusted


@dataclass(frozen=True)
class Stratum:
    """One tier outcome: ``size`` records in the population, ``reviewed`` of them judged by
    experts, ``bad`` of those judged bad (reject or edit)."""

    size: int
    reviewed: int
    bad: int


@dataclass(frozen=True)
class Estimate:
    value: float | None
    low: float
    high: float

    def as_dict(self) -> dict[str, Any]:
        value = None if self.value is None else round(self.value, 4)
        return {"value": value, "ci": [round(self.low, 4), round(self.high, 4)]}


def _draws(
    stratum: Stratum, rng: np.random.Generator, reviewer_error: float, draws: int
) -> np.ndarray:
    good = stratum.reviewed - stratum.bad
    p = rng.beta(stratum.bad + 0.5, good + 0.5, size=draws)
    if reviewer_error:
        p = np.clip((p - reviewer_error) / (1 - 2 * reviewer_error), 0.0, 1.0)
    return p


def _point(stratum: Stratum, reviewer_error: float) -> float | None:
    if not stratum.reviewed:
        return None
    p = stratum.bad / stratum.reviewed
    if reviewer_error:
        p = min(1.0, max(0.0, (p - reviewer_error) / (1 - 2 * reviewer_error)))
    return p


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    finite = values[np.isfinite(values)]
    if not len(finite):
        return 0.0, 1.0
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def tier_quality(
    strata: dict[str, Stratum],
    level: float = 0.95,
    reviewer_error: float = 0.0,
    seed: int = 0,
    draws: int = DRAWS,
) -> dict[str, dict[str, Estimate]]:
    """Precision and recall of each rejecting tier and of the whole filter (``"all"``), from
    the review sample's strata: ``strata[ACCEPTED]`` is what the filter kept, every other key
    a tier's rejections (module docstring). ``reviewer_error``: the reviewers' error rate."""
    if not 0 <= reviewer_error < 0.5:
        raise ValueError("reviewer_error must be in [0, 0.5)")
    rng = np.random.default_rng(seed)
    names = sorted(strata)
    sampled = {h: _draws(strata[h], rng, reviewer_error, draws) for h in names}
    bad_mass = {h: strata[h].size * sampled[h] for h in names}
    total_bad = sum(bad_mass.values())
    tiers = [h for h in names if h != ACCEPTED]
    out: dict[str, dict[str, Estimate]] = {}
    points = {h: _point(strata[h], reviewer_error) for h in names}

    def point_recall(chosen: list[str]) -> float | None:
        if any(points[h] is None for h in names):
            return None
        total = sum(strata[h].size * (points[h] or 0.0) for h in names)
        hit = sum(strata[h].size * (points[h] or 0.0) for h in chosen)
        return hit / total if total else None

    with np.errstate(divide="ignore", invalid="ignore"):
        for chosen, label in [*[([t], t) for t in tiers], (tiers, "all")]:
            rejected = sum(strata[h].size for h in chosen)
            hit = np.sum([bad_mass[h] for h in chosen], axis=0)
            precision_draws = np.asarray(hit / max(rejected, 1))
            recall_draws = np.asarray(hit / total_bad)
            reviewed = sum(strata[h].reviewed for h in chosen)
            bad = sum(strata[h].bad for h in chosen)
            precision_point = None
            if reviewed:
                precision_point = _point(Stratum(rejected, reviewed, bad), reviewer_error)
            out[label] = {
                "precision": Estimate(precision_point, *_interval(precision_draws, level)),
                "recall": Estimate(point_recall(chosen), *_interval(recall_draws, level)),
            }
    return out


# ----------------------------------------------------------------------------- agreement


def kappa(a: Sequence[Any], b: Sequence[Any], level: float = 0.95, seed: int = 0) -> Estimate:
    """Cohen's kappa of two raters over the same items (scikit-learn), with a percentile
    bootstrap interval over items (2,000 resamples, seeded)."""
    from sklearn.metrics import cohen_kappa_score

    if len(a) != len(b) or not len(a):
        raise ValueError("kappa needs two equally long, non-empty lists of labels")
    value = float(cohen_kappa_score(list(a), list(b)))
    # the bootstrap on integer codes and bincount: 2,000 scikit-learn calls took 4 s
    labels = {v: i for i, v in enumerate(sorted(set(a) | set(b), key=str))}
    k = len(labels)
    x = np.array([labels[v] for v in a])
    y = np.array([labels[v] for v in b])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(x), (2_000, len(x)))
    cells = (x[picks] * k + y[picks]) + (np.arange(len(picks)) * k * k)[:, None]
    tables = np.bincount(cells.ravel(), minlength=len(picks) * k * k).reshape(-1, k, k)
    n = len(x)
    observed = np.trace(tables, axis1=1, axis2=2) / n
    expected = (tables.sum(axis=2) * tables.sum(axis=1)).sum(axis=1) / n**2
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = (observed - expected) / (1 - expected)
    low, high = _interval(boot, level)
    return Estimate(value, low, high)


def alpha(ratings: Sequence[Sequence[Any]], level: float = 0.95, seed: int = 0) -> Estimate:
    """Krippendorff's alpha (nominal; the ``krippendorff`` package) of raters x items, None
    where a rater did not rate an item; percentile bootstrap interval over items."""
    import krippendorff

    labels = sorted({v for row in ratings for v in row if v is not None}, key=str)
    code = {v: float(i) for i, v in enumerate(labels)}
    data = np.array([[np.nan if v is None else code[v] for v in row] for row in ratings])
    value = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(500):
        cols = data[:, rng.integers(0, data.shape[1], data.shape[1])]
        if len(np.unique(cols[np.isfinite(cols)])) > 1:
            with warnings.catch_warnings():  # a resample with no disagreement to expect
                warnings.simplefilter("ignore", RuntimeWarning)
                boot.append(
                    krippendorff.alpha(reliability_data=cols, level_of_measurement="nominal")
                )
    low, high = _interval(np.asarray(boot, dtype=float), level) if boot else (value, value)
    return Estimate(value, low, high)


def trust_warning(name: str, agreement: Estimate, threshold: float = TRUST_KAPPA) -> str | None:
    """A warning when agreement is too low to trust ``name`` (its point estimate below
    ``threshold``: moderate agreement or worse, Landis & Koch)."""
    if agreement.value is None or agreement.value >= threshold:
        return None
    return (
        f"{name}: agreement {agreement.value:.2f} (95 % CI {agreement.low:.2f}-"
        f"{agreement.high:.2f}) is below {threshold:g}; do not trust its decisions unreviewed"
    )


# ------------------------------------------------------------------------ batch decisions


def clopper_pearson(bad: int, n: int, level: float) -> tuple[float, float]:
    """One-sided ``level`` Clopper–Pearson bounds (lower, upper) of a binomial proportion."""
    from scipy.stats import beta

    low = 0.0 if bad == 0 else float(beta.ppf(1 - level, bad, n - bad + 1))
    high = 1.0 if bad == n else float(beta.ppf(level, bad + 1, n - bad))
    return low, high


@dataclass(frozen=True)
class BatchDecision:
    decision: str  # "accept" | "reject" | "review more"
    reviewed: int
    bad: int
    bound: tuple[float, float]  # one-sided bounds of the defect rate at 1 - risk / looks
    aql: float
    risk: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reviewed": self.reviewed,
            "bad": self.bad,
            "defect_rate_bounds": [round(self.bound[0], 4), round(self.bound[1], 4)],
            "aql": self.aql,
            "risk": self.risk,
            "statement": (
                f"defect rate <= {self.bound[1]:.3f} with {100 * (1 - self.risk):g} % confidence"
                if self.decision == "accept"
                else f"defect rate >= {self.bound[0]:.3f} with {100 * (1 - self.risk):g} % "
                "confidence"
                if self.decision == "reject"
                else f"defect rate between {self.bound[0]:.3f} and {self.bound[1]:.3f}: review more"
            ),
        }


def batch_decision(
    bad: int, reviewed: int, aql: float, risk: float, looks: int = 1
) -> BatchDecision:
    """Accept, reject or review more, at one of ``looks`` planned looks (module docstring)."""
    if not 0 < aql < 1 or not 0 < risk < 1 or looks < 1:
        raise ValueError("aql and risk must be in (0, 1), looks at least 1")
    level = 1 - risk / looks
    low, high = clopper_pearson(bad, reviewed, level) if reviewed else (0.0, 1.0)
    decision = "accept" if high <= aql else "reject" if low > aql else "review more"
    return BatchDecision(decision, reviewed, bad, (low, high), aql, risk)


def sequential_decision(
    review: Callable[[int], int],
    aql: float,
    risk: float,
    step: int = 20,
    max_reviews: int = 200,
) -> BatchDecision:
    """Ask ``review(k)`` (how many of the next ``k`` sampled records are bad) ``step`` at a
    time until the batch is accepted or rejected, or ``max_reviews`` is reached (then the
    answer stays "review more": the batch is not accepted)."""
    looks = -(-max_reviews // step)
    reviewed = bad = 0
    decision = batch_decision(0, 0, aql, risk, looks)
    while reviewed < max_reviews:
        k = min(step, max_reviews - reviewed)
        bad += review(k)
        reviewed += k
        decision = batch_decision(bad, reviewed, aql, risk, looks)
        if decision.decision != "review more":
            break
    return decision


# ---------------------------------------------------------------------- from a run's reviews


def outcome_strata(records: Sequence[Any], decisions: dict[str, Any]) -> dict[str, Stratum]:
    """The quality stage's records by tier outcome (``records.tier_outcome``): how many,
    how many reviewed, and how many of those the experts judged bad (not accepted)."""
    from synthtune.records import tier_outcome

    sizes: dict[str, int] = {}
    reviewed: dict[str, int] = {}
    bad: dict[str, int] = {}
    for record in records:
        outcome = tier_outcome(record)
        sizes[outcome] = sizes.get(outcome, 0) + 1
        decision = decisions.get(record.id)
        if decision is not None:
            reviewed[outcome] = reviewed.get(outcome, 0) + 1
            bad[outcome] = bad.get(outcome, 0) + (decision.decision != "accept")
    return {h: Stratum(sizes[h], reviewed.get(h, 0), bad.get(h, 0)) for h in sizes}


def measure_run(run_dir: Any, records: Sequence[Any], decisions: dict[str, Any]) -> dict[str, Any]:
    """``measure_reviews`` with the review settings (reviewer error, aql, risk) and the
    judge's pass mark of the run's locked recipe."""
    from pathlib import Path

    import yaml

    lock = yaml.safe_load((Path(run_dir) / "recipe.lock.yaml").read_text(encoding="utf-8"))
    quality = lock["recipe"]["quality"]
    review = quality["review"]
    return measure_reviews(
        records,
        decisions,
        reviewer_error=float(review.get("reviewer_error") or 0.0),
        aql=review.get("aql"),
        risk=float(review.get("risk") or 0.05),
        judge_min_score=(quality.get("judge") or {}).get("min_score"),
    )


def measure_reviews(
    records: Sequence[Any],
    decisions: dict[str, Any],
    reviewer_error: float = 0.0,
    aql: float | None = None,
    risk: float = 0.05,
    seed: int = 0,
    judge_min_score: int | None = None,
) -> dict[str, Any]:
    """The quality stage's records and the experts' decisions (``Decision`` by record id) ->
    the strata by tier outcome, each tier's precision and recall, the batch decision on the
    accepted records when ``aql`` is set, and the LLM judge's agreement with the experts
    (Cohen's kappa on pass/fail, ``judge_min_score`` the judge's pass mark) where both
    judged a record. A review is "bad" unless it accepted the record (an edit means the
    record needed fixing)."""
    strata = outcome_strata(records, decisions)
    out: dict[str, Any] = {
        "strata": {
            h: {"records": s.size, "reviewed": s.reviewed, "bad": s.bad}
            for h, s in sorted(strata.items())
        },
        "reviewer_error": reviewer_error,
    }
    tiers_reviewed = [h for h in strata if h != ACCEPTED and strata[h].reviewed]
    if ACCEPTED in strata and strata[ACCEPTED].reviewed and tiers_reviewed:
        quality = tier_quality(strata, reviewer_error=reviewer_error, seed=seed)
        out["tiers"] = {
            tier: {metric: e.as_dict() for metric, e in metrics.items()}
            for tier, metrics in quality.items()
        }
    if aql is not None and ACCEPTED in strata:
        kept = strata[ACCEPTED]
        out["batch"] = batch_decision(kept.bad, kept.reviewed, aql, risk).as_dict()
    if judge_min_score is not None:
        pairs = [
            (r.quality["judge"]["score"] >= judge_min_score, decisions[r.id].decision == "accept")
            for r in records
            if r.id in decisions and "score" in r.quality.get("judge", {})
        ]
        if len(pairs) >= 2 and len({p for pair in pairs for p in pair}) > 1:
            agreement = kappa([j for j, _ in pairs], [e for _, e in pairs], seed=seed)
            out["judge_agreement"] = {
                "items": len(pairs),
                "kappa": agreement.as_dict(),
                "warning": trust_warning("the LLM judge", agreement),
            }
    return out


def expert_agreement(
    by_reviewer: dict[str, dict[str, Any]], seed: int = 0
) -> dict[str, Any] | None:
    """Agreement between reviewers on the records two or more of them judged (accept vs
    not): Cohen's kappa per pair, Krippendorff's alpha over all of them, and a warning when
    the experts themselves disagree too much for their reviews to measure the tiers. None
    with fewer than two reviewers or no shared record."""
    names = sorted(by_reviewer)
    shared = {
        rid
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        for rid in set(by_reviewer[a]) & set(by_reviewer[b])
    }
    if len(names) < 2 or not shared:
        return None
    verdict = {
        name: {rid: d.decision == "accept" for rid, d in by_reviewer[name].items()}
        for name in names
    }
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = sorted(set(verdict[a]) & set(verdict[b]))
            values = [verdict[a][r] for r in common] + [verdict[b][r] for r in common]
            if len(common) >= 2 and len(set(values)) > 1:
                est = kappa(
                    [verdict[a][r] for r in common], [verdict[b][r] for r in common], seed=seed
                )
                pairs.append({"reviewers": [a, b], "items": len(common), "kappa": est.as_dict()})
    items = sorted(shared)
    ratings = [[verdict[n].get(r) for r in items] for n in names]
    out: dict[str, Any] = {"reviewers": names, "shared_items": len(items), "pairs": pairs}
    seen = {v for row in ratings for v in row if v is not None}
    if len(seen) > 1:
        est = alpha(ratings, seed=seed)
        out["alpha"] = est.as_dict()
        out["warning"] = trust_warning("the experts' reviews", est, threshold=0.667)
    return out


# ------------------------------------------------------------------------ refitted thresholds


def refit_threshold(
    scores: Sequence[float],
    bad: Sequence[bool],
    weights: Sequence[float],
    target_precision: float,
    reject_above: bool = True,
) -> dict[str, Any]:
    """The cut-off on ``scores`` that rejects the most bad records (highest recall) while
    the rejected are at least ``target_precision`` bad, from reviewed records with their
    expert verdict (``bad``) and population weights (stratum size / reviews in it).
    ``reject_above``: a record is rejected when its score is above the cut-off (perplexity),
    else below it (a judge score). Returns the cut-off (None when no cut-off reaches the
    target), its precision and recall, and the whole trade-off curve."""
    s = np.asarray(scores, dtype=float)
    b = np.asarray(bad, dtype=bool)
    w = np.asarray(weights, dtype=float)
    if not len(s) or not (len(s) == len(b) == len(w)):
        raise ValueError("refit needs equally long, non-empty scores, verdicts and weights")
    total_bad = float((w * b).sum())
    curve = []
    for cut in np.unique(s):
        rejected = s > cut if reject_above else s < cut
        mass = float(w[rejected].sum())
        hit = float((w * b)[rejected].sum())
        precision = hit / mass if mass else None
        recall = hit / total_bad if total_bad else None
        curve.append({"cut": float(cut), "precision": precision, "recall": recall})
    reaching = [
        c for c in curve if c["precision"] is not None and c["precision"] >= target_precision
    ]
    # the highest recall; among equal recalls the highest precision (fewest good rejected)
    best = max(reaching, key=lambda c: (c["recall"] or 0.0, c["precision"]), default=None)
    return {
        "cut": None if best is None else best["cut"],
        "precision": None if best is None else best["precision"],
        "recall": None if best is None else best["recall"],
        "target_precision": target_precision,
        "curve": curve,
    }


def refit_patch(
    records: Sequence[Any],
    decisions: dict[str, Any],
    target_precision: float,
) -> dict[str, Any]:
    """Refitted perplexity threshold (and judge ``min_score`` when the records were judged)
    from the reviewed records, as ``{"patch": <recipe patch>, "fits": {...}}``. Weights undo
    the stratified sample: each reviewed record stands for its tier outcome's size over its
    reviews."""
    from synthtune.records import tier_outcome

    strata = outcome_strata(records, decisions)
    fits: dict[str, Any] = {}
    patch: dict[str, Any] = {}
    reviewed = [r for r in records if r.id in decisions]

    def weight(record: Any) -> float:
        stratum = strata[tier_outcome(record)]
        return stratum.size / stratum.reviewed

    scored = [r for r in reviewed if "perplexity" in r.quality]
    if scored:
        fit = refit_threshold(
            [r.quality["perplexity"] for r in scored],
            [decisions[r.id].decision != "accept" for r in scored],
            [weight(r) for r in scored],
            target_precision,
        )
        fits["perplexity"] = fit
        if fit["cut"] is not None:
            patch.setdefault("quality", {})["perplexity"] = {"mode": "absolute", "max": fit["cut"]}
    judged = [r for r in reviewed if "score" in r.quality.get("judge", {})]
    if judged:
        fit = refit_threshold(
            [r.quality["judge"]["score"] for r in judged],
            [decisions[r.id].decision != "accept" for r in judged],
            [weight(r) for r in judged],
            target_precision,
            reject_above=False,
        )
        fits["judge"] = fit
        if fit["cut"] is not None:  # rejected below the cut: min_score is the cut itself
            patch.setdefault("quality", {})["judge"] = {"min_score": int(fit["cut"])}
    return {"patch": patch, "fits": fits}
