"""Generate stage: run the request plan through a backend, flushing append-only shards.

Resume contract: every record carries its request key; on start, keys already present in
the shards are skipped, so an interrupted run (Ctrl-C, kill -9, a crashing backend) finishes
with no lost and no duplicated records. Shard writes are atomic (see ``store``). When the
plan is complete, the ordered dataset is written as ``generate/dataset.parquet``.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

from synthtune.config import OpenAIBackendConfig, Recipe
from synthtune.context import StageContext
from synthtune.generate.backends import GenerationResult, create_backend
from synthtune.generate.backends.base import GenerationRequest
from synthtune.generate.backends.openai_compat import read_api_key
from synthtune.generate.cache import ResponseCache, cache_key
from synthtune.generate.plan import PlannedRequest, compile_templates, plan_requests
from synthtune.records import Message, Payload, Record, content_hash


class _CachedInfo:
    """Backend name and model for lineage when every reply of a batch came from the cache."""

    def __init__(self, config: Any) -> None:
        self.name = config.type
        self.model = getattr(config, "model", config.type)


def _record(
    req: PlannedRequest, result: GenerationResult, backend: Any, seed: int, cached: bool = False
) -> Record:
    messages = [Message.model_validate(m) for m in req.messages()]
    if result.text is not None:
        messages.append(Message(role="assistant", content=result.text))
    lineage = {
        "template": req.template.config.id,
        "slots": req.slots,
        "strategy": "template-fill",
        "backend": backend.name,
        "model": backend.model,
        "seed": seed,
        "round": 1,
        "request_index": req.index,
        "request_key": req.key,
        "prompt_hash": content_hash(req.messages()),
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "attempts": result.attempts,
        "cached": cached,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record = Record.create("synthetic", Payload(messages=messages), lineage=lineage)
    if result.error is not None:
        record.reject(f"generate: {result.error}")
    return record


class _LazyBackend:
    """Creates the backend on first use: a fully cached run never loads a model."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self._backend: Any = None

    def get(self) -> Any:
        if self._backend is None:
            self._backend = create_backend(self.ctx.recipe.generate.backend, self.ctx.resolve_model)
        return self._backend


class GenerateStage:
    name = "generate"
    sections: tuple[str, ...] = ("seed", "generate")

    def check(self, recipe: Recipe) -> None:
        compile_templates(recipe.generate)
        if isinstance(recipe.generate.backend, OpenAIBackendConfig):
            read_api_key(recipe.generate.backend)  # a missing key fails before any work

    def run(self, ctx: StageContext) -> dict[str, Any]:
        recipe, store = ctx.recipe, ctx.store
        plan = plan_requests(recipe.generate, recipe.seed)
        keys = {req.key for req in plan}
        done = {r.lineage["request_key"] for r in store.read_shards(self.name)} & keys
        todo = [req for req in plan if req.key not in done]
        if done:
            ctx.log(f"generate: resuming, {len(done)} of {len(plan)} requests already done")
        if todo:
            self._run_requests(ctx, todo)
        by_key: dict[str, Record] = {}
        for record in store.read_shards(self.name):
            by_key.setdefault(record.lineage["request_key"], record)
        dataset = sorted(
            (r for k, r in by_key.items() if k in keys), key=lambda r: r.lineage["request_index"]
        )
        store.write_table(self.name, "dataset", dataset)
        failed = Counter(reason for r in dataset for reason in r.reasons)
        return {
            "records_in": len(plan),
            "records_out": sum(r.status == "accepted" for r in dataset),
            "resumed": len(done),
            "rejected_reasons": dict(failed.most_common(5)),
            "by_template": dict(Counter(r.lineage["template"] for r in dataset)),
        }

    def _run_requests(self, ctx: StageContext, todo: list[PlannedRequest]) -> None:
        recipe, store = ctx.recipe, ctx.store
        backend = _LazyBackend(ctx)
        cache = None if ctx.no_cache else ResponseCache(store.root / "cache" / "generate.sqlite")
        config = recipe.generate.backend.model_dump(mode="json")
        size = recipe.generate.flush_every
        hits = 0
        with ctx.progress("generate", len(todo)) as advance:
            for start in range(0, len(todo), size):
                batch = todo[start : start + size]
                keys = [cache_key(config, q.messages(), q.index) for q in batch]
                cached = cache.get_many(keys) if cache else {}
                misses = [(k, q) for k, q in zip(keys, batch, strict=True) if k not in cached]
                if misses:
                    requests = [
                        GenerationRequest(q.key, q.messages(), q.rendered["response"])
                        for _, q in misses
                    ]
                    fresh = backend.get().generate(requests)
                    if cache:
                        cache.put_many([(k, r) for (k, _), r in zip(misses, fresh, strict=True)])
                    cached.update({k: r for (k, _), r in zip(misses, fresh, strict=True)})
                missed = {k for k, _ in misses}
                hits += len(batch) - len(missed)
                info = backend.get() if misses else _CachedInfo(recipe.generate.backend)
                records = [
                    _record(q, cached[k], info, recipe.seed, cached=k not in missed)
                    for k, q in zip(keys, batch, strict=True)
                ]
                store.append_shard(self.name, records)
                advance(len(batch))
        if cache:
            cache.close()
        if hits:
            ctx.log(f"generate: {hits} of {len(todo)} replies came from the cache")
