"""Declarative rule engine: the logic tier of quality, and rule compliance in evaluation.

A rule extracts typed values from a record's text, evaluates an optional condition over them
with ``simpleeval`` (a safe expression evaluator: no ``eval``, no imports; synthtune also
refuses attribute access and calls, and names other than the extracted ones and ``label``,
when the rules are loaded), then requires or forbids a pattern. Each outcome carries a
human-readable reason.

Patterns run on the ``regex`` engine with a time limit (``REGEX_TIMEOUT_S``): a pattern that
backtracks catastrophically on one record fails that record's rule with the reason, instead
of hanging the stage. A condition that divides by zero or overflows likewise.

.. code-block:: yaml

    - id: no-antipyretic-below-38.5
      extract: {temp: {regex: '(\\d+(?:\\.\\d+)?)\\s*(?:℃|°C|度)', type: float, field: prompt}}
      when: temp < 38.5
      forbid: {regex: 'ibuprofen|antipyretic|退烧药', field: response}
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import regex as re
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from simpleeval import EvalWithCompoundTypes, InvalidExpression

from synthtune import plugins
from synthtune.config import format_validation_error
from synthtune.config.base import KeyedSection
from synthtune.config.yamlio import read_yaml
from synthtune.errors import RecipeError
from synthtune.records import Payload

TextField = Literal["prompt", "response", "all", "label"]
REGEX_TIMEOUT_S = 1.0  # per pattern and text; the regex engine raises TimeoutError past it


class RuleTimeout(Exception):
    """A pattern ran past REGEX_TIMEOUT_S on one text."""


def _search(pattern: str | re.Pattern[str], text: str) -> re.Match[str] | None:
    try:
        if isinstance(pattern, str):
            return re.search(pattern, text, flags=re.IGNORECASE, timeout=REGEX_TIMEOUT_S)
        return pattern.search(text, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        shown = pattern if isinstance(pattern, str) else pattern.pattern
        raise RuleTimeout(f"/{shown}/ ran past {REGEX_TIMEOUT_S:g} s") from None


_CASTS = {"float": float, "int": int, "str": str}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except (re.error, RecursionError) as exc:
        raise ValueError(f"invalid regex: {exc}") from None
    return value


def _text(payload: Payload, field: TextField) -> str:
    if field == "label":
        return payload.label or ""
    return payload.text(field)


class RegexExtractor(_Strict):
    """First match: group 1 (or the whole match), cast to ``type``; units go in the pattern."""

    regex: str = Field(description="Pattern; group 1 (or the whole match) is the value.")
    type: Literal["float", "int", "str"] = "str"
    field: TextField = "all"
    _validate = field_validator("regex")(_check_regex)

    def extract(self, payload: Payload) -> Any:
        match = _search(self.regex, _text(payload, self.field))
        if match is None:
            return None
        raw = match.group(1) if match.groups() else match.group(0)
        try:
            return _CASTS[self.type](raw.replace(",", "") if self.type != "str" else raw)
        except ValueError:
            return None


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Whole words for Latin-script keywords (``loss`` must not match ``glossy``); CJK has no
    word boundaries, so a CJK keyword matches as a substring."""
    escaped = re.escape(keyword)
    if keyword.isascii():
        escaped = rf"(?<!\w){escaped}(?!\w)"
    return re.compile(escaped, re.IGNORECASE)


class KeywordsExtractor(_Strict):
    """``any``: the first keyword found (or None); ``count``: how many keywords occur (int)."""

    keywords: list[str] = Field(min_length=1)
    mode: Literal["any", "count"] = "any"
    field: TextField = "all"

    def extract(self, payload: Payload) -> Any:
        text = _text(payload, self.field)
        found = [k for k in self.keywords if _search(_keyword_pattern(k), text)]
        if self.mode == "count":
            return len(found)
        return found[0] if found else None


class JsonPathExtractor(_Strict):
    """A JSONPath (``jsonpath-ng``) into a JSON reply, e.g. ``$.urgency``; first match."""

    json_path: str
    type: Literal["float", "int", "str", "any"] = "any"
    field: TextField = "response"

    @field_validator("json_path")
    @classmethod
    def _parses(cls, value: str) -> str:
        from jsonpath_ng import parse

        try:
            parse(value)
        except Exception as exc:  # jsonpath-ng raises several exception types on bad syntax
            raise ValueError(f"invalid JSONPath: {exc}") from None
        return value

    def extract(self, payload: Payload) -> Any:
        import json

        from jsonpath_ng import parse

        try:
            document = json.loads(_text(payload, self.field))
        except json.JSONDecodeError:
            return None
        matches = parse(self.json_path).find(document)
        if not matches:
            return None
        value = matches[0].value
        return value if self.type == "any" else _CASTS[self.type](value)


plugins.register_extractor("regex", RegexExtractor)
plugins.register_extractor("keywords", KeywordsExtractor)
plugins.register_extractor("json_path", JsonPathExtractor)


# an ``extract:`` entry: the one key naming a registered extractor picks its model
Extractor = Annotated[Any, KeyedSection("extractor", "an extractor")]


class Pattern(_Strict):
    regex: str
    field: TextField = "response"
    _validate = field_validator("regex")(_check_regex)

    def find(self, payload: Payload) -> str | None:
        match = _search(self.regex, _text(payload, self.field))
        return match.group(0) if match else None


