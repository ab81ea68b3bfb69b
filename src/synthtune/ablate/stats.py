"""Statistics of an ablation: mean and Student-t interval per variant over the seeds, paired
differences against the reference variant, per-class F1, and a plain verdict.

The seeds are the replicates: each is one training of the same data, so the interval says
how much the score moves with training randomness alone (head init, data order, dropout,
augmentation). A paired difference compares two variants trained with the same seed; pairing
removes what the seed does to both, which is why it is narrower than the two intervals side
by side. With one seed there is no spread to measure, and the output says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Metric:
    """How a metric reads: its name in sentences, its direction, its unit in verdicts."""

    label: str
    higher_is_better: bool
    points: bool  # a 0..1 share reported in points (x 100)


METRICS: dict[str, Metric] = {
    "macro_f1": Metric("macro-F1", True, True),
    "accuracy": Metric("accuracy", True, True),
    "perplexity": Metric("perplexity", False, False),
}
DEFAULT_METRICS = {"classification": ["macro_f1", "accuracy"], "causal_lm": ["perplexity"]}


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values and its two-sided Student-t interval (``None`` for one value)."""

    mean: float
    low: float | None
    high: float | None
    n: int
    sd: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "sd": self.sd}


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """mean ± t(1 - (1 - confidence)/2, n - 1) · s / √n, s the sample standard deviation."""
    from scipy import stats as scipy_stats

    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = math.fsum(values) / n
    if n == 1:
        return Interval(mean, None, None, 1, None)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(scipy_stats.t.ppf(1 - (1 - confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, sd)


def paired_difference(reference: dict[int, float], other: dict[int, float]) -> Interval | None:
    """``other - reference`` per seed both have, then :func:`t_interval` of the differences."""
    seeds = sorted(set(reference) & set(other))
    if not seeds:
        return None
    return t_interval([other[s] - reference[s] for s in seeds])


def percent(share: float) -> str:
    """0.95 -> '95 %' (a space before the sign, as the rest of the reports)."""
    return f"{share * 100:g} %"


def _scale(metric: str) -> float:
    return 100.0 if METRICS[metric].points else 1.0


def format_change(metric: str, value: float) -> str:
    info = METRICS[metric]
    unit = f" {info.label} points" if info.points else f" {info.label}"
    digits = 1 if info.points else 2
    return f"{value * _scale(metric):+.{digits}f}{unit}"


def _bound(metric: str, value: float) -> str:
    digits = 1 if METRICS[metric].points else 2
    return f"{value * _scale(metric):+.{digits}f}"


def verdict_line(subject: str, metric: str, diff: Interval) -> str:
    """One sentence: a gain when the interval excludes 0 on the good side, harm on the bad
    side, no measurable gain when it includes 0; one seed gives no interval at all."""
    change = format_change(metric, diff.mean)
    if diff.low is None or diff.high is None:
        return f"{subject}: {change} from one seed; no confidence interval (run more seeds)"
    ci = f"{percent(CONFIDENCE)} CI [{_bound(metric, diff.low)}, {_bound(metric, diff.high)}]"
    good = METRICS[metric].higher_is_better
    if (diff.low > 0 and good) or (diff.high < 0 and not good):
        return f"{subject}: {change}, {ci}"
    if (diff.high < 0 and good) or (diff.low > 0 and not good):
        return f"{subject} hurt: {change}, {ci}"
    return f"{subject}: no measurable gain ({change}, {ci} includes 0)"


def baseline_line(
    variant: str, metric: str, tuned: Interval, baseline: float, against: str = "TF-IDF"
) -> str:
    """Does the tuned model beat a fixed score: the TF-IDF baseline, or the untuned base model
    (``against="base"``), the same for every seed of a variant?"""
    info = METRICS[metric]
    noun = "the baseline" if against == "TF-IDF" else "the base model"
    shown = f"tuned {info.label} {tuned.mean:.3f} vs {against} {baseline:.3f}"
    better = tuned.mean > baseline if info.higher_is_better else tuned.mean < baseline
    if tuned.low is None or tuned.high is None:
        word = "better than" if better else "not better than"
        return f"{variant}: {shown}: {word} {noun} (one seed, no interval)"
    above, under = tuned.low > baseline, tuned.high < baseline
    if (above and info.higher_is_better) or (under and not info.higher_is_better):
        side = "above" if above else "under"
        return f"{variant}: {shown}: beats {noun} (the whole CI is {side} it)"
    if above or under:
        side = "above" if above else "under"
        return f"{variant}: {shown}: worse than {noun} (the whole CI is {side} it)"
    return f"{variant}: {shown}: not distinguishable from {noun} (CI includes it)"


def _by_seed(runs: list[dict[str, Any]], variant: str, model: str, metric: str) -> dict[int, float]:
    return {
        r["seed"]: r["metrics"][model][metric]
        for r in runs
        if r["variant"] == variant and metric in r["metrics"].get(model, {})
    }


def _per_class(runs: list[dict[str, Any]], variants: list[str], reference: str) -> dict[str, Any]:
    """Mean F1 per class and variant over seeds; paired per-class differences vs reference."""
    f1: dict[str, dict[str, dict[int, float]]] = {}
    for r in runs:
        for label, value in r.get("per_class_f1", {}).items():
            f1.setdefault(r["variant"], {}).setdefault(label, {})[r["seed"]] = value
    means = {
        v: {label: math.fsum(s.values()) / len(s) for label, s in f1.get(v, {}).items()}
        for v in variants
    }
    differences: dict[str, dict[str, Any]] = {}
    for v in variants:
        if v == reference:
            continue
        for label, seeds in f1.get(v, {}).items():
            diff = paired_difference(f1.get(reference, {}).get(label, {}), seeds)
            if diff is not None:
                differences.setdefault(v, {})[label] = diff.as_dict()
    return {"mean_f1": means, "difference": differences}


def _subject(variant: str, reference: str) -> str:
    if (variant, reference) == ("real+synthetic", "real-only"):
        return "synthetic data"
    if (variant, reference) == ("real+synthetic", "unfiltered"):
        return "quality filtering"
    return f"{variant} vs {reference}"


def _pairs(variants: list[str], reference: str) -> list[tuple[str, str]]:
    """The comparisons with a verdict: synthetic data (real+synthetic vs real-only) and
    quality filtering (real+synthetic vs unfiltered) when those variants exist, then every
    other variant against the reference."""
    pairs = [
        (v, ref)
        for v, ref in (("real+synthetic", "real-only"), ("real+synthetic", "unfiltered"))
        if {v, ref} <= set(variants)
    ]
    covered = {frozenset(p) for p in pairs}
    pairs += [
        (v, reference)
        for v in variants
        if v != reference and frozenset((v, reference)) not in covered
    ]
    return pairs


def analyse(
    runs: list[dict[str, Any]], variants: list[str], reference: str, metrics: list[str]
) -> dict[str, Any]:
    """Everything ``results.json`` and the report show, from the runs' metrics.

    Each run is ``{variant, seed, metrics: {tuned|base|baseline: {metric: value}},
    per_class_f1: {label: f1}}``; the verdict compares real+synthetic with real-only when
    both exist (whatever the reference), else every variant with the reference."""
    summary = {
        v: {
            m: t_interval(list(values.values())).as_dict()
            for m in metrics
            if (values := _by_seed(runs, v, "tuned", m))
        }
        for v in variants
    }
    paired: dict[str, dict[str, Any]] = {}
    for v in variants:
        for m in metrics:
            diff = paired_difference(
                _by_seed(runs, reference, "tuned", m), _by_seed(runs, v, "tuned", m)
            )
            if v != reference and diff is not None:
                paired.setdefault(v, {})[m] = diff.as_dict()
    pairs = _pairs(variants, reference)
    verdicts = []
    primary = metrics[0] if metrics else None
    for v, ref in pairs:
        if primary is None:
            break
        diff = paired_difference(
            _by_seed(runs, ref, "tuned", primary), _by_seed(runs, v, "tuned", primary)
        )
        if diff is not None:
            verdicts.append(verdict_line(_subject(v, ref), primary, diff))
    baselines = []
    for v in variants:
        tuned = summary[v].get(primary) if primary is not None else None
        if primary is None or not tuned:
            continue
        interval = Interval(tuned["mean"], tuned["low"], tuned["high"], tuned["n"], tuned["sd"])
        # the TF-IDF baseline for shares (classification); the untuned base model for the
        # rest (a causal LM's perplexity on held-out real text)
        model, against = ("baseline", "TF-IDF") if METRICS[primary].points else ("base", "base")
        fixed = _by_seed(runs, v, model, primary)
        if fixed:
            mean = math.fsum(fixed.values()) / len(fixed)
            baselines.append(baseline_line(v, primary, interval, mean, against))
    return {
        "confidence": CONFIDENCE,
        "reference": reference,
        "metrics": metrics,
        "summary": summary,
        "paired": paired,
        "per_class": _per_class(runs, variants, reference),
        "verdicts": verdicts,
        "baseline": baselines,
    }
