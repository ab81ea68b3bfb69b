"""Generate stage: a strategy's work items through the engine, flushed as append-only shards.

Resume contract: every record carries its item's key; on start, items whose key is already
in the shards are skipped (and the strategy restores its state from them), so an interrupted
run (Ctrl-C, kill -9, a crashing backend, a spent budget) finishes with no lost and no
duplicated records. Shard writes are atomic (see ``store``). When every item is done, the
ordered dataset is written as ``generate/dataset.parquet``.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from synthtune.config import OpenAIBackendConfig, Recipe
from synthtune.context import StageContext
from synthtune.generate.strategies import STRATEGIES, Output, Strategy, WorkItem
from synthtune.label_targets import GenerationTargets, generation_targets
from synthtune.llm.backends.openai_compat import read_api_key
from synthtune.llm.cache import ResponseCache
from synthtune.llm.engine import GenerationEngine, Usage
from synthtune.records import Payload, Record, content_hash, payload_id


def make_strategy(recipe: Recipe) -> Strategy:
    return STRATEGIES.get(recipe.generation.strategy.type)(recipe)


NO_GENERATE = "no generate section: real data only"


def to_records(
    item: WorkItem, outputs: list[Output], engine: GenerationEngine, recipe: Recipe
) -> list[Record]:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    records = []
    for position, output in enumerate(outputs):
        lineage = {
            "template": item.template.config.id,
            "slots": item.slots,
            "strategy": recipe.generation.strategy.type,
            "backend": engine.backend_name,
            "model": engine.model_name,
            "seed": recipe.seed,
            "round": 1,
            "request_index": item.index,
            "request_key": item.key,
            "output_index": position,
            "prompt_hash": content_hash(output.messages[:-1] or output.messages),
            "created_at": now,
            **({"edge_case": item.edge_case} if item.edge_case else {}),
            **output.lineage,
        }
        payload = Payload.model_validate(
            {"messages": output.messages, "label": output.label, "media": output.media}
        )
        record = Record.create("synthetic", payload, lineage=lineage)
        if output.error is not None:
            record.reject(output.error if ":" in output.error else f"generate: {output.error}")
        records.append(record)
    return records


def spent_so_far(records: list[Record]) -> Usage:
    usage = Usage()
    for r in records:
        if not r.lineage.get("cached", False):
            usage.tokens_in += r.lineage.get("tokens_in", 0)
            usage.tokens_out += r.lineage.get("tokens_out", 0)
            usage.cost_usd += r.lineage.get("cost_usd", 0.0)
            retries = r.lineage.get("retries") or {}
            usage.retry_reasons.update(retries)  # the retries of the part before a resume
            usage.retried += sum(retries.values())
    return usage


def first_by_key(records: list[Record], keys: set[str]) -> dict[str, list[Record]]:
    """Records grouped by item key; if a key were ever flushed twice, the first flush wins."""
    groups: dict[str, list[Record]] = defaultdict(list)
    shard_of: dict[str, Any] = {}
    for record in records:
        key = record.lineage["request_key"]
        if key not in keys:
            continue
        shard = record.lineage.get("_shard")
        if shard_of.setdefault(key, shard) == shard:
            groups[key].append(record)
    return groups


# Requests validate plans and renders (a recipe asking for millions is checked on these).
CHECK_REQUESTS = 1_000


class GenerateStage:
    name = "generate"
    sections: tuple[str, ...] = ("seed", "generate")

    def check(self, recipe: Recipe) -> None:
        if recipe.generate is None:
            return
        # templates compile and render, documents and seed tasks load: on the first
        # CHECK_REQUESTS requests, so that validate stays instant for any n
        generate = recipe.generate
        if generate.n > CHECK_REQUESTS:
            sample = generate.model_copy(update={"n": CHECK_REQUESTS})
            recipe = recipe.model_copy(update={"generate": sample})
        for item in make_strategy(recipe).plan():
            # every field renders within the limits (templates.render): a template that
            # hangs, divides by zero or escapes the sandbox fails here, before any work
            item.render(**dict.fromkeys(item.template.provided, ""))
        if isinstance(recipe.generation.backend, OpenAIBackendConfig):
            read_api_key(recipe.generation.backend)  # a missing key fails before any work

    def _existing(self, ctx: StageContext) -> list[Record]:
        """The records of the shards written so far. A shard whose bytes no longer match the
        checksum written beside it, or that cannot be read (cut off by a crash or a full
        disk), is moved aside, and a record whose id no longer matches its content is
        dropped (the check for shards without a checksum): their items are generated again
        (from the response cache when it holds them), never read as something else."""
        from synthtune.store import read_records

        records = []
        for n, path in enumerate(ctx.store.shard_paths(self.name)):
            problem = None
            if ctx.store.shard_intact(path) is False:
                problem = "does not match its checksum"
            else:
                try:
                    shard = read_records(path)
                except Exception as exc:  # pyarrow raises several types on damaged files
                    problem = f"is unreadable ({type(exc).__name__})"
            if problem is not None:
                moved = ctx.store.quarantine(path)
                ctx.log(
                    f"[yellow]generate: {path.name} {problem}; moved to {moved.name}, its "
                    "items are generated again[/]"
                )
                continue
            for record in shard:
                if record.id != payload_id(record.payload):
                    ctx.log(
                        f"[yellow]generate: record {record.id} in {path.name} does not match "
                        "its content (damaged bytes): dropped, its item is generated again[/]"
                    )
                    continue
                record.lineage["_shard"] = n
                records.append(record)
        return records

    def run(self, ctx: StageContext) -> dict[str, Any]:
        recipe, store = ctx.recipe, ctx.store
        if recipe.generate is None:
            store.write_table(self.name, "dataset", [])
            ctx.log(f"generate: {NO_GENERATE}")
            return {"records_in": 0, "records_out": 0, "records": 0, "skipped": NO_GENERATE}
        targeting = generation_targets(recipe)
        for note in targeting.notes:
            ctx.log(f"[yellow]{note[1:]}[/]" if note.startswith("!") else note)
        if targeting.slots:
            ctx.log(f"generate: label slots weighted by the synthetic targets {targeting.targets}")
        strategy = make_strategy(targeting.recipe)
        items = strategy.plan()
        keys = {it.key for it in items}
        existing = first_by_key(self._existing(ctx), keys)
        flat = [r for group in existing.values() for r in group]
        strategy.restore(sorted(flat, key=lambda r: r.lineage["request_index"]))
        todo = [it for it in items if it.key not in existing]
        if existing:
            ctx.log(f"generate: resuming, {len(existing)} of {len(items)} items already done")
        cache = None if ctx.no_cache else ResponseCache(store.root / "cache" / "generate.sqlite")
        engine = GenerationEngine(
            recipe.generation,
            ctx.resolve_model,
            cache,
            spent_so_far(flat),
            # where a backend keeps state across runs (the Batch API mode's batch ids)
            state_dir=store.stage_dir(self.name) / "backend-state",
            log=ctx.log,
            executor=ctx.executor,
        )
        try:
            self._run_items(ctx, strategy, engine, todo)
        finally:
            engine.close()
            if cache is not None:
                cache.close()
        done = first_by_key(self._existing(ctx), keys)
        dataset = []
        for item in items:
            for record in done.get(item.key, []):
                record.lineage.pop("_shard", None)
                dataset.append(record)
        store.write_table(self.name, "dataset", dataset)
        return self._summary(items, dataset, engine.usage, len(existing), targeting)

    def _run_items(
        self,
        ctx: StageContext,
        strategy: Strategy,
        engine: GenerationEngine,
        todo: list[WorkItem],
    ) -> None:
        size = ctx.recipe.generation.flush_every
        if getattr(strategy, "independent_batches", False):
            # a backend that wants large calls (the Batch API: one job per call) gets them;
            # its own state, not small shards, makes it resumable
            wanted = getattr(ctx.recipe.generation.backend, "items_per_call", None)
            size = max(size, wanted or 0)
        with ctx.progress("generate", len(todo)) as bar:
            engine.listeners.append(
                lambda u: bar.note(
                    f"ok {u.requests - u.failed} failed {u.failed} retried {u.retried} "
                    f"cached {u.cached} ${u.cost_usd:.4f}"
                )
            )
            engine.status_listeners.append(bar.note)  # e.g. a batch's status while polled
            batches = [todo[start : start + size] for start in range(0, len(todo), size)]
            # A strategy whose batches are independent (template-fill) runs the next batches
            # while this one finishes: the requests of all share the backend's one limit, so
            # flush_every (resume granularity) caps neither concurrency nor leaves a tail of
            # stragglers per shard. Shards are still written in order, one batch each.
            if not getattr(strategy, "independent_batches", False):
                for batch in batches:  # in this thread: Ctrl-C stops a local model at once
                    self._write(ctx, engine, batch, strategy.run(batch, engine))
                    bar(len(batch))
                return
            # Enough batches run at once to keep four windows of the backend's `concurrency`
            # queued (at least two): flush_every sets the shard size only, never the
            # concurrency, and a batch's slow tail never idles the limit while the next waits
            # (peers' server, 200 requests at defaults, concurrency 64 / flush_every 64: two
            # batches 5.4 s, three 4.6 s, five 3.7 s of process wall time; bench/peers).
            # With a budget or token cap, two: the budget is checked before each batch is
            # sent, so every batch in flight may overshoot it (by flush_every requests each).
            gen = ctx.recipe.generation
            concurrency = int(getattr(gen.backend, "concurrency", 0) or 0)
            ahead = min(64, max(2, -(-4 * concurrency // size) + 1))
            if gen.budget_usd is not None or gen.max_total_tokens is not None:
                ahead = 2
            with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="generate") as pool:
                running: deque[tuple[list[WorkItem], Future[list[list[Output]]]]] = deque()
                for batch in batches:
                    running.append((batch, pool.submit(strategy.run, batch, engine)))
                    while len(running) >= ahead or (running and batch is batches[-1]):
                        done, future = running.popleft()
                        self._write(ctx, engine, done, future.result())
                        bar(len(done))

    def _write(
        self,
        ctx: StageContext,
        engine: GenerationEngine,
        batch: list[WorkItem],
        outputs: list[list[Output]],
    ) -> None:
        """One batch's media files, then its shard."""
        for output in (o for outs in outputs for o in outs):
            for relative, data in output.files.items():
                ctx.store.write_media(relative, data)
        records = [
            r
            for item, outs in zip(batch, outputs, strict=True)
            for r in to_records(item, outs, engine, ctx.recipe)
        ]
        ctx.store.append_shard(self.name, records)

    def _summary(
        self,
        items: list[WorkItem],
        dataset: list[Record],
        usage: Usage,
        resumed: int,
        targeting: GenerationTargets,
    ) -> dict[str, Any]:
        reasons = Counter(r.split(" (")[0] for rec in dataset for r in rec.reasons)
        return {
            "records_in": len(items),
            "records_out": sum(r.status == "accepted" for r in dataset),
            "records": len(dataset),
            "resumed": resumed,
            "rejected_reasons": dict(reasons.most_common(5)),
            "by_template": dict(Counter(r.lineage["template"] for r in dataset)),
            **targeting.summary(),
            "usage": {
                **usage.as_dict(),
                "tokens_in_total": sum(r.lineage.get("tokens_in", 0) for r in dataset),
                "tokens_out_total": sum(r.lineage.get("tokens_out", 0) for r in dataset),
            },
        }
