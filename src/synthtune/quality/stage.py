"""Quality stage: tiers run cheap to costly on the records still accepted; rejects keep reasons.

Order: heuristics -> image checks (records with images: exposure, pHash, caption; see
``quality.images``) -> dedup (exact, MinHash, embeddings) -> decontamination -> fluency
(optional n-gram first pass, then perplexity) -> logic (rules) -> LLM judge. Each tier scores
the records still accepted and writes its result on them; rules are checked on every record
with a reply (cheap, and the report shows every failure). A stratified sample of the survivors
is flagged for human review (``quality.review``) and listed in ``quality/review_sample.jsonl``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from synthtune import plugins
from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.errors import RecipeError
from synthtune.executor import flatten
from synthtune.llm.cache import ResponseCache
from synthtune.llm.engine import GenerationEngine
from synthtune.ngram import NGramLM
from synthtune.plugins import QUALITY_FILTERS, QualityFilter
from synthtune.quality import decontam, dedup
from synthtune.quality import shards as per_shard
from synthtune.quality.judge import judge_records
from synthtune.quality.sampling import stratified_sample, tier_outcome
from synthtune.realdata import real_texts
from synthtune.records import Record
from synthtune.rules import load_rule_sources
from synthtune.store import atomic_write_text

Tier = Callable[[StageContext, list[Record]], None]


def _accepted(records: list[Record]) -> list[Record]:
    return [r for r in records if r.status == "accepted"]


def _has_reply(record: Record) -> bool:
    return any(m.role == "assistant" for m in record.payload.messages)


def _map(
    ctx: StageContext, fn: Callable[..., Any], items: list[Any], shared: Any = None
) -> list[Any]:
    """``fn`` over ``items`` in shards on the run's executor, one result per item, in order."""
    return flatten(ctx.executor.map(fn, ctx.executor.shards(items), shared=shared))


def heuristics_tier(ctx: StageContext, records: list[Record]) -> None:
    cfg = ctx.recipe.quality.heuristics
    schemas = {t.id for t in ctx.recipe.generation.templates if t.json_schema is not None}
    pool = _accepted(records)
    items = [(r.payload, r.lineage.get("template") in schemas) for r in pool]
    for record, reasons in zip(pool, _map(ctx, per_shard.heuristics, items, cfg), strict=True):
        record.quality["heuristics"] = reasons
        for reason in reasons:
            record.reject(reason)


def _text_only(records: list[Record]) -> list[Record]:
    """Accepted records whose content is their text: records with media are compared by
    their media (exact: the content-addressed file; near: the image tier's perceptual hash),
    since many images share one caption."""
    return [r for r in _accepted(records) if not r.payload.media]


def dedup_tier(ctx: StageContext, records: list[Record]) -> None:
    cfg = ctx.recipe.quality.dedup
    pool = _accepted(records)
    if cfg.exact:
        keys = _map(ctx, per_shard.exact_keys, [dedup.content_text(r) for r in pool])
        dedup.keep_best(pool, dedup.key_clusters(keys), "exact", dedup.preference)
    if cfg.minhash_threshold is not None:
        pool = _text_only(records)
        texts = [r.payload.text("all") for r in pool]
        parts = ctx.executor.map(
            per_shard.minhash_signatures,
            ctx.executor.shards(texts),
            shared=(cfg.num_perm, cfg.shingle),
        )
        sig = np.concatenate(parts) if parts else None
        clusters = dedup.minhash_clusters(
            texts, cfg.minhash_threshold, cfg.num_perm, cfg.shingle, sig=sig
        )
        dedup.keep_best(pool, clusters, "near", dedup.preference)
    if cfg.embedding is not None:
        pool = _text_only(records)
        worker = per_shard.EmbeddingWorker(cfg.embedding.model, cfg.embedding.batch_size)
        texts = [r.payload.text("all") for r in pool]
        if texts:
            vectors = np.concatenate(ctx.executor.map_workers(worker, ctx.executor.shards(texts)))
            clusters = dedup.embedding_clusters(vectors, cfg.embedding.threshold)
            dedup.keep_best(pool, clusters, "semantic", dedup.preference)


