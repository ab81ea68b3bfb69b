"""Statistics of an ablation: Student-t intervals (checked against scipy's own numbers),
paired differences by seed, and the verdict's wording in its cases."""

from __future__ import annotations

import pytest
from scipy import stats as scipy_stats

from synthtune.ablate.stats import (
    Interval,
    analyse,
    baseline_line,
    paired_difference,
    t_interval,
    verdict_line,
)


def test_t_interval_matches_scipy() -> None:
    # mean 2, sd 1, n 3: half-width t(0.975, 2) * 1 / sqrt(3) = 4.302653 * 0.577350
    interval = t_interval([1.0, 2.0, 3.0])
    assert interval.mean == 2.0 and interval.sd == pytest.approx(1.0)
    assert interval.low == pytest.approx(-0.484138, abs=1e-6)
    assert interval.high == pytest.approx(4.484138, abs=1e-6)
    values = [0.70, 0.74, 0.71, 0.76, 0.73]
    low, high = scipy_stats.t.interval(
        0.95, len(values) - 1, loc=sum(values) / 5, scale=scipy_stats.sem(values)
    )
    five = t_interval(values)
    assert (five.low, five.high) == (pytest.approx(low), pytest.approx(high))


def test_one_value_has_no_interval() -> None:
    assert t_interval([0.5]) == Interval(0.5, None, None, 1, None)


def test_paired_difference_uses_the_seeds_both_have() -> None:
    reference = {0: 0.50, 1: 0.60, 2: 0.70}
    other = {0: 0.55, 1: 0.62, 2: 0.78, 3: 0.99}  # seed 3 has no partner
    diff = paired_difference(reference, other)
    assert diff is not None and diff.n == 3
    assert diff.mean == pytest.approx(0.05)
    assert diff.low == pytest.approx(t_interval([0.05, 0.02, 0.08]).low)
    assert paired_difference({0: 0.1}, {1: 0.2}) is None


def test_verdict_wording_in_each_case() -> None:
    gain = verdict_line("synthetic data", "macro_f1", Interval(0.031, 0.012, 0.05, 5, 0.01))
    assert gain == "synthetic data: +3.1 macro-F1 points, 95 % CI [+1.2, +5.0]"
    hurt = verdict_line("synthetic data", "macro_f1", Interval(-0.03, -0.05, -0.01, 5, 0.01))
    assert hurt == "synthetic data hurt: -3.0 macro-F1 points, 95 % CI [-5.0, -1.0]"
    none = verdict_line("synthetic data", "macro_f1", Interval(0.01, -0.02, 0.04, 5, 0.02))
    assert none == (
        "synthetic data: no measurable gain (+1.0 macro-F1 points, 95 % CI [-2.0, +4.0] includes 0)"
    )
    one = verdict_line("synthetic data", "macro_f1", Interval(0.01, None, None, 1, None))
    assert "one seed" in one and "no confidence interval" in one
    # lower perplexity is the good side
    ppl = verdict_line("unfiltered vs real-only", "perplexity", Interval(-2.0, -3.0, -1.0, 3, 1))
    assert ppl.startswith("unfiltered vs real-only: -2.00 perplexity")


def _run(variant: str, seed: int, f1: float, baseline: float) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        "metrics": {"tuned": {"macro_f1": f1}, "baseline": {"macro_f1": baseline}},
        "per_class_f1": {"a": f1, "b": f1 / 2},
    }


def test_analyse_compares_synthetic_with_real_only_and_the_baseline() -> None:
    runs = [_run("real-only", s, 0.60 + 0.01 * s, 0.5) for s in range(3)]
    runs += [_run("real+synthetic", s, 0.70 + 0.012 * s, 0.5) for s in range(3)]
    out = analyse(runs, ["real-only", "real+synthetic"], "real-only", ["macro_f1"])
    assert out["summary"]["real-only"]["macro_f1"]["mean"] == pytest.approx(0.61)
    assert out["paired"]["real+synthetic"]["macro_f1"]["mean"] == pytest.approx(0.102)
    assert out["verdicts"][0].startswith("synthetic data: +10.2 macro-F1 points, 95 % CI [")
    assert out["per_class"]["mean_f1"]["real+synthetic"]["b"] == pytest.approx(0.356)
    assert out["per_class"]["difference"]["real+synthetic"]["a"]["mean"] == pytest.approx(0.102)
    assert all("beats the baseline" in line for line in out["baseline"])


def test_analyse_judges_quality_filtering_and_every_other_variant() -> None:
    runs = [_run("real-only", s, 0.60 + 0.01 * s, 0.5) for s in range(3)]
    runs += [_run("real+synthetic", s, 0.70 + 0.012 * s, 0.5) for s in range(3)]
    runs += [_run("unfiltered", s, 0.65 + 0.011 * s, 0.5) for s in range(3)]
    runs += [_run("weighted", s, 0.59 + 0.01 * s, 0.5) for s in range(3)]
    variants = ["real-only", "real+synthetic", "unfiltered", "weighted"]
    out = analyse(runs, variants, "real-only", ["macro_f1"])
    synthetic, filtering, unfiltered, weighted = out["verdicts"]
    assert synthetic.startswith("synthetic data: +10.2 macro-F1 points")
    assert filtering.startswith("quality filtering: +5.1 macro-F1 points, 95 % CI [")
    assert unfiltered.startswith("unfiltered vs real-only: +5.1")
    assert weighted.startswith("weighted vs real-only hurt: -1.0 macro-F1 points")


def _lm_run(variant: str, seed: int, ppl: float, base: float) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        "metrics": {"tuned": {"perplexity": ppl}, "base": {"perplexity": base}},
        "per_class_f1": {},
    }


def test_a_causal_lm_is_compared_with_its_base_model() -> None:
    runs = [_lm_run("real-only", s, 30.0 + s, 80.0) for s in range(3)]
    runs += [_lm_run("real+synthetic", s, 79.0 + s, 80.0) for s in range(3)]
    out = analyse(runs, ["real-only", "real+synthetic"], "real-only", ["perplexity"])
    real, synthetic = out["baseline"]
    assert real.startswith("real-only: tuned perplexity 31.000 vs base 80.000: beats the base")
    assert "(the whole CI is under it)" in real
    assert "not distinguishable from the base model" in synthetic
    assert out["verdicts"][0].startswith("synthetic data hurt: +49.00 perplexity")
    worse = baseline_line("x", "perplexity", Interval(90.0, 85.0, 95.0, 3, 2.0), 80.0, "base")
    assert "worse than the base model (the whole CI is above it)" in worse
