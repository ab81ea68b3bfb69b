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
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import AfterValidator

from synthtune.errors import RecipeError

STAGES = ("generate", "quality", "mix", "train", "evaluate", "export")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        return (Path(base) / value).resolve()
    return value


RecipePath = Annotated[Path, AfterValidator(_resolve_path)]


# --------------------------------------------------------------------------- slots
class RandIntSlot(StrictModel):
    randint: tuple[int, int] = Field(description="Inclusive integer range [low, high].")

    @model_validator(mode="after")
    def _ordered(self) -> RandIntSlot:
        if self.randint[0] > self.randint[1]:
            raise ValueError(f"randint low {self.randint[0]} is above high {self.randint[1]}")
        return self


class UniformSlot(StrictModel):
    uniform: tuple[float, float] = Field(description="Float range [low, high).")
    round: int | None = Field(None, ge=0, description="Round to this many decimals.")

    @model_validator(mode="after")
    def _ordered(self) -> UniformSlot:
        if self.uniform[0] > self.uniform[1]:
            raise ValueError(f"uniform low {self.uniform[0]} is above high {self.uniform[1]}")
        return self


class ChoiceSlot(StrictModel):
    choice: list[Any] | dict[str, list[Any]] = Field(
        description="Values to pick one of; or, with `by`, a mapping from the value of "
        "another slot to the list to pick from (a dependent slot)."
    )
    weights: list[float] | None = Field(None, description="Relative weights, one per value.")
    by: str | None = Field(None, description="Slot whose value selects the list in `choice`.")

    @model_validator(mode="after")
    def _consistent(self) -> ChoiceSlot:
        if isinstance(self.choice, dict):
            if self.by is None:
                raise ValueError("a mapping in `choice` needs `by: <slot>` to select a list")
            if self.weights is not None:
                raise ValueError("`weights` applies to a list `choice`, not to a mapping")
            if any(not v for v in self.choice.values()):
                raise ValueError("every list in `choice` needs at least one value")
        else:
            if not self.choice:
                raise ValueError("`choice` needs at least one value")
            if self.by is not None:
                raise ValueError("`by` needs `choice` to be a mapping of lists")
            if self.weights is not None:
                if len(self.weights) != len(self.choice):
                    raise ValueError(f"{len(self.weights)} weights for {len(self.choice)} choices")
                if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                    raise ValueError("weights must be non-negative with a positive sum")
        return self


class SampleSlot(StrictModel):
    sample: list[Any] = Field(description="Pool to draw k distinct values from.")
    k: int | tuple[int, int] = Field(1, description="How many to draw, or an inclusive range.")
    sep: str = Field(", ", description="Separator used to join the drawn values.")

    @model_validator(mode="after")
    def _fits(self) -> SampleSlot:
        high = self.k if isinstance(self.k, int) else self.k[1]
        low = self.k if isinstance(self.k, int) else self.k[0]
        if low < 1 or low > high or high > len(self.sample):
            raise ValueError(f"k={self.k} does not fit a pool of {len(self.sample)} values")
        return self


class FakerSlot(StrictModel):
    faker: str = Field(description="Faker provider method, e.g. name, city, company.")
    locale: str = Field("en_US", description="Faker locale, e.g. en_US, zh_CN.")
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")


class TemplateSlot(StrictModel):
    template: str = Field(
        description="A Jinja2 template over earlier slots, e.g. "
        "\"{{ 'senior' if age >= 65 else 'adult' }}\" (a derived, dependent slot)."
    )


_SLOT_KINDS: dict[str, type[StrictModel]] = {
    "randint": RandIntSlot,
    "uniform": UniformSlot,
    "choice": ChoiceSlot,
    "sample": SampleSlot,
    "faker": FakerSlot,
    "template": TemplateSlot,
}


def _slot_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return next(k for k, cls in _SLOT_KINDS.items() if isinstance(value, cls))
    if isinstance(value, dict):
        found = [k for k in _SLOT_KINDS if k in value]
        return found[0] if len(found) == 1 else None
    return None


SlotSpec = Annotated[
    Annotated[RandIntSlot, Tag("randint")]
    | Annotated[UniformSlot, Tag("uniform")]
    | Annotated[ChoiceSlot, Tag("choice")]
    | Annotated[SampleSlot, Tag("sample")]
    | Annotated[FakerSlot, Tag("faker")]
    | Annotated[TemplateSlot, Tag("template")],
    Discriminator(
        _slot_kind,
        custom_error_type="slot_kind",
        custom_error_message="a slot needs exactly one sampler key: " + ", ".join(_SLOT_KINDS),
    ),
]