def decontam_tier(ctx: StageContext, records: list[Record]) -> None:
    recipe = ctx.recipe
    cfg, mix = recipe.quality.decontam, recipe.mix
    if mix.real is None:
        return
    index = decontam.build_index(real_texts(recipe, test=True), cfg.ngram)
    pool = _text_only(records)  # an image's caption is shared by many distinct images
    texts = [r.payload.text("all") for r in pool]
    shared = _map(ctx, per_shard.contaminated, texts, (index, cfg.ngram, cfg.min_overlap))
    for record, count in zip(pool, shared, strict=True):
        if count:
            record.quality["decontam"] = {"shared_ngrams": count}
            record.reject(f"decontam: shares {cfg.ngram}-grams with the test split ({count})")


def _in_domain_texts(ctx: StageContext, records: list[Record]) -> list[str]:
    if ctx.recipe.mix.real is not None:
        return real_texts(ctx.recipe, test=False)
    return [r.payload.text("response") for r in _accepted(records)]


def ngram_prefilter(ctx: StageContext, records: list[Record]) -> None:
    cfg = ctx.recipe.quality.perplexity
    assert cfg.prefilter is not None
    lm = NGramLM(cfg.prefilter.order).fit(_in_domain_texts(ctx, records))
    alive = [r for r in _accepted(records) if _has_reply(r)]
    scores = _map(ctx, per_shard.ngram_perplexity, [r.payload.text(cfg.text) for r in alive], lm)
    if not scores:
        return
    limit = float(np.percentile(scores, cfg.prefilter.reject_above_percentile))
    for record, ppl in zip(alive, scores, strict=True):
        record.quality["ngram_perplexity"] = round(ppl, 3)
        if ppl > limit:
            label = f"p{cfg.prefilter.reject_above_percentile:g} = {limit:.1f}"
            record.reject(f"fluency: n-gram perplexity above {label} ({ppl:.1f})")


def fluency_tier(ctx: StageContext, records: list[Record]) -> None:
    cfg = ctx.recipe.quality.perplexity
    if cfg.prefilter is not None:
        ngram_prefilter(ctx, records)
    # Only records still accepted are scored: earlier (cheaper) tiers spare the model work.
    scored = [r for r in _accepted(records) if _has_reply(r)]
    worker = per_shard.PerplexityWorker(
        ctx.resolve_model(cfg.model), cfg.batch_size, cfg.max_length, cfg.stride
    )
    texts = [r.payload.text(cfg.text) for r in scored]
    with ctx.progress("quality: perplexity", len(scored)) as advance:
        scores = flatten(
            ctx.executor.map_workers(worker, ctx.executor.shards(texts), advance=advance)
        )
    for record, ppl in zip(scored, scores, strict=True):
        record.quality["perplexity"] = round(ppl, 3)
    alive = [r for r in scored if r.status == "accepted"]
    if cfg.mode == "percentile" and alive:
        limit = float(np.percentile([r.quality["perplexity"] for r in alive], cfg.percentile))
        label = f"p{cfg.percentile:g} = {limit:.1f}"
    else:
        limit, label = cfg.max, f"{cfg.max:g}"
    for record in alive:
        if record.quality["perplexity"] > limit:
            record.reject(f"fluency: perplexity above {label} ({record.quality['perplexity']:.1f})")


def rules_tier(ctx: StageContext, records: list[Record]) -> None:
    rules = load_rule_sources(ctx.recipe.quality.rules)
    report_only = set(ctx.recipe.quality.rules_report_only)
    pool = [r for r in records if _has_reply(r)]
    checked = _map(ctx, per_shard.rules, [r.payload for r in pool], rules)
    for record, outcomes in zip(pool, checked, strict=True):
        record.quality["rules"] = [o.as_dict() for o in outcomes]
        if record.status != "accepted" or not ctx.recipe.quality.rule_filter:
            continue
        for o in outcomes:
            if not o.ok and o.severity == "error" and o.rule not in report_only:
                record.reject(f"rules: {o.rule}")


def judge_tier(ctx: StageContext, records: list[Record]) -> None:
    cfg = ctx.recipe.quality.judge
    assert cfg is not None
    generate_cfg = ctx.recipe.generation.model_copy(update={"backend": cfg.backend})
    cache = None if ctx.no_cache else ResponseCache(ctx.store.root / "cache" / "judge.sqlite")
    engine = GenerationEngine(generate_cfg, ctx.resolve_model, cache, executor=ctx.executor)
    try:
        judge_records(_accepted(records), cfg, engine)
    finally:
        engine.close()
        if cache is not None:
            cache.close()


