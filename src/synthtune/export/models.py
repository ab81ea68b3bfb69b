"""The export stage's model step for text tasks: what ``TaskSpec.export`` points at.

Causal LM: the adapter merged into the base and verified (``export/model``), then
``export.quantize`` measured against fp32 (``export/quantize.json``). Classifier: the merged
classifier and, with ``export.quantize: int8``, the int8 model measured against it.
"""

from __future__ import annotations

from typing import Any

from synthtune.classify import labelled
from synthtune.context import StageContext
from synthtune.export.classifier import merge_classifier, quantize_classifier_int8
from synthtune.export.merge import merge_adapter, save_full_model
from synthtune.export.quantize import quantize_model
from synthtune.records import Record


def chat_prompts(tokenizer: Any, records: list[Record], n: int) -> list[str]:
    """The prompt side of ``n`` records, rendered with the model's chat template."""
    from synthtune.llm.backends.transformers import render_chat

    prompts = []
    for record in records[:n]:
        turns = [m.model_dump() for m in record.payload.messages if m.role != "assistant"]
        prompts.append(render_chat(tokenizer, turns or [{"role": "user", "content": "Hello"}]))
    return prompts or [render_chat(tokenizer, [{"role": "user", "content": "Hello"}])]


def export_causal_lm(
    ctx: StageContext, test: list[Record], train: dict[str, Any]
) -> dict[str, Any]:
    """The tuned causal LM as one folder (export/model): a LoRA-type adapter merged into the
    base and verified, full weights copied; then ``export.quantize`` measured against fp32."""
    cfg, store = ctx.recipe.export, ctx.store
    adapter = store.path("train", "adapter")
    out = store.stage_dir("export") / "model"
    if (adapter / "adapter_config.json").exists():
        if not cfg.merge:
            return {"model": {"skipped": "export.merge is false"}}
        from peft import PeftConfig

        from synthtune.models import load_tokenizer

        if PeftConfig.from_pretrained(str(adapter)).is_prompt_learning:
            reason = "prompt-learning adapters (prefix/prompt/ptuning) have no weights to merge"
            return {"model": {"skipped": reason + "; use train/adapter with its base"}}
        base = ctx.resolve_model(ctx.recipe.train.base)
        prompts = chat_prompts(load_tokenizer(base), test, cfg.verify_prompts)
        model = merge_adapter(base, adapter, out, prompts, cfg.merge_tolerance)
        ctx.log(f"export: merged, max |logit diff| {model['max_abs_logit_diff']:.2e}")
    else:
        model = save_full_model(adapter, out)
    result: dict[str, Any] = {"model": model}
    if cfg.quantize:
        result["quantize"] = _quantize(ctx, test)
    return result


def _quantize(ctx: StageContext, test: list[Record]) -> dict[str, Any]:
    from synthtune.models import load_tokenizer

    cfg, store = ctx.recipe.export, ctx.store
    model_dir = store.stage_dir("export") / "model"
    prompts = chat_prompts(load_tokenizer(str(model_dir)), test, cfg.latency_prompts)
    texts = [r.payload.text("response") for r in test[: cfg.quality_samples]]
    assert cfg.quantize is not None
    report = quantize_model(
        cfg.quantize,
        model_dir,
        store.stage_dir("export") / f"model-{cfg.quantize}",
        texts,
        prompts,
        cfg.latency_new_tokens,
    )
    report["latency_prompts"] = len(prompts)
    report["new_tokens"] = cfg.latency_new_tokens
    report["perplexity_texts"] = len(texts)
    store.write_json("export", "quantize.json", report)
    if "skipped" in report:
        ctx.log(f"[yellow]{report['skipped']}[/]")
    else:
        c = report["comparison"]
        ctx.log(
            f"export: {report['backend']} {c['generation_speedup']}x generation, "
            f"perplexity {c['perplexity_change_pct']:+.2f} %"
        )
    return {k: v for k, v in report.items() if k in ("mode", "backend", "comparison", "skipped")}


def export_classifier(
    ctx: StageContext, test: list[Record], train: dict[str, Any]
) -> dict[str, Any]:
    """Merged classifier in export/model and, with ``export.quantize: int8``, the int8
    model measured against it (``export/quantize.json``, ``task: classification``)."""
    cfg, store, labels = ctx.recipe.export, ctx.store, train["labels"]
    if not cfg.merge:
        return {"model": {"skipped": "export.merge is false"}}
    adapter = store.path("train", "adapter")
    if (adapter / "adapter_config.json").exists():
        from peft import PeftConfig

        if PeftConfig.from_pretrained(str(adapter)).is_prompt_learning:
            reason = "prompt-learning adapters (prefix/prompt/ptuning) have no weights to merge"
            return {"model": {"skipped": reason + "; use train/adapter with its base"}}
    texts, truth = labelled(test, labels)
    if not texts:
        return {"model": {"skipped": "no test record carries a label the classifier knows"}}
    out = store.stage_dir("export") / "model"
    base = ctx.resolve_model(ctx.recipe.train.base)
    model = merge_classifier(
        base,
        adapter,
        labels,
        out,
        texts[: cfg.verify_prompts],
        cfg.merge_tolerance,
    )
    result: dict[str, Any] = {"model": model}
    if cfg.quantize == "int8":
        n = cfg.quality_samples
        report = quantize_classifier_int8(
            out,
            labels,
            store.stage_dir("export") / "model-int8",
            texts[:n],
            truth[:n],
            cfg.latency_prompts,
        )
        store.write_json("export", "quantize.json", report)
        if "comparison" in report:
            c = report["comparison"]
            ctx.log(
                f"export: int8 classifier {c['latency_speedup']}x batch-1 latency, "
                f"accuracy {c['accuracy_change']:+.4f}"
            )
        result["quantize"] = {
            k: v for k, v in report.items() if k in ("mode", "backend", "comparison", "skipped")
        }
    elif cfg.quantize:
        result["quantize"] = {"skipped": f"{cfg.quantize} is for causal LMs; use int8"}
    return result
