"""Quality stage: tiers run in order on the records still accepted; rejects keep reasons.

Tier order (cheap to costly): exact dedup -> fluency (perplexity) -> logic (rules). Every
scored record gets its score in ``quality`` even when an earlier tier rejected it, so the
report can show full distributions. A stratified sample of the survivors is flagged for
human review (``quality.review.sampled``) and listed in ``quality/review_sample.jsonl``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.models import load_causal_lm
from synthtune.perplexity import PerplexityScorer
from synthtune.quality.sampling import stratified_sample
from synthtune.records import Record
from synthtune.rules import check_rules, load_rules
from synthtune.store import atomic_write_text


def _accepted(records: list[Record]) -> list[Record]:
    return [r for r in records if r.status == "accepted"]


def dedup_tier(records: list[Record]) -> None:
    first: dict[str, str] = {}
    for record in _accepted(records):
        if record.id in first:
            record.reject("dedup: exact duplicate")
        else:
            first[record.id] = record.id


def fluency_tier(ctx: StageContext, records: list[Record]) -> None:
    cfg = ctx.recipe.quality.perplexity
    scored = [r for r in records if any(m.role == "assistant" for m in r.payload.messages)]
    model, tokenizer = load_causal_lm(ctx.resolve_model(cfg.model))
    scorer = PerplexityScorer(model, tokenizer, cfg.batch_size, cfg.max_length)
    with ctx.progress("quality: perplexity", len(scored)) as advance:
        scores = scorer.score([r.payload.text(cfg.text) for r in scored], advance)
    for record, ppl in zip(scored, scores, strict=True):
        record.quality["perplexity"] = round(ppl, 3)
        if record.status == "accepted" and ppl > cfg.max:
            record.reject(f"fluency: perplexity above {cfg.max:g} ({ppl:.1f})")


def rules_tier(ctx: StageContext, records: list[Record]) -> None:
    assert ctx.recipe.quality.rules is not None
    rules = load_rules(ctx.recipe.quality.rules)
    for record in records:
        outcomes = check_rules(rules, record.payload)
        record.quality["rules"] = [o.as_dict() for o in outcomes]
        if record.status != "accepted":
            continue
        for o in outcomes:
            if not o.ok and o.severity == "error":
                record.reject(f"rules: {o.rule}")


class QualityStage:
    name = "quality"
    sections: tuple[str, ...] = ("quality",)

    def check(self, recipe: Recipe) -> None:
        if recipe.quality.rules is not None:
            load_rules(recipe.quality.rules)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        cfg = ctx.recipe.quality
        records = ctx.store.read_table("generate", "dataset")
        funnel = [{"tier": "generated", "remaining": len(_accepted(records))}]
        tiers = [("dedup", cfg.dedup.exact, dedup_tier)]
        for name, enabled, tier in tiers:
            if enabled:
                tier(records)
                funnel.append({"tier": name, "remaining": len(_accepted(records))})
        if cfg.perplexity.enabled:
            fluency_tier(ctx, records)
            funnel.append({"tier": "fluency", "remaining": len(_accepted(records))})
        if cfg.rules is not None:
            rules_tier(ctx, records)
            funnel.append({"tier": "rules", "remaining": len(_accepted(records))})
        sample = stratified_sample(
            _accepted(records), cfg.review.fraction, cfg.review.stratify_by, ctx.recipe.seed
        )
        for record in sample:
            record.quality["review"] = {"sampled": True}
        lines = [json.dumps(r.model_dump(mode="json"), ensure_ascii=False) for r in sample]
        atomic_write_text(ctx.store.path(self.name, "review_sample.jsonl"), "\n".join(lines))
        ctx.store.write_table(self.name, "dataset", records)
        # Reasons carry the measured value in parentheses; group on the part before it.
        reasons = Counter(reason.split(" (")[0] for r in records for reason in r.reasons)
        return {
            "records_in": len(records),
            "records_out": len(_accepted(records)),
            "funnel": funnel,
            "rejected_reasons": dict(reasons.most_common(8)),
            "review_sample": len(sample),
            "ppl_max": cfg.perplexity.max if cfg.perplexity.enabled else None,
        }