def _dedup_on(recipe: Recipe) -> bool:
    d = recipe.quality.dedup
    return bool(d.exact or d.minhash_threshold is not None or d.embedding)


for _name, _spec in {
    "heuristics": QualityFilter(10, heuristics_tier, lambda r: r.quality.heuristics.enabled),
    "dedup": QualityFilter(30, dedup_tier, _dedup_on),
    "decontam": QualityFilter(
        40, decontam_tier, lambda r: r.quality.decontam.enabled and r.mix.real is not None
    ),
    "fluency": QualityFilter(50, fluency_tier, lambda r: r.quality.perplexity.enabled),
    "rules": QualityFilter(60, rules_tier, lambda r: bool(r.quality.rules)),
    "judge": QualityFilter(70, judge_tier, lambda r: r.quality.judge is not None),
}.items():
    plugins.register_quality_filter(_name, _spec)


def enabled_tiers(recipe: Recipe) -> list[tuple[str, Tier]]:
    """The built-in tiers the recipe turns on and the plugin filters it lists
    (``quality.filters``), by ascending ``order``."""
    names = [n for n in QUALITY_FILTERS.names() if not QUALITY_FILTERS.is_plugin(n)]
    chosen = [(n, QUALITY_FILTERS.get(n)) for n in dict.fromkeys([*names, *recipe.quality.filters])]
    chosen = [(n, f) for n, f in chosen if f.enabled(recipe)]
    return [(n, f.run) for n, f in sorted(chosen, key=lambda item: item[1].order)]


class QualityStage:
    name = "quality"
    sections: tuple[str, ...] = ("quality",)

    def check(self, recipe: Recipe) -> None:
        rules = load_rule_sources(recipe.quality.rules) if recipe.quality.rules else []
        unknown = sorted(set(recipe.quality.rules_report_only) - {r.id for r in rules})
        if unknown:
            raise RecipeError(
                str(recipe.source),
                [
                    f"quality.rules_report_only: no rule {rule!r} in quality.rules"
                    for rule in unknown
                ],
            )

    def run(self, ctx: StageContext) -> dict[str, Any]:
        cfg = ctx.recipe.quality
        records = ctx.store.read_table("generate", "dataset")
        if not records:  # nothing generated (real data only): no tier loads a model
            ctx.store.write_table(self.name, "dataset", [])
            return {
                "records_in": 0,
                "records_out": 0,
                "skipped": "no generated records",
                "funnel": [],
                "rejected_reasons": {},
                "review_sample": 0,
                "edge_cases": {"generated": 0, "accepted": 0},
                "ppl_max": None,
            }
        funnel = [{"tier": "generated", "remaining": len(_accepted(records))}]
        for name, tier in enabled_tiers(ctx.recipe):
            tier(ctx, records)
            funnel.append({"tier": name, "remaining": len(_accepted(records))})
        sample = stratified_sample(
            _accepted(records),
            cfg.review.fraction,
            cfg.review.stratify_by,
            ctx.recipe.seed,
            cfg.review.min_per_stratum,
        )
        # and records the tiers rejected, by the tier that did: their reviews measure each
        # tier's precision and recall (review.measure)
        rejected = [r for r in records if r.status != "accepted" and _has_reply(r)]
        if sample and rejected and cfg.review.rejected_share:
            wanted = math.ceil(
                len(sample) * cfg.review.rejected_share / (1 - cfg.review.rejected_share)
            )
            sample += stratified_sample(
                rejected,
                min(1.0, wanted / len(rejected)),
                [],
                ctx.recipe.seed,
                cfg.review.min_per_stratum,
                key=tier_outcome,
            )
        for record in sample:
            record.quality["review"] = {"sampled": True, "outcome": tier_outcome(record)}
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
            # generate.edge_cases: expected to fail the rules more often, which is their point
            "edge_cases": {
                "generated": sum("edge_case" in r.lineage for r in records),
                "accepted": sum("edge_case" in r.lineage for r in _accepted(records)),
            },
            "ppl_max": cfg.perplexity.max
            if cfg.perplexity.enabled and cfg.perplexity.mode == "absolute"
            else None,
        }
