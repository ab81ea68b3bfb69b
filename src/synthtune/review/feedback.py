"""Reviews fed back into the machine: corrections as few-shot examples, rules the experts
overrule, and new rules proposed from rejection reasons that cluster.

* :func:`few_shot_rows`: every edit (a reviewer's corrected reply) becomes a worked example
  ``{id, template, user, assistant}``, the file ``generate.few_shot.file`` reads, so the next
  generation round is shown what the experts wrote instead of what the model did.
* :func:`rule_precision`: per rule, how often the records it fails are bad by the reviews
  (weighted back to the population like the tier estimates, Wilson interval on the Kish
  effective sample size); a rule whose upper bound is below the target precision rejects
  mostly good records and is proposed as report-only (``quality.rules_report_only``).
* :func:`propose_rules`: the expert rejections of records every tier accepted (what the
  machine missed) are grouped by what their replies share: greedily, the phrase (word 1-3-gram;
  character n-gram in CJK text) in the most of them that fires on at most 5 % of the records
  the experts accepted. Grouping by the reasons' wording fails (measured on the tests' reasons:
  "dose too high" is as far from "dangerous dose" as from "too alarming"); the group's reasons
  then name the rule. Each phrase becomes a ``forbid`` rule, shown with its evidence;
  applying it is the user's call (``synthtune review-stats --rules-out FILE --patch PATCH``,
  then ``synthtune patch``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from synthtune.records import content_hash, tier_outcome

MIN_RULE_REVIEWS = 3  # a rule judged on fewer reviewed firings is left alone
MAX_FALSE_FIRE = 0.05  # a proposed phrase fires on at most this share of expert-accepted
_CJK = re.compile(r"[\u3400-\u9fff]")


def _reply(record: Any) -> str:
    return next((m.content for m in reversed(record.payload.messages) if m.role == "assistant"), "")


def _prompt(record: Any) -> str:
    return next((m.content for m in reversed(record.payload.messages) if m.role == "user"), "")


# ------------------------------------------------------------------- few-shot from edits


def few_shot_rows(records: Sequence[Any], decisions: dict[str, Any]) -> list[dict[str, str]]:
    """The reviewers' edits as few-shot examples (text records; an image caption edit has no
    prompt to pair with), in record order."""
    rows = []
    for record in records:
        decision = decisions.get(record.id)
        if decision is None or decision.decision != "edit" or record.payload.media:
            continue
        user = _prompt(record)
        if not user.strip():
            continue
        rows.append(
            {
                "id": record.id,
                "template": str(record.lineage.get("template", "")),
                "user": user,
                "assistant": (decision.edited_reply or "").strip(),
            }
        )
    return rows


# ------------------------------------------------------------------- rules the experts overrule


def _weights(records: Sequence[Any], decisions: dict[str, Any]) -> dict[str, float]:
    """Reviewed record id -> how many records it stands for (its tier outcome's size over
    the reviews in it), undoing the stratified sample."""
    sizes = Counter(tier_outcome(r) for r in records)
    reviewed = Counter(tier_outcome(r) for r in records if r.id in decisions)
    return {
        r.id: sizes[tier_outcome(r)] / reviewed[tier_outcome(r)]
        for r in records
        if r.id in decisions
    }


def wilson(p: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a share ``p`` on (effective) ``n`` trials."""
    if n <= 0:
        return 0.0, 1.0
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rule_precision(
    records: Sequence[Any], decisions: dict[str, Any], target_precision: float
) -> list[dict[str, Any]]:
    """Per rule (error severity) that failed reviewed records: weighted precision with its
    95 % interval, and ``report_only`` when the upper bound is below ``target_precision``."""
    weights = _weights(records, decisions)
    fired: dict[str, list[tuple[float, bool]]] = {}
    for record in records:
        if record.id not in decisions:
            continue
        bad = decisions[record.id].decision != "accept"
        for outcome in record.quality.get("rules", []):
            if not outcome.get("ok", True) and outcome.get("severity") == "error":
                fired.setdefault(outcome["rule"], []).append((weights[record.id], bad))
    out = []
    for rule, hits in sorted(fired.items()):
        w = np.array([h[0] for h in hits])
        b = np.array([h[1] for h in hits], dtype=float)
        precision = float((w * b).sum() / w.sum())
        n_eff = float(w.sum() ** 2 / (w**2).sum())  # Kish: unequal weights carry less
        low, high = wilson(precision, n_eff)
        out.append(
            {
                "rule": rule,
                "reviewed": len(hits),
                "bad": int(b.sum()),
                "precision": precision,
                "ci": (low, high),
                "report_only": len(hits) >= MIN_RULE_REVIEWS and high < target_precision,
            }
        )
    return out


# ------------------------------------------------------------------- rules from reasons


