"""Rules suite: how often each model's generated replies obey the recipe's rules
(``quality.rules``, the quality stage's rule engine), per rule and overall.

Each reply is checked as the record it would make: the prompt turns plus the reply as the
assistant turn. A rule counts for a reply only where it applies (its values were found and
its ``when`` holds); compliance is passed / applicable. Overall, ``replies`` is the share of
replies with at least one applicable rule that pass every applicable rule, and ``checks`` is
passed / applicable over all (reply, rule) pairs.
"""

from __future__ import annotations

from typing import Any

from synthtune import plugins
from synthtune.config import Recipe
from synthtune.errors import RecipeError
from synthtune.evaluate.generation import generate_replies
from synthtune.evaluate.suites import Columns, EvalInputs, Suite
from synthtune.records import Message, Payload
from synthtune.rules import RuleOutcome, check_rules, load_rule_sources


def _share(passed: int, applicable: int) -> dict[str, Any]:
    rate = round(passed / applicable, 4) if applicable else None
    return {"applicable": applicable, "passed": passed, "compliance": rate}


def compliance(outcomes: list[list[RuleOutcome]], rule_ids: list[str]) -> dict[str, Any]:
    """Per-rule and overall compliance of replies, from each reply's rule outcomes."""
    per_rule = {}
    for rule in rule_ids:
        hits = [o for reply in outcomes for o in reply if o.rule == rule and o.applicable]
        per_rule[rule] = _share(sum(o.ok for o in hits), len(hits))
    checked = [[o for o in reply if o.applicable] for reply in outcomes]
    checked = [reply for reply in checked if reply]
    return {
        "replies": _share(sum(all(o.ok for o in reply) for reply in checked), len(checked)),
        "checks": _share(
            sum(r["passed"] for r in per_rule.values()),
            sum(r["applicable"] for r in per_rule.values()),
        ),
        "per_rule": per_rule,
    }


def measure(model: Any, tokenizer: Any, inputs: EvalInputs, variant: str) -> dict[str, Any]:
    rules = load_rule_sources(inputs.recipe.quality.rules)
    replies = generate_replies(model, tokenizer, inputs, variant)
    outcomes = [
        check_rules(
            rules,
            Payload(messages=[*p.messages, Message(role="assistant", content=reply)]),
        )
        for p, reply in zip(inputs.prompts, replies, strict=True)
    ]
    return compliance(outcomes, [r.id for r in rules])


def summarize(columns: Columns, inputs: EvalInputs) -> dict[str, Any]:
    return {"n": len(inputs.prompts), "prompts": inputs.prompt_source, **columns}


def check(recipe: Recipe) -> None:
    if not recipe.quality.rules:
        raise RecipeError(
            str(recipe.source),
            [
                "evaluate.suites: the rules suite checks replies against quality.rules, "
                "which is empty; add a rules file or pack (quality.rules) or remove `rules`"
            ],
        )


plugins.register_suite(
    "rules", Suite(task="causal", measure=measure, summarize=summarize, check=check)
)