# --------------------------------------------------------------------------- generate
class TemplateConfig(StrictModel):
    id: str = Field(description="Stable template id, recorded in every record's lineage.")
    system: str | None = Field(None, description="Optional system message (Jinja2).")
    prompt: str = Field(description="User prompt (sandboxed Jinja2 over the slots).")
    response: str | None = Field(
        None, description="Response template, used by the `template` backend (no LLM)."
    )
    slots: dict[str, SlotSpec] = Field(default_factory=dict, description="Random slots.")
    weight: float = Field(1.0, gt=0, description="Relative share of requests.")
    json_schema: dict[str, Any] | None = Field(
        None,
        alias="schema",
        description="JSON Schema the reply must satisfy (structured output); the reply is "
        "parsed, repaired where safe, validated, and re-asked on failure.",
    )
    max_reasks: int = Field(2, ge=0, description="Re-asks with the validation error.")

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            import jsonschema

            try:
                jsonschema.validators.validator_for(value).check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"invalid JSON Schema: {exc.message}") from None
        return value


class TemplateBackendConfig(StrictModel):
    type: Literal["template"] = "template"


class TransformersBackendConfig(StrictModel):
    type: Literal["transformers"]
    model: str = Field("local-tiny", description="Hugging Face id, local path, or local-tiny.")
    max_new_tokens: int = Field(64, gt=0, description="Tokens to generate per reply.")
    temperature: float = Field(0.0, ge=0, description="0 = greedy decoding.")
    top_p: float = Field(1.0, gt=0, le=1)
    batch_size: int = Field(16, gt=0, description="Prompts per model.generate call.")
    stop: list[str] | None = Field(None, description="Stop strings (cut from the reply).")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