def _phrases(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Candidate phrases (word 1-3-grams; character 2-4-grams for CJK text) and a binary
    texts x phrases matrix."""
    from sklearn.feature_extraction.text import CountVectorizer

    cjk = sum(len(_CJK.findall(t)) for t in texts) > 0.3 * max(1, sum(len(t) for t in texts))
    vectorizer = (
        CountVectorizer(analyzer="char", ngram_range=(2, 4), binary=True)
        if cjk
        else CountVectorizer(ngram_range=(1, 3), binary=True, token_pattern=r"(?u)\b\w+\b")
    )
    matrix = vectorizer.fit_transform(texts)
    return list(vectorizer.get_feature_names_out()), matrix.toarray().astype(bool)


def _pattern(phrase: str) -> str:
    """The regex of a phrase: CJK character n-grams literally; word n-grams as the words
    with anything but word characters between them (the tokenizer dropped the punctuation
    and spaces there)."""
    if _CJK.search(phrase):
        return re.escape(phrase)
    return r"\b" + r"\W+".join(re.escape(w) for w in phrase.split()) + r"\b"


def _slug(text: str) -> str:
    words = re.findall(r"\w+", text.lower())[:5]
    return "-".join(words) or content_hash(text)[:8]


def propose_rules(
    records: Sequence[Any],
    decisions: dict[str, Any],
    min_records: int = 3,
    existing_ids: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Proposed ``forbid`` rules from the expert rejections the tiers missed, each
    ``{rule: {...rules-file entry}, reasons, phrase, records, false_fires, reviewed_good,
    accepted_fires}``: the phrase is in all ``records`` rejections it groups, in
    ``false_fires`` of the ``reviewed_good`` records the experts accepted, and in
    ``accepted_fires`` records the tiers accept now. Rule ids avoid ``existing_ids``."""
    missed = [
        r
        for r in records
        if r.status == "accepted"
        and r.id in decisions
        and decisions[r.id].decision == "reject"
        and _reply(r).strip()
    ]
    good = [
        r
        for r in records
        if r.id in decisions and decisions[r.id].decision == "accept" and _reply(r).strip()
    ]
    if len(missed) < min_records or not good:
        return []
    accepted = [r for r in records if r.status == "accepted" and _reply(r).strip()]
    phrases, present = _phrases([_reply(r) for r in missed] + [_reply(r) for r in good])
    bad_rows, good_rows = present[: len(missed)], present[len(missed) :]
    false_rate = good_rows.mean(axis=0)
    quiet = false_rate <= MAX_FALSE_FIRE
    remaining = np.ones(len(missed), dtype=bool)
    proposals, taken = [], set(existing_ids)
    while remaining.sum() >= min_records:
        counts = bad_rows[remaining].sum(axis=0)
        eligible = quiet & (counts >= min_records)
        if not eligible.any():
            break
        # most rejections covered, then fewest false fires, then the longer (more specific)
        best = max(
            np.flatnonzero(eligible),
            key=lambda j: (counts[j], -false_rate[j], len(phrases[j]), -j),
        )
        group = np.flatnonzero(remaining & bad_rows[:, best])
        remaining[group] = False
        reasons = Counter(decisions[missed[i].id].reason.strip() for i in group)
        top = reasons.most_common(1)[0][0]
        pattern = _pattern(phrases[best])
        compiled = re.compile(pattern, re.IGNORECASE)
        rule_id = f"review-{_slug(top)}"
        if rule_id in taken:
            rule_id = f"{rule_id}-{content_hash(phrases[best])[:6]}"
        taken.add(rule_id)
        named = ", ".join(f"{reason} ({n})" for reason, n in reasons.most_common(3))
        proposals.append(
            {
                "rule": {
                    "id": rule_id,
                    "description": f"proposed from {len(group)} expert rejections: {named}",
                    "forbid": {"regex": pattern, "field": "response"},
                },
                "reasons": dict(reasons),
                "phrase": phrases[best],
                "records": len(group),
                "false_fires": int(good_rows[:, best].sum()),
                "reviewed_good": len(good),
                "accepted_fires": sum(bool(compiled.search(_reply(r))) for r in accepted),
            }
        )
    return proposals


def rules_patch(
    precision: list[dict[str, Any]],
    proposals: list[dict[str, Any]],
    current_rules: list[str],
    rules_file: str | None,
    report_only: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``quality`` part of the refit patch: the rules the experts overrule become
    report-only (added to the ones already there), and a proposed-rules file joins
    ``quality.rules``."""
    patch: dict[str, Any] = {}
    off = sorted({*report_only, *(p["rule"] for p in precision if p["report_only"])})
    if off != sorted(report_only):
        patch["rules_report_only"] = off
    if rules_file is not None and proposals and rules_file not in current_rules:
        patch["rules"] = [*current_rules, rules_file]
    return patch
