"""``synthtune generate --dry-run``: what a run would send and cost, before spending anything.

Prompt tokens are estimated (``tokens.estimate_tokens``); completion tokens are the upper
bound ``calls x max tokens``; cost uses ``generate.prices`` for the backend's model, at the
listed (synchronous) price and, for a backend with a Batch API mode (``openai``), at the batch
price too (``Price.batch``: the recipe's batch prices, else half). Items already flushed in the
run directory are not counted again.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from synthtune.config import Recipe
from synthtune.generate.stage import make_strategy
from synthtune.llm.engine import batch_mode, cost_of, model_name, price_of
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
    model = model_name(recipe.generation)
    price = price_of(recipe.generation, batch=False)
    # a backend with a Batch API mode: the batch price beside the listed one
    batch_price = (
        price_of(recipe.generation, batch=True)
        if hasattr(recipe.generation.backend, "mode")
        else None
    )
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

    def costs(prompt_tokens: int, completion_tokens: int) -> dict[str, float | None]:
        sync = cost_of(price, prompt_tokens, completion_tokens)
        batch = cost_of(batch_price, prompt_tokens, completion_tokens)
        return {
            "max_cost_usd": round(sync, 4) if price else None,
            "max_batch_cost_usd": round(batch, 4) if batch_price else None,
        }

    for template, row in sorted(rows.items()):
        table.append(
            {
                "template": template,
                **{k: int(v) for k, v in row.items()},
                **costs(int(row["prompt_tokens"]), int(row["max_completion_tokens"])),
            }
        )
    totals: dict[str, int] = {
        key: sum(int(r[key]) for r in table)
        for key in ("items", "calls", "prompt_tokens", "max_completion_tokens")
    }
    return {
        "model": model,
        "strategy": recipe.generation.strategy.type,
        "already_done": len(done & {it.key for it in items}),
        "rows": table,
        "totals": {**totals, **costs(totals["prompt_tokens"], totals["max_completion_tokens"])},
        "priced": price is not None,
        "batch_priced": batch_price is not None,
        "batch_mode": batch_mode(recipe.generation),
        "budget_usd": recipe.generation.budget_usd,
    }
