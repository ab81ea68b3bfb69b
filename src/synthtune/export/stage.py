"""Export stage: write each split of the mix in every configured format (JSONL)."""

from __future__ import annotations

import json
from typing import Any

from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.export.formats import FORMATS
from synthtune.store import atomic_write_text


class ExportStage:
    name = "export"
    sections: tuple[str, ...] = ("export",)

    def check(self, recipe: Recipe) -> None:
        for name in recipe.export.formats:
            FORMATS.get(name)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        written = {}
        for split in ("train", "val", "test"):
            records = ctx.store.read_table("mix", split)
            for name in ctx.recipe.export.formats:
                rows = [row for r in records if (row := FORMATS.get(name)(r)) is not None]
                path = ctx.store.path(self.name, f"{name}/{split}.jsonl")
                text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
                atomic_write_text(path, text)
                written[f"{name}/{split}"] = len(rows)
        total = sum(len(ctx.store.read_table("mix", s)) for s in ("train", "val", "test"))
        return {"records_in": total, "records_out": total, "files": written}
