"""Recipe models of the quality stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthtune.config.base import RecipePath, StrictModel


# --------------------------------------------------------------------------- quality
class PerplexityConfig(StrictModel):
    enabled: bool = True
    model: str = Field("local-tiny", description="Scoring causal LM: id, path or local-tiny.")
    max: float = Field(20.0, gt=1, description="Reject records whose perplexity is above.")
    text: Literal["response", "all"] = Field("response", description="What is scored.")
    batch_size: int = Field(16, gt=0)
    max_length: int = Field(256, gt=8, description="Tokens scored per text (truncated).")


class DedupConfig(StrictModel):
    exact: bool = Field(True, description="Reject records whose payload repeats an earlier one.")


class ReviewConfig(StrictModel):
    fraction: float = Field(0.10, ge=0, le=1, description="Share sent to human review.")
    stratify_by: list[str] = Field(
        default_factory=lambda: ["template"], description="Strata, e.g. template, slots.gender."
    )


class QualityConfig(StrictModel):
    perplexity: PerplexityConfig = Field(default_factory=PerplexityConfig)
    rules: RecipePath | None = Field(None, description="Rules YAML file (logic tier).")
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