class VLLMBackendConfig(StrictModel):
    type: Literal["vllm"]
    model: str = Field(description="Hugging Face id or local path.")
    max_tokens: int = Field(256, gt=0)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: list[str] | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    tensor_parallel_size: int = Field(1, gt=0, description="GPUs to shard the model over.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)


class OpenAIBackendConfig(StrictModel):
    type: Literal["openai"]
    base_url: str = Field(
        "https://api.openai.com/v1", description="Any OpenAI-compatible server's /v1 URL."
    )
    model: str = Field(description="Model name the server knows.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="Name of the environment variable holding the key (never the key).",
    )
    endpoint: Literal["chat", "completions"] = Field("chat", description="API flavour.")
    max_tokens: int = Field(256, gt=0, description="Tokens to generate per reply.")
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: list[str] | None = Field(None, description="Stop strings.")
    concurrency: int = Field(16, gt=0, description="Requests in flight at most.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(5, ge=0, description="Retries on 429/5xx/timeouts/bad replies.")
    backoff_s: float = Field(1.0, gt=0, description="First backoff; doubles per retry.")
    max_backoff_s: float = Field(60.0, gt=0, description="Longest wait between retries.")
    max_rpm: int | None = Field(None, gt=0, description="Requests per minute at most.")
    max_tpm: int | None = Field(
        None, gt=0, description="Tokens per minute at most (prompt estimate + max_tokens)."
    )

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_a_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(
                "api_key_env takes the NAME of an environment variable, not the key itself"
            )
        return value


BackendConfig = Annotated[
    TemplateBackendConfig | TransformersBackendConfig | OpenAIBackendConfig | VLLMBackendConfig,
    Field(discriminator="type"),
]


class TemplateFillStrategy(StrictModel):
    type: Literal["template-fill"] = "template-fill"


class SelfInstructStrategy(StrictModel):
    """Seed tasks -> new instructions (template prompt sees ``examples``) -> answers."""

    type: Literal["self-instruct"]
    seed_tasks: list[str] | RecipePath = Field(
        description="Seed instructions: a list, or a .txt (one per line) / .jsonl "
        "({instruction: ...}) file."
    )
    examples_per_prompt: int = Field(3, gt=0, description="Tasks shown per prompt.")
    novelty_rouge_max: float = Field(
        0.7, gt=0, le=1, description="Reject a new task whose ROUGE-L to any known is above."
    )


class EvolInstructStrategy(StrictModel):
    """The template's reply is an instruction; it is evolved ``rounds`` times, then answered."""

    type: Literal["evol-instruct"]
    rounds: int = Field(1, gt=0, le=5, description="Evolution rounds per instruction.")
    operations: list[Literal["constraints", "deepen", "concretize", "reasoning", "breadth"]] = (
        Field(
            default=["constraints", "deepen", "concretize", "reasoning", "breadth"],
            description="In-depth (constraints, deepen, concretize, reasoning) and in-breadth.",
        )
    )
    similarity_max: float = Field(
        0.9, gt=0, le=1, description="An evolution this close to its parent (ROUGE-L) failed."
    )


class DocQAStrategy(StrictModel):
    """Chunk local documents and ask for question/answer pairs grounded in each chunk."""

    type: Literal["doc-qa"]
    documents: list[RecipePath] = Field(
        min_length=1, description="Files or folders (.txt, .md, .pdf, .docx)."
    )
    chunk_chars: int = Field(1200, gt=100, description="Characters per chunk.")
    overlap_chars: int = Field(150, ge=0, description="Characters shared by neighbours.")
    questions_per_chunk: int = Field(2, gt=0, le=20)

    @model_validator(mode="after")
    def _overlap(self) -> DocQAStrategy:
        if self.overlap_chars >= self.chunk_chars:
            raise ValueError("overlap_chars must be smaller than chunk_chars")
        return self


StrategyConfig = Annotated[
    TemplateFillStrategy | SelfInstructStrategy | EvolInstructStrategy | DocQAStrategy,
    Field(discriminator="type"),
]


class Price(StrictModel):
    input_per_1m: float = Field(ge=0, description="USD per million prompt tokens.")
    output_per_1m: float = Field(ge=0, description="USD per million completion tokens.")


class GenerateConfig(StrictModel):
    n: int = Field(200, gt=0, description="Items to request (doc-qa: chunks at most).")
    backend: BackendConfig = Field(default_factory=TemplateBackendConfig)
    strategy: StrategyConfig = Field(default_factory=TemplateFillStrategy)
    templates: list[TemplateConfig] = Field(min_length=1, description="Prompt templates.")
    flush_every: int = Field(64, gt=0, description="Items per shard (resume granularity).")
    prices: dict[str, Price] = Field(
        default_factory=dict, description="Per-model prices, keyed by backend model name."
    )
    budget_usd: float | None = Field(None, gt=0, description="Stop (resumably) past this.")
    max_total_tokens: int | None = Field(
        None, gt=0, description="Stop (resumably) past this many tokens in + out."
    )

    @field_validator("templates")
    @classmethod
    def _unique_ids(cls, templates: list[TemplateConfig]) -> list[TemplateConfig]:
        ids = [t.id for t in templates]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate template ids: {', '.join(dup)}")
        return templates

    @model_validator(mode="after")
    def _responses(self) -> GenerateConfig:
        if self.backend.type == "template" and self.strategy.type == "template-fill":
            missing = [t.id for t in self.templates if t.response is None]
            if missing:
                raise ValueError(
                    f"the template backend needs a `response` on templates: {', '.join(missing)}"
                )
        return self


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


# --------------------------------------------------------------------------- mix
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")


class RealDataConfig(StrictModel):
    path: RecipePath = Field(description="JSONL file of human-written records.")
    text_field: str | None = Field("text", description="Field holding plain text.")
    prompt_field: str | None = Field(None, description="Field holding a prompt (QA data).")
    response_field: str | None = Field(None, description="Field holding the answer.")

    @model_validator(mode="after")
    def _mapping(self) -> RealDataConfig:
        if (self.prompt_field is None) != (self.response_field is None):
            raise ValueError("set both prompt_field and response_field, or neither")
        return self


class StopWhenConfig(StrictModel):
    wasserstein_below: float = Field(0.15, gt=0, description="Stop injecting below this.")


class MixConfig(StrictModel):
    real: RealDataConfig | None = Field(None, description="Real data to mix with.")
    ratio: str = Field("1:3", description="synthetic:real in the training split.")
    val_fraction: float = Field(0.1, ge=0, lt=0.5, description="Share of real data for val.")
    test_fraction: float = Field(0.2, gt=0, lt=0.5, description="Real-only test share.")
    stop_when: StopWhenConfig = Field(default_factory=StopWhenConfig)

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, value: str) -> str:
        m = _RATIO.match(value)
        if not m or float(m.group(1)) <= 0 or float(m.group(2)) <= 0:
            raise ValueError(f"ratio {value!r} must look like '1:3' (synthetic:real)")
        return value

    def synthetic_per_real(self) -> float:
        m = _RATIO.match(self.ratio)
        assert m is not None  # checked by the validator
        return float(m.group(1)) / float(m.group(2))


# --------------------------------------------------------------------------- train
class LoraConfig(StrictModel):
    r: int = Field(16, gt=0, description="Adapter rank.")
    alpha: int = Field(32, gt=0, description="Scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: str | list[str] = Field(
        "attention", description="Alias (attention, mlp, all-linear) or module names."
    )


class LearningRates(StrictModel):
    adapter: float = Field(1.0e-3, gt=0, description="LR of adapter/new parameters.")
    base: float = Field(1.0e-5, gt=0, description="LR of base weights that train.")


class FreezeConfig(StrictModel):
    layernorm: bool = Field(True, description="Keep LayerNorm/RMSNorm weights frozen.")
    first_n_layers: int = Field(0, ge=0, description="Freeze the first N transformer blocks.")


class AugmentConfig(StrictModel):
    noise_prob: float = Field(0.3, ge=0, le=1, description="Per-example noise probability.")
    token_rate: float = Field(0.1, ge=0, le=1, description="Share of input tokens perturbed.")


class EarlyStoppingConfig(StrictModel):
    patience: int = Field(3, ge=1, description="Evaluations without improvement before stop.")


class TrainConfig(StrictModel):
    base: str = Field("local-tiny", description="Base model: id, path or local-tiny.")
    method: str = Field("lora", description="Training method (registry name).")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    lr: LearningRates = Field(default_factory=LearningRates)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    max_grad_norm: float = Field(1.0, gt=0)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    epochs: float = Field(3.0, gt=0)
    batch_size: int = Field(8, gt=0)
    max_length: int = Field(256, gt=8, description="Tokens per training example.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    eval_every: int | None = Field(None, gt=0, description="Steps between evals (None=epoch).")


# --------------------------------------------------------------------------- evaluate/export
class EvaluateConfig(StrictModel):
    suites: list[Literal["perplexity"]] = Field(
        default=["perplexity"], description="Evaluation suites to run."
    )
    max_samples: int = Field(500, gt=0, description="Test records scored at most.")


class ExportConfig(StrictModel):
    formats: list[Literal["openai", "alpaca", "sharegpt"]] = Field(
        default=["openai"], description="Dataset export formats."
    )


class LocalTinyConfig(StrictModel):
    vocab_size: int = Field(2048, ge=300, description="BPE vocabulary size.")
    hidden_size: int = Field(128, gt=0)
    layers: int = Field(2, gt=0)
    heads: int = Field(4, gt=0)
    pretrain_epochs: float = Field(3.0, ge=0, description="Pre-training epochs.")
    pretrain_on: list[Literal["general", "real"]] = Field(
        default=["general"],
        description="Pre-training corpus: general = English prose shipped with Python "
        "(pydoc topics), a stand-in for a generic base model; real = the real non-test "
        "records (the base then already knows the domain, so tuning gains little).",
    )
    max_length: int = Field(128, gt=8)

    @model_validator(mode="after")
    def _heads(self) -> LocalTinyConfig:
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} not divisible by heads")
        return self


class Recipe(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Run name.")
    seed: int = Field(0, description="Seed for sampling, splits and training.")
    generate: GenerateConfig
    quality: QualityConfig = Field(default_factory=QualityConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    local_tiny: LocalTinyConfig = Field(default_factory=LocalTinyConfig)
    source: Path | None = Field(None, exclude=True, description="Recipe file (set by loader).")


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
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p in _SLOT_KINDS))
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
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(str(path), ["file not found"]) from None
    except yaml.YAMLError as exc:
        raise RecipeError(str(path), [f"not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise RecipeError(str(path), ["the top level must be a mapping of sections"])
    try:
        recipe = Recipe.model_validate(raw, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise RecipeError(str(path), format_validation_error(exc, Recipe)) from None
    recipe.source = path.resolve()
    return recipe
