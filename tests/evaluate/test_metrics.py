"""Text metrics and rule compliance on known strings and crafted replies."""

from pathlib import Path

import pytest

from synthtune.evaluate.compliance import compliance
from synthtune.evaluate.generation import normalize, text_metrics
from synthtune.evaluate.harness import numeric_results
from synthtune.records import Message, Payload
from synthtune.rules import check_rules, load_rules

ROOT = Path(__file__).resolve().parents[2]
RULES = load_rules(ROOT / "examples" / "medical-qa" / "rules.yaml")


def test_identical_strings_score_perfectly() -> None:
    refs = ["Rest and drink fluids.", "See a doctor within two days."]
    scores = text_metrics(list(refs), refs)
    assert scores == {"exact_match": 1.0, "rouge_l": 1.0, "chrf": 100.0, "bleu": 100.0}


def test_different_strings_score_low_and_partial_overlap_in_between() -> None:
    refs = ["rest and drink plenty of fluids today", "see a doctor within two days"]
    unrelated = text_metrics(["zebra quantum violin", "purple mountain xylophone"], refs)
    assert unrelated["exact_match"] == 0.0 and unrelated["rouge_l"] == 0.0
    assert unrelated["bleu"] == 0.0 and unrelated["chrf"] < 15
    partial = text_metrics(["rest and drink fluids", "see a doctor soon"], refs)
    assert 0 < partial["rouge_l"] < 1 and unrelated["chrf"] < partial["chrf"] < 100
    assert partial["exact_match"] == 0.0


def test_exact_match_ignores_case_spacing_and_end_punctuation() -> None:
    assert normalize("  Rest,   and DRINK fluids. ") == normalize("rest, and drink fluids")
    half = text_metrics(
        ["REST  and drink fluids!", "something else"], ["rest and drink fluids", "x y"]
    )
    assert half["exact_match"] == 0.5


def _outcomes(prompt: str, reply: str) -> list:
    payload = Payload(
        messages=[Message(role="user", content=prompt), Message(role="assistant", content=reply)]
    )
    return check_rules(RULES, payload)


def test_compliance_counts_per_rule_and_overall() -> None:
    replies = [
        _outcomes("30-year-old, temperature 37.2 °C", "Take ibuprofen."),  # antipyretic: fail
        _outcomes("40-year-old, temperature 37.8 °C", "Rest and drink fluids."),  # pass
        _outcomes("70-year-old, temperature 39.5 °C", "Rest at home."),  # senior: fail
        _outcomes("72-year-old, temperature 38.0 °C", "Please see a doctor."),  # both pass
        _outcomes("Is a follow-up visit needed?", "Yes."),  # no rule applies
    ]
    result = compliance(replies, [r.id for r in RULES])
    assert result["per_rule"]["no-antipyretic-below-38.5"] == {
        "applicable": 3,
        "passed": 2,
        "compliance": 0.6667,
    }
    assert result["per_rule"]["senior-sees-doctor"] == {
        "applicable": 2,
        "passed": 1,
        "compliance": 0.5,
    }
    # replies with an applicable rule: 4, of which 2 pass every applicable rule
    assert result["replies"] == {"applicable": 4, "passed": 2, "compliance": 0.5}
    assert result["checks"] == {"applicable": 5, "passed": 3, "compliance": 0.6}


def test_compliance_without_applicable_rules_is_none_not_zero() -> None:
    result = compliance([_outcomes("hello", "hi")], [r.id for r in RULES])
    assert result["replies"]["compliance"] is None
    assert all(r["applicable"] == 0 for r in result["per_rule"].values())


@pytest.mark.parametrize("junk", ["N/A", True, None])
def test_harness_results_keep_numbers_only(junk: object) -> None:
    out = numeric_results({"hellaswag": {"alias": "hellaswag", "acc,none": 0.25, "x": junk}})
    assert out == {"hellaswag": {"acc,none": 0.25}}
