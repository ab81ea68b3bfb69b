"""Recipe model of ``synthtune evolve``: rounds, arms and the bandit that splits requests."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from synthtune.config.base import RegisteredName, StrictModel
from synthtune.config.generate import StrategyConfig


class EvolveConfig(StrictModel):
    """generate -> filter -> measure -> regenerate, ``rounds`` times (docs/mixing.md)."""

    rounds: int = Field(5, ge=1, description="Rounds (the CLI's --rounds overrides).")
    per_round: int = Field(100, gt=0, description="Generation requests per round.")
    policy: Annotated[str, RegisteredName("policy")] = Field(
        "thompson", description="How requests are split over arms (uniform: no learning)."
    )
    templates: list[str] | None = Field(
        None, description="Template ids that are arms (default: every template)."
    )
    strategies: list[StrategyConfig] | None = Field(
        None, description="Strategies that are arms (default: generate.strategy)."
    )
    temperatures: list[float] | None = Field(
        None, description="Temperature buckets that are arms (default: the backend's own)."
    )
    distance_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Reward of an accepted record: (1 - w) + w if it lands in a real-data "
        "cluster the synthetic pool under-covers, else (1 - w); rejected: 0.",
    )
    review_feedback: bool = Field(
        True,
        description="Reviews between rounds steer the next: a rejected pool record leaves "
        "the pool and takes its arm's reward back, and edited records are shown to "
        "template-fill arms as few-shot examples.",
        json_schema_extra={"fingerprint": "when_set"},
    )
    stop_at_threshold: bool = Field(
        True, description="Stop early once the pool is within mix.stop_when of the real data."
    )

    @model_validator(mode="after")
    def _distinct(self) -> EvolveConfig:
        if self.strategies:
            types = [s.type for s in self.strategies]
            if len(set(types)) != len(types):
                raise ValueError("evolve.strategies: one entry per strategy type")
        if self.temperatures and any(t < 0 for t in self.temperatures):
            raise ValueError("evolve.temperatures must be >= 0")
        return self
