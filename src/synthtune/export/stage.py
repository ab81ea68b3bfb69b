"""Export stage: the mix as datasets other trainers read, and the tuned model as one folder.

Datasets: each split in every configured format (JSONL), plus ``export.dataset_files``
(LLaMA-Factory ``dataset_info.json``, a ``datasets`` folder, a dataset card README.md).
Model (causal LM and classifier runs): the adapter merged into the base and verified
(``export/model``), then ``export.quantize`` measured against fp32 (``export/quantize.json``).
Export runs before evaluate, so evaluation compares base / tuned / quantized in one run.
"""

from __future__ import annotations

import json
from typing import Any

from synthtune.classify import labelled
from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.export.classifier import merge_classifier, quantize_classifier_int8
from synthtune.export.dataset_files import dataset_card, dataset_info, save_to_disk
from synthtune.export.formats import FORMATS
from synthtune.export.merge import merge_adapter, save_full_model
from synthtune.export.quantize import quantize_model
from synthtune.records import Record
from synthtune.store import atomic_write_json, atomic_write_text

SPLITS = ("train", "val", "test")


def chat_prompts(tokenizer: Any, records: list[Record], n: int) -> list[str]:
    """The prompt side of ``n`` records, rendered with the model's chat template."""
    from synthtune.llm.backends.transformers import render_chat

    prompts = []
    for record in records[:n]:
        turns = [m.model_dump() for m in record.payload.messages if m.role != "assistant"]
        prompts.append(render_chat(tokenizer, turns or [{"role": "user", "content": "Hello"}]))
    return prompts or [render_chat(tokenizer, [{"role": "user", "content": "Hello"}])]


class ExportStage:
    name = "export"
    sections: tuple[str, ...] = ("export",)

    def check(self, recipe: Recipe) -> None:
        for name in recipe.export.formats:
            FORMATS.get(name)

    def _datasets(self, ctx: StageContext, splits: dict[str, list[Record]]) -> dict[str, Any]:
        cfg, store = ctx.recipe.export, ctx.store
        written = {}
        for split, records in splits.items():
            for name in cfg.formats:
                rows = [row for r in records if (row := FORMATS.get(name)(r)) is not None]
                text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
                atomic_write_text(store.path(self.name, f"{name}/{split}.jsonl"), text)
                written[f"{name}/{split}"] = len(rows)
        if "dataset_info" in cfg.dataset_files:
            info = dataset_info(ctx.recipe.name, written)
            atomic_write_json(store.path(self.name, "dataset_info.json"), info)
        if "save_to_disk" in cfg.dataset_files:
            save_to_disk(splits, store.stage_dir(self.name) / "hf_dataset")
        if "card" in cfg.dataset_files:
            card = dataset_card(ctx.recipe, store.state()["stages"], splits)
            atomic_write_text(store.path(self.name, "README.md"), card)
        return written

    def _model(self, ctx: StageContext, test: list[Record]) -> dict[str, Any]:
        cfg, store = ctx.recipe.export, ctx.store
        adapter = store.path("train", "adapter")
        metrics_path = store.path("train", "metrics.json")
        train = store.read_json("train", "metrics.json") if metrics_path.exists() else {}
        if adapter.is_dir() and train.get("task") == "clip":
            from synthtune.vision.clip_export import export_clip

            return export_clip(ctx, test)
        if not adapter.is_dir() or train.get("task") not in ("causal_lm", "classification"):
            return {"model": {"skipped": "no trained causal LM or classifier in train/adapter"}}
        if train["task"] == "classification":
            return self._classifier(ctx, test, train["labels"])
        out = store.stage_dir(self.name) / "model"
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
            result["quantize"] = self._quantize(ctx, test)
        return result

    def _quantize(self, ctx: StageContext, test: list[Record]) -> dict[str, Any]:
        from synthtune.models import load_tokenizer

        cfg, store = ctx.recipe.export, ctx.store
        model_dir = store.stage_dir(self.name) / "model"
        prompts = chat_prompts(load_tokenizer(str(model_dir)), test, cfg.latency_prompts)
        texts = [r.payload.text("response") for r in test[: cfg.quality_samples]]
        assert cfg.quantize is not None
        report = quantize_model(
            cfg.quantize,
            model_dir,
            store.stage_dir(self.name) / f"model-{cfg.quantize}",
            texts,
            prompts,
            cfg.latency_new_tokens,
        )
        report["latency_prompts"] = len(prompts)
        report["new_tokens"] = cfg.latency_new_tokens
        report["perplexity_texts"] = len(texts)
        store.write_json(self.name, "quantize.json", report)
        if "skipped" in report:
            ctx.log(f"[yellow]{report['skipped']}[/]")
        else:
            c = report["comparison"]
            ctx.log(
                f"export: {report['backend']} {c['generation_speedup']}x generation, "
                f"perplexity {c['perplexity_change_pct']:+.2f} %"
            )
        return {
            k: v for k, v in report.items() if k in ("mode", "backend", "comparison", "skipped")
        }

    def _classifier(
        self, ctx: StageContext, test: list[Record], labels: list[str]
    ) -> dict[str, Any]:
        """Merged classifier in export/model and, with ``export.quantize: int8``, the int8
        model measured against it (``export/quantize.json``, ``task: classification``)."""
        cfg, store = ctx.recipe.export, ctx.store
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
        out = store.stage_dir(self.name) / "model"
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
                store.stage_dir(self.name) / "model-int8",
                texts[:n],
                truth[:n],
                cfg.latency_prompts,
            )
            store.write_json(self.name, "quantize.json", report)
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

    def run(self, ctx: StageContext) -> dict[str, Any]:
        splits = {split: ctx.store.read_table("mix", split) for split in SPLITS}
        written = self._datasets(ctx, splits)
        total = sum(len(records) for records in splits.values())
        return {
            "records_in": total,
            "records_out": total,
            "files": written,
            **self._model(ctx, splits["test"]),
        }
