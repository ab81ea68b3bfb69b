"""Reviews fed back: edits become few-shot examples, overruled rules become report-only,
clustered rejection reasons become proposed rules that catch what the tiers missed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.decisions import Decision
from synthtune.records import Message, Payload, Record
from synthtune.review.feedback import (
    few_shot_rows,
    propose_rules,
    rule_precision,
    rules_patch,
    wilson,
)
from synthtune.rules import Rule, check_rule


def _record(reply: str, i: int, template: str = "t", rules: list | None = None) -> Record:
    payload = Payload(
        messages=[
            Message(role="user", content=f"Question {i}?"),
            Message(role="assistant", content=reply),
        ]
    )
    record = Record.create("synthetic", payload, lineage={"template": template})
    if rules:
        record.quality["rules"] = rules
        record.reject(f"rules: {rules[0]['rule']}")
    return record


def _fail(rule: str) -> dict:
    return {"rule": rule, "ok": False, "applicable": True, "why": "x", "severity": "error"}


def _population(seed: int = 0) -> tuple[list[Record], dict[str, Decision]]:
    """Accepted replies; some advise a dose (the experts reject those, the tiers missed
    them), some recommend a brand (also rejected, another reason); the rest are good."""
    rng = random.Random(seed)
    records, decisions = [], {}
    advice = ["rest", "drink water", "see a doctor", "measure the temperature", "sleep well"]
    for i in range(120):
        kind = "dose" if i % 10 == 0 else "brand" if i % 10 == 1 else "good"
        extra = {
            "dose": f" Take {rng.choice([2, 3, 4])} grams of paracetamol at once.",
            "brand": " Buy MegaRelief tablets today.",
            "good": "",
        }[kind]
        record = _record(f"Case {i}: {rng.choice(advice)} and {rng.choice(advice)}.{extra}", i)
        records.append(record)
        if i % 2 == 0 or kind != "good":
            reason = {
                "dose": rng.choice(["dangerous dose", "gives a dangerous dose", "dose too high"]),
                "brand": rng.choice(["advertises a brand", "brand advertising"]),
                "good": "",
            }[kind]
            decisions[record.id] = Decision(
                record_id=record.id,
                decision="accept" if kind == "good" else "reject",
                reason=reason,
            )
    return records, decisions


def test_rejections_the_tiers_missed_become_rules_that_catch_them() -> None:
    records, decisions = _population()
    proposals = propose_rules(records, decisions, existing_ids=["review-dangerous-dose"])
    assert len(proposals) == 2  # one per fault, however the reviewers worded it
    dose = next(p for p in proposals if "dose" in " ".join(p["reasons"]))
    brand = next(p for p in proposals if "brand" in " ".join(p["reasons"]))
    assert dose["records"] == 12 and brand["records"] == 12
    assert sum(dose["reasons"].values()) == 12 and set(dose["reasons"]) <= {
        "dangerous dose",
        "gives a dangerous dose",
        "dose too high",
    }
    assert dose["rule"]["id"].startswith("review-") and dose["rule"]["id"] != (
        "review-dangerous-dose"  # an existing id is avoided
    )
    for proposal, kind in ((dose, 0), (brand, 1)):
        assert proposal["false_fires"] == 0 and proposal["reviewed_good"] == 48
        rule = Rule.model_validate(proposal["rule"])  # a valid rules-file entry
        fails = [not check_rule(rule, r.payload).ok for r in records]
        # it rejects exactly the records of its fault, reviewed or not
        assert fails == [i % 10 == kind for i in range(len(records))]
        assert proposal["accepted_fires"] == 12


def test_no_rule_is_proposed_from_too_few_or_scattered_rejections() -> None:
    records, decisions = _population()
    few = {k: d for k, d in decisions.items() if d.decision == "accept"}
    bad = [k for k, d in decisions.items() if d.decision == "reject"]
    few.update({k: decisions[k] for k in bad[:2]})  # two: under min_records
    assert propose_rules(records, few) == []
    # three rejections with nothing in common that the accepted replies lack
    scattered = dict(few)
    for record in [r for r in records if r.id in few and few[r.id].decision == "accept"][:3]:
        scattered[record.id] = Decision(record_id=record.id, decision="reject", reason="meh")
    assert propose_rules(records, {k: v for k, v in scattered.items() if k not in bad}) == []


def test_a_rule_the_experts_overrule_is_proposed_report_only() -> None:
    good = [_record(f"Fine reply {i}.", i, rules=[_fail("too-strict")]) for i in range(6)]
    bad = [_record(f"Bad reply {i}.", 100 + i, rules=[_fail("sharp")]) for i in range(6)]
    kept = [_record(f"Kept reply {i}.", 200 + i) for i in range(20)]
    records = good + bad + kept
    decisions = {r.id: Decision(record_id=r.id, decision="accept") for r in good + kept[:5]}
    for r in bad:
        decisions[r.id] = Decision(record_id=r.id, decision="reject", reason="bad")
    rows = {row["rule"]: row for row in rule_precision(records, decisions, 0.9)}
    assert rows["too-strict"]["precision"] == 0 and rows["too-strict"]["report_only"]
    assert rows["sharp"]["precision"] == 1 and not rows["sharp"]["report_only"]
    low, high = rows["too-strict"]["ci"]
    assert (low, high) == pytest.approx(wilson(0.0, 6))
    assert high == pytest.approx(0.390, abs=0.001)  # Wilson 95 % upper bound, 0 of 6
    patch = rules_patch(list(rows.values()), [], ["pack:medical"], None, ["old"])
    assert patch == {"rules_report_only": ["old", "too-strict"]}
    assert rules_patch(list(rows.values())[:1], [], [], None, ["too-strict"]) == {}


def test_edits_become_few_shot_rows() -> None:
    records = [_record("Wrong.", i, template=f"t{i % 2}") for i in range(3)]
    decisions = {
        records[0].id: Decision(record_id=records[0].id, decision="edit", edited_reply=" Right. "),
        records[1].id: Decision(record_id=records[1].id, decision="accept"),
    }
    assert few_shot_rows(records, decisions) == [
        {"id": records[0].id, "template": "t0", "user": "Question 0?", "assistant": "Right."}
    ]


def test_review_stats_feeds_back_rules_and_few_shot_end_to_end(
    run_copy: Path, tmp_path: Path
) -> None:
    """Experts overrule the demo's rule (accept what it rejected), reject the accepted
    replies that call the temperature a fever as alarming, and correct one reply:
    review-stats writes the few-shot file, the proposed rules and one patch; applied, the
    filter stage rejects what the experts did and keeps what they accepted."""
    from synthtune.config import load_recipe
    from synthtune.pipeline import run_recipe
    from synthtune.store import ReviewStore, RunStore
    from tests.conftest import write_recipe

    records = RunStore(run_copy).read_table("quality", "dataset")
    alarming = [
        r
        for r in records
        if r.status == "accepted" and "is a fever" in r.payload.messages[-1].content
    ]
    overruled = [r for r in records if r.status != "accepted"]
    assert len(alarming) >= 3 and len(overruled) >= 3
    calm = [r for r in records if r.status == "accepted" and r not in alarming]
    store = ReviewStore(run_copy)
    for record in alarming:
        store.save(Decision(record_id=record.id, decision="reject", reason="too alarming"))
    for record in overruled + calm[:10]:
        store.save(Decision(record_id=record.id, decision="accept"))
    store.save(Decision(record_id=calm[10].id, decision="edit", edited_reply="Rest at home."))
    store.close()
    patch, rules, shots = tmp_path / "p.yaml", tmp_path / "proposed.yaml", tmp_path / "s.jsonl"
    result = CliRunner().invoke(
        app,
        [
            *("review-stats", str(run_copy), "--patch", str(patch)),
            *("--rules-out", str(rules), "--few-shot", str(shots)),
        ],
    )
    output = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "report only" in output
    assert "proposed rule review-too-alarming" in output
    assert shots.read_text(encoding="utf-8").count("Rest at home.") == 1
    from synthtune.report.html import build_report

    html = build_report(run_copy).read_text(encoding="utf-8")
    assert "Rules, measured by the reviews" in html and "report only" in html
    assert "Rules proposed from the rejections the tiers missed" in html
    assert "too alarming (12)" in html
    quality = yaml.safe_load(patch.read_text(encoding="utf-8"))["quality"]
    assert quality["rules_report_only"] == ["no-antipyretic-below-38.5"]
    assert quality["rules"][-1] == str(rules.resolve())
    (tmp_path / "r").mkdir()
    recipe = write_recipe(tmp_path / "r", {"quality": {"review": {"fraction": 0.25}}})
    assert CliRunner().invoke(app, ["patch", str(recipe), str(patch)]).exit_code == 0
    rerun = run_recipe(load_recipe(recipe), tmp_path / "runs", until="quality", quiet=True)
    after = {r.id: r for r in RunStore(rerun.run_dir).read_table("quality", "dataset")}
    assert all(after[r.id].status == "accepted" for r in overruled)  # report only now
    for record in alarming:  # rejected, by the proposed rule (unless a tier before it did)
        assert after[record.id].status == "rejected"
        failed = [o["rule"] for o in after[record.id].quality["rules"] if not o["ok"]]
        assert "review-too-alarming" in failed
    assert all(after[r.id].status == "accepted" for r in calm)


def test_an_unknown_report_only_rule_exits_2(tmp_path: Path) -> None:
    from tests.conftest import write_recipe

    recipe = write_recipe(tmp_path, {"quality": {"rules_report_only": ["no-such-rule"]}})
    result = CliRunner().invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2
    assert "quality.rules_report_only: no rule 'no-such-rule'" in " ".join(result.output.split())
