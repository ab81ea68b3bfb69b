from pathlib import Path

import pytest

from synthtune.errors import RecipeError
from synthtune.records import Message, Payload
from synthtune.rules import check_rules, load_rules
from tests.conftest import EXAMPLE


def _consult(prompt: str, reply: str) -> Payload:
    return Payload(
        messages=[Message(role="user", content=prompt), Message(role="assistant", content=reply)]
    )


@pytest.fixture(scope="module")
def rules():
    return {r.id: r for r in load_rules(EXAMPLE / "rules.yaml")}


def test_antipyretic_below_threshold_fails_with_a_reason(rules) -> None:
    [outcome] = check_rules(
        [rules["no-antipyretic-below-38.5"]],
        _consult("30-year-old male. Temperature 37.6 °C.", "Take ibuprofen."),
    )
    assert not outcome.ok and outcome.applicable
    assert "ibuprofen" in outcome.why and "temp=37.6" in outcome.why


@pytest.mark.parametrize(
    ("prompt", "reply", "applicable"),
    [
        ("Temperature 39.2 °C.", "Take ibuprofen.", False),  # fever: allowed
        ("Temperature 37.0 °C.", "Rest and drink fluids.", True),  # no drug advised
        ("No temperature given.", "Take ibuprofen.", False),  # nothing to extract
        ("体温 37.2℃", "多喝水", True),  # Chinese unit
    ],
)
def test_antipyretic_rule_passes(rules, prompt, reply, applicable) -> None:
    [outcome] = check_rules([rules["no-antipyretic-below-38.5"]], _consult(prompt, reply))
    assert outcome.ok and outcome.applicable == applicable


def test_chinese_forbidden_term_is_caught(rules) -> None:
    [outcome] = check_rules(
        [rules["no-antipyretic-below-38.5"]], _consult("体温 37.2℃", "吃布洛芬")
    )
    assert not outcome.ok


def test_require_rule(rules) -> None:
    rule = rules["senior-sees-doctor"]
    [bad] = check_rules([rule], _consult("A 70-year-old female.", "Rest at home."))
    [good] = check_rules([rule], _consult("A 70-year-old female.", "See a doctor today."))
    assert not bad.ok and "required" in bad.why
    assert good.ok


def test_conditions_cannot_run_code(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "- id: evil\n  extract: {x: {regex: '(\\d+)', type: int}}\n"
        "  when: \"__import__('os').system('echo pwned')\"\n  forbid: {regex: 'a'}\n"
    )
    with pytest.raises(RecipeError, match="no call in rule expressions"):
        load_rules(path)  # refused before any record is checked
    # and were it constructed without validation, the evaluator still refuses to run it
    from synthtune.rules import Rule

    rule = Rule.model_construct(
        id="evil",
        extract={},
        when="__import__('os').system('echo pwned')",
        forbid=None,
        require=None,
        check=None,
        optional=[],
        severity="error",
        description="",
    )
    [outcome] = check_rules([rule], _consult("5", "a"))
    assert not outcome.ok and "failed to evaluate" in outcome.why


def test_bad_rules_file_names_the_rule_and_field(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("- id: r1\n  forbid: {regex: '('}\n- id: r2\n  when: 'a <'\n")
    with pytest.raises(RecipeError) as err:
        load_rules(path)
    text = str(err.value)
    assert "0.forbid.regex" in text and "1.when" in text


def test_keywords_json_path_and_check_expressions() -> None:
    from synthtune.rules import load_rule_sources

    legal = load_rule_sources(["pack:legal"])
    contract = _consult(
        "Draft a contract",
        "This agreement is between Party A and Party B. Term: 12 months. Payment within 30 "
        "days. Breach: the breaching party is liable. Disputes go to arbitration. Signed by both.",
    )
    assert all(o.ok for o in check_rules(legal, contract))
    missing = check_rules(legal, _consult("Draft", "Party A and Party B agree. Signed."))
    failed = {o.rule for o in missing if not o.ok}
    assert {"contract-term", "contract-payment", "contract-dispute-resolution"} <= failed


def test_json_path_extractor(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "- id: urgent-needs-doctor\n"
        "  extract: {urgency: {json_path: '$.urgency', type: str}}\n"
        "  when: urgency == 'high'\n"
        "  require: {regex: 'doctor'}\n"
    )
    [rule] = load_rules(path)
    [bad] = check_rules([rule], _consult("q", '{"urgency": "high", "advice": "rest"}'))
    [good] = check_rules([rule], _consult("q", '{"urgency": "high", "advice": "see a doctor"}'))
    [na] = check_rules([rule], _consult("q", '{"urgency": "low", "advice": "rest"}'))
    assert not bad.ok and good.ok and na.ok and not na.applicable


def test_finance_label_consistency() -> None:
    from synthtune.rules import load_rule_sources

    finance = load_rule_sources(["pack:finance"])
    text = "Shares plunge after a profit warning and layoffs."
    wrong = Payload(messages=[Message(role="assistant", content=text)], label="positive")
    right = Payload(messages=[Message(role="assistant", content=text)], label="negative")
    assert not all(o.ok for o in check_rules(finance, wrong))
    assert all(o.ok for o in check_rules(finance, right))
    odd = Payload(messages=[Message(role="assistant", content="ok")], label="bullish")
    assert any(o.rule == "label-is-known" and not o.ok for o in check_rules(finance, odd))
