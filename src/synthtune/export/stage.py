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

from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.export.dataset_files import dataset_card, dataset_info, save_to_disk
from synthtune.export.formats import FORMATS
from synthtune.plugins import TASKS
from synthtune.records import Record
from synthtune.store import atomic_write_json, atomic_write_text

SPLITS = ("train", "val", "test")


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
        """The task's own export (``TaskSpec.export``) of the tuned model in train/adapter."""
        store = ctx.store
        metrics_path = store.path("train", "metrics.json")
        train = store.read_json("train", "metrics.json") if metrics_path.exists() else {}
        spec = TASKS.get(train["task"]) if train.get("task") in TASKS else None
        if not store.path("train", "adapter").is_dir() or spec is None or spec.export is None:
            return {"model": {"skipped": "no trained model with an export in train/adapter"}}
        result: dict[str, Any] = spec.export(ctx, test, train)
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
