"""Review statistics: acceptance per stratum with Wilson 95 % intervals, the estimated defect
rate of what nobody reviewed, and strata flagged for regeneration.

The remainder's defect rate is the stratified estimator: each stratum's observed defect rate
(reject or edit) weighted by how many of its accepted records were not reviewed.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from synthtune.decisions import Decision
from synthtune.records import Record, stratum_of


def wilson(successes: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    if n == 0:
        return 0.0, 1.0
    ci = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def review_stats(
    records: list[Record],
    decisions: dict[str, Decision],
    stratify_by: list[str],
    flag_defect_rate: float,
) -> dict[str, Any]:
    accepted = [r for r in records if r.status == "accepted"]
    strata: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in accepted:
        row = strata[stratum_of(record, stratify_by)]
        row["records"] += 1
        decision = decisions.get(record.id)
        if decision is None:
            row["unreviewed"] += 1
            continue
        row["reviewed"] += 1
        row["accepted"] += decision.decision == "accept"
    rows: list[dict[str, Any]] = []
    weighted_defects, unreviewed = 0.0, 0
    for name in sorted(strata):
        row = strata[name]
        n, k = row["reviewed"], row["accepted"]
        low, high = wilson(k, n)
        defect = 1 - k / n if n else None
        rows.append(
            {
                "stratum": name,
                "records": row["records"],
                "reviewed": n,
                "accepted": k,
                "acceptance": round(k / n, 4) if n else None,
                "ci95": [round(low, 4), round(high, 4)],
                "defect_rate": round(defect, 4) if defect is not None else None,
                "flagged": defect is not None and defect > flag_defect_rate,
            }
        )
        if defect is not None:
            weighted_defects += defect * row["unreviewed"]
            unreviewed += row["unreviewed"]
    reviewed = sum(int(r["reviewed"]) for r in rows)
    return {
        "reviewed": reviewed,
        "accepted": sum(int(r["accepted"]) for r in rows),
        "strata": rows,
        "remainder_defect_rate": round(weighted_defects / unreviewed, 4) if unreviewed else None,
        "unreviewed": sum(strata[s]["unreviewed"] for s in strata),
        "flagged": [r["stratum"] for r in rows if r["flagged"]],
    }


def review_settings(run_dir: Path) -> tuple[list[str], float]:
    """Strata and flag threshold of a run, from its locked recipe."""
    import yaml

    lock = yaml.safe_load((Path(run_dir) / "recipe.lock.yaml").read_text(encoding="utf-8"))
    review = lock["recipe"]["quality"]["review"]
    return list(review["stratify_by"]), float(review["flag_defect_rate"])
