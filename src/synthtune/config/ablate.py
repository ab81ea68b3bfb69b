"""Recipe model of ``synthtune ablate``: declared variants of one recipe, each a patch, run
over several training seeds and compared with a reference (docs/ablations.md)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from synthtune.config.base import StrictModel

# Built-in variants usable by name alone. ``synthetic-only`` names mix.use_real_train, a
# MixConfig switch; ``unfiltered`` turns off every quality tier that drops records (the
# decontamination tier stays on: removing it would let test text leak into training and
# inflate the very score being compared). The rules stay loaded with ``rule_filter: false``:
# they also plan edge cases, so removing them would change (and re-run) generation.
BUILT_IN_VARIANTS: dict[str, dict[str, Any]] = {
    "real-only": {"generate": None},
    "real+synthetic": {},
    "synthetic-only": {"mix": {"use_real_train": False}},
    "unfiltered": {
        "quality": {
            "heuristics": {"enabled": False},
            "dedup": {"exact": False, "minhash_threshold": None, "embedding": None},
            "perplexity": {"enabled": False},
            "rule_filter": False,
            "judge": None,
            "review": {"fraction": 0.0, "min_per_stratum": 0},
        }
    },
}

VARIANT_NAME = r"^[A-Za-z0-9][A-Za-z0-9.+_-]*$"


class AblateConfig(StrictModel):
    """Variants x seeds; every (variant, seed) is a run of its own under
    ``<runs>/<name>/ablate/<variant>--s<seed>/``, sharing the stages it has in common."""

    seeds: int | list[int] = Field(
        3,
        description="Training seeds: N means 0..N-1, or a list. Only train.seed varies; splits "
        "and generation keep the recipe's seed, so every run is scored on the same test rows.",
    )
    variants: dict[str, dict[str, Any] | None] = Field(
        default_factory=lambda: dict.fromkeys(["real-only", "real+synthetic"]),
        description="name -> patch deep-merged into the recipe (mappings merge key by key; "
        "null sets a field to null, or back to its default where null is not allowed: "
        "{generate: null} is real-only). Built-in names need no patch: real-only, "
        "real+synthetic, synthetic-only, unfiltered. A list of built-in names also works.",
    )
    reference: str | None = Field(
        None, description="Variant every other one is compared with (default: the first)."
    )
    metrics: list[str] | None = Field(
        None,
        description="Metrics compared: macro_f1, accuracy (classification), perplexity "
        "(causal LM, lower is better). Default: by task.",
    )

    @field_validator("variants", mode="before")
    @classmethod
    def _names_only(cls, value: object) -> object:
        if isinstance(value, list):
            names = [v for v in value if isinstance(v, str)]
            if len(names) != len(value):
                raise ValueError("a list of variants holds built-in variant names (strings)")
            return dict.fromkeys(names)
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, int) and value < 1:
            raise ValueError("at least one seed")
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("a non-empty list of distinct seeds")
        return value

    @model_validator(mode="after")
    def _known(self) -> AblateConfig:
        import re

        if not self.variants:
            raise ValueError("variants: declare at least one variant")
        for name, patch in self.variants.items():
            if not re.match(VARIANT_NAME, name):
                raise ValueError(f"variants.{name}: letters, digits and . + _ - only")
            if patch is None and name not in BUILT_IN_VARIANTS:
                raise ValueError(
                    f"variants.{name}: no patch and not a built-in variant "
                    f"({', '.join(BUILT_IN_VARIANTS)})"
                )
        if self.reference is not None and self.reference not in self.variants:
            raise ValueError(f"reference {self.reference!r} is not one of the variants")
        return self

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def patches(self) -> dict[str, dict[str, Any]]:
        """Each variant's patch, built-in names resolved."""
        return {
            name: BUILT_IN_VARIANTS[name] if patch is None else patch
            for name, patch in self.variants.items()
        }

    def reference_name(self) -> str:
        return self.reference or next(iter(self.variants))
