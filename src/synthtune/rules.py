"""Declarative rule engine: the logic tier of quality, and rule compliance in evaluation.

A rule extracts typed values from a record's text, evaluates an optional condition over them
with ``simpleeval`` (a safe expression evaluator: no ``eval``, no attribute access, no
imports), then requires or forbids a pattern. Each outcome carries a human-readable reason.

.. code-block:: yaml

    - id: no-antipyretic-below-38.5
      extract: {temp: {regex: '(\\d+(?:\\.\\d+)?)\\s*(?:℃|°C|度)', type: float, field: prompt}}
      when: temp < 38.5
      forbid: {regex: 'ibuprofen|antipyretic|退烧药', field: response}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from simpleeval import EvalWithCompoundTypes, InvalidExpression

from synthtune.config import format_validation_error
from synthtune.errors import RecipeError
from synthtune.records import Payload

TextField = Literal["prompt", "response", "all"]
_CASTS = {"float": float, "int": int, "str": str}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regex: {exc}") from None
    return value


class RegexExtractor(_Strict):
    regex: str = Field(description="Pattern; group 1 (or the whole match) is the value.")
    type: Literal["float", "int", "str"] = "str"
    field: TextField = "all"
    _validate = field_validator("regex")(_check_regex)

    def extract(self, payload: Payload) -> Any:
        match = re.search(self.regex, payload.text(self.field), flags=re.IGNORECASE)
        if match is None:
            return None
        raw = match.group(1) if match.groups() else match.group(0)
        return _CASTS[self.type](raw)


class Pattern(_Strict):
    regex: str
    field: TextField = "response"
    _validate = field_validator("regex")(_check_regex)

    def find(self, payload: Payload) -> str | None:
        match = re.search(self.regex, payload.text(self.field), flags=re.IGNORECASE)
        return match.group(0) if match else None


class Rule(_Strict):
    id: str
    description: str = ""
    severity: Literal["error", "warning"] = "error"
    extract: dict[str, RegexExtractor] = Field(default_factory=dict)
    when: str | None = Field(None, description="Safe expression over the extracted names.")
    forbid: Pattern | None = None
    require: Pattern | None = None

    @field_validator("when")
    @classmethod
    def _parse(cls, value: str | None) -> str | None:
        if value is not None:
            import ast

            try:
                ast.parse(value, mode="eval")
            except SyntaxError as exc:
                raise ValueError(f"`when` is not an expression: {exc.msg}") from None
        return value


@dataclass(frozen=True)
class RuleOutcome:
    rule: str
    ok: bool
    applicable: bool
    why: str
    severity: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "ok": self.ok,
            "applicable": self.applicable,
            "why": self.why,
            "severity": self.severity,
        }


def check_rule(rule: Rule, payload: Payload) -> RuleOutcome:
    def outcome(ok: bool, applicable: bool, why: str) -> RuleOutcome:
        return RuleOutcome(rule.id, ok, applicable, why, rule.severity)

    values = {name: ex.extract(payload) for name, ex in rule.extract.items()}
    missing = sorted(k for k, v in values.items() if v is None)
    if missing:
        return outcome(True, False, f"not applicable: no {', '.join(missing)} found")
    if rule.when is not None:
        try:
            active = bool(EvalWithCompoundTypes(names=values, functions={}).eval(rule.when))
        except (InvalidExpression, TypeError, ValueError) as exc:
            return outcome(False, True, f"condition `{rule.when}` failed to evaluate: {exc}")
        if not active:
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            return outcome(True, False, f"not applicable: `{rule.when}` is false ({shown})")
    context = ", ".join(f"{k}={v}" for k, v in values.items())
    context = f" ({context})" if context else ""
    if rule.forbid is not None:
        hit = rule.forbid.find(payload)
        if hit is not None:
            return outcome(False, True, f"forbidden {hit!r} in {rule.forbid.field}{context}")
    if rule.require is not None and rule.require.find(payload) is None:
        return outcome(
            False, True, f"required /{rule.require.regex}/ missing in {rule.require.field}{context}"
        )
    return outcome(True, True, f"passed{context}")


def check_rules(rules: list[Rule], payload: Payload) -> list[RuleOutcome]:
    return [check_rule(rule, payload) for rule in rules]


_RULES = TypeAdapter(list[Rule])


def load_rules(path: Path) -> list[Rule]:
    """Load a rules YAML file; raise RecipeError naming the rule index and field on errors."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    except FileNotFoundError:
        raise RecipeError(str(path), ["rules file not found"]) from None
    except yaml.YAMLError as exc:
        raise RecipeError(str(path), [f"not valid YAML: {exc}"]) from None
    try:
        rules = _RULES.validate_python(raw)
    except ValidationError as exc:
        raise RecipeError(str(path), format_validation_error(exc, Rule)) from None
    ids = [r.id for r in rules]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise RecipeError(str(path), [f"duplicate rule ids: {', '.join(dup)}"])
    return rules
