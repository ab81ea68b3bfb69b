"""Hostile rules: expressions with calls or unknown names are refused when loaded (with the
rule index and field), and a rule that divides by zero or a pattern that backtracks without
end fails that record's rule with its reason instead of raising or hanging."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

import synthtune.rules as rules
from synthtune.errors import RecipeError
from synthtune.records import Message, Payload


def _load(tmp_path: Path, rule: dict) -> list[rules.Rule]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump([{"id": "r", **rule}]), encoding="utf-8")
    return rules.load_rules(path)


def _payload(reply: str) -> Payload:
    return Payload(
        messages=[Message(role="user", content="q"), Message(role="assistant", content=reply)]
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"extract": {"t": {"regex": "(\\d+)"}}, "when": "t.bit_length() > 3"}, "no call"),
        ({"extract": {"t": {"regex": "(\\d+)"}}, "when": "t.real > 3"}, "no attribute"),
        ({"extract": {"t": {"regex": "(\\d+)"}}, "check": "(x := t) > 1"}, "no assignment"),
        ({"extract": {"temp": {"regex": "(\\d+)"}}, "when": "tmep > 38"}, "names tmep"),
        (
            {"extract": {"t": {"regex": "(\\d+)"}}, "optional": ["u"]},
            "'u' is not an extracted name",
        ),
        ({"extract": {"t": {"regex": "(unclosed"}}}, "invalid regex"),
    ],
)
def test_bad_expressions_are_refused_at_load(tmp_path: Path, rule: dict, message: str) -> None:
    with pytest.raises(RecipeError) as err:
        _load(tmp_path, rule)
    problems = "\n".join(err.value.problems)
    assert problems.startswith("0") and message in problems, problems


def test_division_by_zero_fails_the_rule_of_that_record_only(tmp_path: Path) -> None:
    [rule] = _load(
        tmp_path, {"extract": {"n": {"regex": "(\\d+)", "type": "int"}}, "check": "10 / n > 1"}
    )
    zero = rules.check_rule(rule, _payload("dose 0 mg"))
    assert not zero.ok and zero.applicable
    assert "ZeroDivisionError" in zero.why and "10 / n > 1" in zero.why
    assert rules.check_rule(rule, _payload("dose 5 mg")).ok


def test_a_catastrophic_pattern_times_out_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rules, "REGEX_TIMEOUT_S", 0.05)
    [rule] = _load(tmp_path, {"forbid": {"regex": "(\\w+\\s?)+$", "field": "response"}})
    started = time.perf_counter()
    outcome = rules.check_rule(rule, _payload("a" * 5000 + "!"))
    assert time.perf_counter() - started < 5
    assert not outcome.ok and outcome.why.startswith("pattern timed out: /(\\w+\\s?)+$/ ran past")
    assert rules.check_rule(rule, _payload("fine")).why.startswith("forbidden")