class Rule(_Strict):
    id: str
    description: str = ""
    severity: Literal["error", "warning"] = "error"
    extract: dict[str, Extractor] = Field(default_factory=dict)
    when: str | None = Field(None, description="Safe expression over the extracted names.")
    forbid: Pattern | None = None
    require: Pattern | None = None
    check: str | None = Field(None, description="Expression that must hold (when `when` does).")
    optional: list[str] = Field(
        default_factory=list, description="Extracted names that may be missing (None)."
    )

    @field_validator("when", "check")
    @classmethod
    def _parse(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                tree = ast.parse(value, mode="eval")
            except SyntaxError as exc:
                raise ValueError(f"`{value}` is not an expression: {exc.msg}") from None
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute | ast.Call | ast.Lambda | ast.NamedExpr):
                    what = type(node).__name__.lower().replace("namedexpr", "assignment")
                    raise ValueError(
                        f"`{value}`: no {what} in rule expressions (only the extracted "
                        "names, label, literals and operators)"
                    )
        return value

    @model_validator(mode="after")
    def _known_names(self) -> Rule:
        """A name in ``when``/``check`` that nothing extracts (a typo) would fail every
        record at run time: refused when the rules are loaded."""
        known = {*self.extract, "label", "True", "False", "None"}
        for expression in (self.when, self.check):
            if expression is None:
                continue
            names = {
                n.id
                for n in ast.walk(ast.parse(expression, mode="eval"))
                if isinstance(n, ast.Name)
            }
            unknown = sorted(names - known)
            if unknown:
                raise ValueError(
                    f"`{expression}` names {', '.join(unknown)}, which nothing extracts; "
                    f"known: {', '.join(sorted(known - {'True', 'False', 'None'}))}"
                )
        for name in self.optional:
            if name not in self.extract:
                raise ValueError(f"optional: {name!r} is not an extracted name")
        return self


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

    try:
        values = {name: ex.extract(payload) for name, ex in rule.extract.items()}
        return _judge(rule, payload, values, outcome)
    except RuleTimeout as exc:
        return outcome(False, True, f"pattern timed out: {exc}")


def _judge(
    rule: Rule,
    payload: Payload,
    values: dict[str, Any],
    outcome: Any,
) -> RuleOutcome:
    missing = sorted(k for k, v in values.items() if v is None and k not in rule.optional)
    if missing:
        return outcome(True, False, f"not applicable: no {', '.join(missing)} found")
    names = {"label": payload.label, **values}
    if rule.when is not None:
        active = _evaluate(rule.when, names)
        if isinstance(active, str):
            return outcome(False, True, active)
        if not active:
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            return outcome(True, False, f"not applicable: `{rule.when}` is false ({shown})")
    context = ", ".join(f"{k}={v}" for k, v in values.items())
    context = f" ({context})" if context else ""
    if rule.check is not None:
        holds = _evaluate(rule.check, names)
        if isinstance(holds, str):
            return outcome(False, True, holds)
        if not holds:
            return outcome(False, True, f"`{rule.check}` does not hold{context}")
    if rule.forbid is not None:
        hit = rule.forbid.find(payload)
        if hit is not None:
            return outcome(False, True, f"forbidden {hit!r} in {rule.forbid.field}{context}")
    if rule.require is not None and rule.require.find(payload) is None:
        return outcome(
            False, True, f"required /{rule.require.regex}/ missing in {rule.require.field}{context}"
        )
    return outcome(True, True, f"passed{context}")


def _evaluate(expression: str, names: dict[str, Any]) -> bool | str:
    """The truth of a safe expression, or an error message (a string) when it cannot run."""
    try:
        return bool(EvalWithCompoundTypes(names=names, functions={}).eval(expression))
    except (InvalidExpression, TypeError, ValueError, ArithmeticError) as exc:
        return f"condition `{expression}` failed to evaluate: {type(exc).__name__}: {exc}"


def check_rules(rules: list[Rule], payload: Payload) -> list[RuleOutcome]:
    return [check_rule(rule, payload) for rule in rules]


_RULES = TypeAdapter(list[Rule])


def load_rules(path: Path) -> list[Rule]:
    """Load a rules YAML file; raise RecipeError naming the rule index and field on errors."""
    raw = read_yaml(path, "rules") or []
    try:
        rules = _RULES.validate_python(raw)
    except ValidationError as exc:
        raise RecipeError(str(path), format_validation_error(exc, Rule)) from None
    ids = [r.id for r in rules]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise RecipeError(str(path), [f"duplicate rule ids: {', '.join(dup)}"])
    return rules


def pack_names() -> list[str]:
    return plugins.RULE_PACKS.names()


def rules_path(source: str) -> Path:
    """A rules file path, or the file of a registered pack (``pack:medical``, or a plugin's
    ``plugins.register_rule_pack``)."""
    if source.startswith("pack:"):
        name = source.removeprefix("pack:")
        if name not in plugins.RULE_PACKS:
            raise RecipeError(source, [f"no rule pack; packs: {', '.join(pack_names())}"])
        return plugins.RULE_PACKS.get(name)
    return Path(source)


def load_rule_sources(sources: list[str]) -> list[Rule]:
    """Rules from files and packs, in order; a rule id may appear only once overall."""
    rules: list[Rule] = []
    for source in sources:
        rules.extend(load_rules(rules_path(source)))
    ids = [r.id for r in rules]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise RecipeError(", ".join(sources), [f"duplicate rule ids: {', '.join(dup)}"])
    return rules
