"""Mix stage: synthetic:real at the configured ratio; val and test are real only.

Real records are split by a hash of their id (``records.split_of``), so the split is
stable across runs and agrees with the local model's pre-training corpus, which must not
see the test split. Synthetic records go to train only: validation (early stopping) and test
then measure what matters, the fit to human-written data.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.decisions import apply_decisions
from synthtune.errors import StageError
from synthtune.realdata import load_real
from synthtune.records import Record, split_of
from synthtune.store import review_decisions


def split_real(records: list[Record], recipe: Recipe) -> dict[str, list[Record]]:
    mix = recipe.mix
    out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for record in records:
        split = split_of(record.id, recipe.seed, mix.val_fraction, mix.test_fraction)
        record.lineage["split"] = split
        out[split].append(record)
    return out


class MixStage:
    name = "mix"
    sections: tuple[str, ...] = ("mix",)

    def check(self, recipe: Recipe) -> None:
        if recipe.mix.real is not None and not recipe.mix.real.path.exists():
            raise StageError(f"mix.real.path: file not found: {recipe.mix.real.path}")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        recipe = ctx.recipe
        reviewed = apply_decisions(
            ctx.store.read_table("quality", "dataset"), review_decisions(ctx.store.root)
        )
        synthetic = [r for r in reviewed if r.status == "accepted"]
        random.Random(recipe.seed).shuffle(synthetic)
        if recipe.mix.real is None:
            ctx.log("[yellow]mix: no real data configured; val/test are synthetic[/]")
            splits = split_real(synthetic, recipe)
            used = len(splits["train"])
        else:
            splits = split_real(load_real(recipe.mix.real), recipe)
            want = round(len(splits["train"]) * recipe.mix.synthetic_per_real())
            chosen = synthetic[:want]
            if len(chosen) < want:
                ctx.log(
                    f"[yellow]mix: {len(chosen)} accepted synthetic records, ratio "
                    f"{recipe.mix.ratio} asks for {want}[/]"
                )
            splits["train"] = splits["train"] + chosen
            used = len(chosen)
        if not splits["train"] or not splits["test"]:
            raise StageError("mix: train or test split is empty; add data or change fractions")
        for name, records in splits.items():
            ctx.store.write_table(self.name, name, records)
        return {
            "records_in": len(synthetic),
            "records_out": sum(len(v) for v in splits.values()),
            "synthetic_used": used,
            "splits": {
                name: dict(Counter(r.source for r in records)) for name, records in splits.items()
            },
        }
