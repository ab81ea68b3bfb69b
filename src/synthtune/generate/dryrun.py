"""``synthtune generate --dry-run``: what a run would send and cost, before spending anything.

Prompt tokens are estimated (``tokens.estimate_tokens``); completion tokens are the upper
bound ``calls x max tokens``; cost uses ``generate.prices`` for the backend's model. Items
already flushed in the run directory are not counted again.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from synthtune.config import Recipe
from synthtune.generate.stage import make_strategy
from synthtune.llm.engine import cost_of
from synthtune.store import RunStore


def max_completion_tokens(recipe: Recipe) -> int:
    backend = recipe.generation.backend
    return int(getattr(backend, "max_tokens", getattr(backend, "max_new_tokens", 0)))


def estimate(recipe: Recipe, store: RunStore | None = None) -> dict[str, Any]:
    strategy = make_strategy(recipe)
    items = strategy.plan()
    done: set[str] = set()
    if store is not None:
        done = {r.lineage["request_key"] for r in store.read_shards("generate")}
    per_call = max_completion_tokens(recipe)
    model = str(getattr(recipe.generation.backend, "model", recipe.generation.backend.type))
    price = recipe.generation.prices.get(model)
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for item in items:
        if item.key in done:
            continue
        calls, prompt_tokens = strategy.estimate(item)
        row = rows[item.template.config.id]
        row["items"] += 1
        row["calls"] += calls
        row["prompt_tokens"] += prompt_tokens
        row["max_completion_tokens"] += calls * per_call
    table: list[dict[str, Any]] = []
    for template, row in sorted(rows.items()):
        cost = cost_of(price, int(row["prompt_tokens"]), int(row["max_completion_tokens"]))
        table.append(
            {
                "template": template,
                **{k: int(v) for k, v in row.items()},
                "max_cost_usd": round(cost, 4) if price else None,
            }
        )
    totals: dict[str, int] = {
        key: sum(int(r[key]) for r in table)
        for key in ("items", "calls", "prompt_tokens", "max_completion_tokens")
    }
    cost = cost_of(price, totals["prompt_tokens"], totals["max_completion_tokens"])
    return {
        "model": model,
        "strategy": recipe.generation.strategy.type,
        "already_done": len(done & {it.key for it in items}),
        "rows": table,
        "totals": {**totals, "max_cost_usd": round(cost, 4) if price else None},
        "priced": price is not None,
        "budget_usd": recipe.generation.budget_usd,
    }
