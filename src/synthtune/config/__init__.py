"""The recipe: pydantic models for every stage, validated up front.

Every model forbids unknown keys and every field carries a description, so a typo such as
``trian:`` or ``train.lora.r: "sixteen"`` is reported with its field path before any work
starts. Defaults follow the mission: perplexity max 20, review 10 %, synthetic:real 1:3,
Wasserstein 0.15, LoRA r=16/alpha=32/dropout 0.1, adapter LR 1e-3, base LR 1e-5, norms frozen,
max_grad_norm 1.0, early-stopping patience 3, 30 % noise augmentation.

Relative paths resolve against the recipe's folder (``load_recipe`` passes it as validation
context), so a recipe runs the same from any working directory.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from synthtune.config.ablate import AblateConfig
from synthtune.config.base import RecipePath, StrictModel
from synthtune.config.evolve import EvolveConfig
from synthtune.config.federated import FederatedConfig
from synthtune.config.generate import (
    BackendConfig,
    ChoiceSlot,
    DiffusersBackendConfig,
    DocQAStrategy,
    EdgeCasesConfig,
    EvolInstructStrategy,
    FakerSlot,
    FewShotConfig,
    GenerateConfig,
    ImageStrategy,
    OpenAIBackendConfig,
    Price,
    ProceduralBackendConfig,
    RandIntSlot,
    SampleSlot,
    SelfInstructStrategy,
    SlotSpec,
    StrategyConfig,
    TemplateBackendConfig,
    TemplateConfig,
    TemplateFillStrategy,
    TemplateSlot,
    TransformersBackendConfig,
    UniformSlot,
    VLLMBackendConfig,
)
from synthtune.config.quality import (
    DecontamConfig,
    DedupConfig,
    EmbeddingDedupConfig,
    HeuristicsConfig,
    JudgeConfig,
    NGramPrefilterConfig,
    PerplexityConfig,
    QualityConfig,
    ReviewConfig,
)
from synthtune.config.training import (
    AdversarialConfig,
    AugmentConfig,
    ClipConfig,
    EarlyStoppingConfig,
    EvaluateConfig,
    ExportConfig,
    FreezeConfig,
    LabelTargetsConfig,
    LearningRates,
    LocalTinyConfig,
    LoraConfig,
    MixConfig,
    PromptLearningConfig,
    RealDataConfig,
    StopWhenConfig,
    TrainConfig,
    VisionExportConfig,
)
from synthtune.config.yamlio import read_yaml
from synthtune.errors import RecipeError

__all__ = [
    "AblateConfig",
    "AdversarialConfig",
    "AugmentConfig",
    "BackendConfig",
    "ChoiceSlot",
    "ClipConfig",
    "DecontamConfig",
    "DedupConfig",
    "DiffusersBackendConfig",
    "DocQAStrategy",
    "EarlyStoppingConfig",
    "EdgeCasesConfig",
    "EmbeddingDedupConfig",
    "EvaluateConfig",
    "EvolInstructStrategy",
    "EvolveConfig",
    "ExportConfig",
    "FakerSlot",
    "FederatedConfig",
    "FewShotConfig",
    "FreezeConfig",
    "GenerateConfig",
    "HeuristicsConfig",
    "ImageStrategy",
    "JudgeConfig",
    "LabelTargetsConfig",
    "LearningRates",
    "LocalTinyConfig",
    "LoraConfig",
    "MixConfig",
    "NGramPrefilterConfig",
    "OpenAIBackendConfig",
    "PerplexityConfig",
    "Price",
    "ProceduralBackendConfig",
    "PromptLearningConfig",
    "QualityConfig",
    "RandIntSlot",
    "RealDataConfig",
    "Recipe",
    "RecipePath",
    "ReviewConfig",
    "SampleSlot",
    "SelfInstructStrategy",
    "SlotSpec",
    "StopWhenConfig",
    "StrategyConfig",
    "StrictModel",
    "TemplateBackendConfig",
    "TemplateConfig",
    "TemplateFillStrategy",
    "TemplateSlot",
    "TrainConfig",
    "TransformersBackendConfig",
    "UniformSlot",
    "VLLMBackendConfig",
    "VisionExportConfig",
    "format_validation_error",
    "load_recipe",
]


class Recipe(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Run name.")
    seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="Seed for sampling, splits and training (0 to 2**32 - 1, what numpy and "
        "torch accept).",
    )
    generate: GenerateConfig | None = Field(
        None,
        description="Synthetic data. Optional: a recipe with real data only (mix.real) "
        "trains and evaluates on it; adding this section adds synthetic records.",
    )
    quality: QualityConfig = Field(default_factory=QualityConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    evolve: EvolveConfig = Field(default_factory=EvolveConfig)
    federated: FederatedConfig = Field(default_factory=FederatedConfig)
    local_tiny: LocalTinyConfig = Field(default_factory=LocalTinyConfig)
    ablate: AblateConfig | None = Field(
        None,
        description="synthtune ablate: variants of this recipe x training seeds, compared "
        "with confidence intervals (docs/ablations.md). Ignored by every other command.",
    )
    source: Path | None = Field(None, exclude=True, description="Recipe file (set by loader).")

    @property
    def generation(self) -> GenerateConfig:
        """The generate section, for code that runs only when the recipe has one."""
        if self.generate is None:
            raise RecipeError(
                str(self.source or "the recipe"),
                ["generate: this needs a generate section (none in the recipe)"],
            )
        return self.generate

    @model_validator(mode="after")
    def _some_data(self) -> Recipe:
        if self.generate is None and self.mix.real is None:
            raise ValueError(
                "no data: add a generate section (synthetic records), mix.real (your own "
                "data), or both"
            )
        return self


# --------------------------------------------------------------------------- loading
def _suggest(loc: tuple[Any, ...], model: type[BaseModel]) -> str:
    """'did you mean' for an unknown key, walking the model tree along the error location."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return ""
        ann = fields[part].annotation
        current = next(
            (a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)),
            ann,
        )
    fields = getattr(current, "model_fields", {})
    close = difflib.get_close_matches(str(loc[-1]), list(fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def format_validation_error(err: ValidationError, model: type[BaseModel]) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            problems.append(f"{path}: unknown key{_suggest(loc, model)}")
        elif e["type"] == "missing":
            problems.append(f"{path}: required field is missing")
        else:
            got = e.get("input")
            shown = f" (got {got!r})" if not isinstance(got, dict | list) else ""
            problems.append(f"{path}: {e['msg']}{shown}")
    return problems


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; raise :class:`RecipeError` naming every problem."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise RecipeError(str(path), ["the top level must be a mapping of sections"])
    try:
        recipe = Recipe.model_validate(raw, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise RecipeError(str(path), format_validation_error(exc, Recipe)) from None
    recipe.source = path.resolve()
    return recipe
