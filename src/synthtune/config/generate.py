"""Recipe models of the generate stage: slots, templates, backends, strategies, budgets."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from synthtune.config.base import KeyedSection, PluginSection, RecipePath, StrictModel


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


SLOT_MODELS: dict[str, type[StrictModel]] = {
    "randint": RandIntSlot,
    "uniform": UniformSlot,
    "choice": ChoiceSlot,
    "sample": SampleSlot,
    "faker": FakerSlot,
    "template": TemplateSlot,
}


# a slot: the one key naming a registered sampler picks its model (built-ins above, plugins
# through plugins.register_sampler(name, fn, config=Model))
SlotSpec = Annotated[StrictModel, KeyedSection("sampler", "a slot")]


# --------------------------------------------------------------------------- generate
class TemplateConfig(StrictModel):
    id: str = Field(description="Stable template id, recorded in every record's lineage.")
    system: str | None = Field(None, description="Optional system message (Jinja2).")
    prompt: str = Field(description="User prompt (sandboxed Jinja2 over the slots).")
    response: str | None = Field(
        None, description="Response template, used by the `template` backend (no LLM)."
    )
    label: str | None = Field(
        None, description="Class label (Jinja2 over the slots), for classification tasks."
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

    model_config = ConfigDict(
        extra="forbid", validate_default=True, populate_by_name=True, allow_inf_nan=False
    )

    @field_validator("json_schema", mode="before")
    @classmethod
    def _from_model(cls, value: Any) -> Any:
        """From Python, a pydantic model class may stand for its JSON Schema."""
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value.model_json_schema()
        return value

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


class SectionConfig(StrictModel):
    """Base of a section picked by its ``type`` from a registry (backends, strategies): a
    plugin's config model subclasses it with ``type: Literal["<its name>"]``."""

    type: str


class TemplateBackendConfig(SectionConfig):
    type: Literal["template"] = "template"


class TransformersBackendConfig(SectionConfig):
    type: Literal["transformers"]
    model: str = Field("local-tiny", description="Hugging Face id, local path, or local-tiny.")
    max_new_tokens: int = Field(64, gt=0, description="Tokens to generate per reply.")
    temperature: float = Field(0.0, ge=0, description="0 = greedy decoding.")
    top_p: float = Field(1.0, gt=0, le=1)
    batch_size: int = Field(16, gt=0, description="Prompts per model.generate call.")
    stop: list[str] | None = Field(None, description="Stop strings (cut from the reply).")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    kv_cache: Literal["static", "dynamic"] = Field(
        "static",
        description="static: the KV cache of a batch is allocated once (prompt + "
        "max_new_tokens), no per-step concatenation (measured +4-7 % records/s on CPU at 64 "
        "new tokens, same outputs; no torch.compile on GPU); dynamic: transformers' growable "
        "cache. If a model's static cache fails, the backend retries the batch with dynamic "
        "and keeps it.",
    )


class VLLMBackendConfig(SectionConfig):
    type: Literal["vllm"]
    model: str = Field(description="Hugging Face id or local path.")
    max_tokens: int = Field(256, gt=0)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: list[str] | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    tensor_parallel_size: int = Field(1, gt=0, description="GPUs to shard the model over.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)


class OpenAIBackendConfig(SectionConfig):
    type: Literal["openai"]
    base_url: str = Field(
        "https://api.openai.com/v1", description="Any OpenAI-compatible server's /v1 URL."
    )
    more_base_urls: list[str] = Field(
        default_factory=list,
        description="More servers of the same model (e.g. one vLLM per GPU node): each "
        "request goes to the server with the fewest requests in flight, skipping for a few "
        "seconds a server that just failed to connect, timed out or answered 5xx. "
        "concurrency stays the total over all servers.",
        # where the same model answers is an execution knob: never re-runs a stage
        json_schema_extra={"fingerprint": "never"},
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
    concurrency: int = Field(
        64,
        gt=0,
        description="Requests in flight at most. The limit adapts below it: it starts at "
        "min(16, this), doubles per window of successes until the server first signals "
        "overload (429, 5xx, a connection error or a timeout), halves once per round trip "
        "on such signals, and grows by one per window otherwise (AIMD).",
        # an execution knob, not an input: the fingerprint always sees the old default, so
        # tuning it (or the default moving from 16 to 64) never re-runs a stage
        json_schema_extra={"fingerprint": {"as": 16}},
    )
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(5, ge=0, description="Retries on 429/5xx/timeouts/bad replies.")
    backoff_s: float = Field(1.0, gt=0, description="First backoff; doubles per retry.")
    max_backoff_s: float = Field(60.0, gt=0, description="Longest wait between retries.")
    max_rpm: int | None = Field(None, gt=0, description="Requests per minute at most.")
    max_tpm: int | None = Field(
        None, gt=0, description="Tokens per minute at most (prompt estimate + max_tokens)."
    )
    # Overload handling and timeouts: execution knobs added after runs existed. At their
    # defaults they are absent from the fingerprint ("when_set"), and the response cache key
    # ignores them (llm/cache.py OPERATIONAL): tuning them never pays twice for a reply.
    connect_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Seconds to open a connection (default: timeout_s).",
        json_schema_extra={"fingerprint": "when_set"},
    )
    read_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Seconds to wait for the next bytes of a reply (default: timeout_s).",
        json_schema_extra={"fingerprint": "when_set"},
    )
    pool_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Seconds to wait for a free pooled connection (default: timeout_s).",
        json_schema_extra={"fingerprint": "when_set"},
    )
    latency_tolerance: float | None = Field(
        2.0,
        gt=1,
        description="Shrink the concurrency limit when a window's median latency exceeds "
        "this many times the no-load latency (the lowest window median); null: latency is "
        "no overload signal.",
        json_schema_extra={"fingerprint": "when_set"},
    )
    server_metrics: Literal["auto", "off"] = Field(
        "auto",
        description="auto: read the server's Prometheus /metrics (vLLM's waiting queue) about "
        "once a second, off silently when the server has none; off: never.",
        json_schema_extra={"fingerprint": "when_set"},
    )
    breaker_failures: int = Field(
        16,
        ge=0,
        description="Overload failures in a row, across requests, that pause every request "
        "(circuit breaker); 0: never pause.",
        json_schema_extra={"fingerprint": "when_set"},
    )
    breaker_cooldown_s: float = Field(
        1.0,
        gt=0,
        description="First pause of the breaker; doubles while the server keeps refusing.",
        json_schema_extra={"fingerprint": "when_set"},
    )
    breaker_max_cooldown_s: float = Field(
        60.0,
        gt=0,
        description="Longest single pause of the breaker.",
        json_schema_extra={"fingerprint": "when_set"},
    )
    max_pause_s: float = Field(
        600.0,
        gt=0,
        description="Paused this long in one outage, requests fail with 'server unavailable'.",
        json_schema_extra={"fingerprint": "when_set"},
    )
    # Batch API mode. Execution knobs (the same model answers the same requests, so they
    # leave the fingerprint and the response cache key alone: switching modes never re-runs
    # a stage or pays twice for a reply).
    mode: Literal["sync", "batch"] = Field(
        "sync",
        description="sync: one HTTP request per reply; batch: OpenAI's Batch API (the "
        "requests go up as a JSONL file, answered within batch_completion_window at about "
        "half the price; resumable by batch id after a crash).",
        json_schema_extra={"fingerprint": "never"},
    )
    batch_poll_s: float = Field(
        30.0,
        ge=0,
        description="Batch mode: seconds between two status checks of a running batch.",
        json_schema_extra={"fingerprint": "never"},
    )
    batch_completion_window: str = Field(
        "24h",
        min_length=1,
        description="Batch mode: the completion window asked for (OpenAI accepts 24h).",
        json_schema_extra={"fingerprint": "never"},
    )
    batch_max_requests: int = Field(
        50_000,
        gt=0,
        description="Batch mode: requests per batch at most (OpenAI's limit per input file: "
        "50,000); more are split into several batches.",
        json_schema_extra={"fingerprint": "never"},
    )
    batch_max_wait_s: float | None = Field(
        None,
        ge=0,
        description="Batch mode: stop waiting after this many seconds (null: until the "
        "batches end). The batches keep running at the provider; the same command later "
        "picks them up by id (0: submit and exit).",
        json_schema_extra={"fingerprint": "never"},
    )

    @property
    def items_per_call(self) -> int | None:
        """Batch mode wants large calls (one Batch API job per call): the generate stage
        hands a strategy with independent batches this many items at once instead of
        ``flush_every`` (resume needs no small shards: the batch ids are kept)."""
        return self.batch_max_requests if self.mode == "batch" else None

    @field_validator("base_url", "more_base_urls")
    @classmethod
    def _http_urls(cls, value: Any) -> Any:
        for url in [value] if isinstance(value, str) else value:
            if not re.match(r"https?://[^/\s]+", url):
                raise ValueError(f"{url!r} is not an http(s) URL (e.g. http://node1:8000/v1)")
        return value

    @model_validator(mode="after")
    def _one_server_for_batches(self) -> OpenAIBackendConfig:
        if self.mode == "batch" and self.more_base_urls:
            raise ValueError("more_base_urls: the Batch API mode talks to one provider")
        return self

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_a_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(
                "api_key_env takes the NAME of an environment variable, not the key itself"
            )
        return value


class ProceduralBackendConfig(SectionConfig):
    """Defect images drawn on real textures with exact labels (``synthtune.vision``); slots
    named defect, material, size, orientation, intensity, lighting, x, y steer the drawing."""

    type: Literal["procedural"]
    width: int = Field(128, ge=16, le=2048, description="Image width in pixels.")
    height: int = Field(128, ge=16, le=2048, description="Image height in pixels.")
    masks: bool = Field(True, description="Also write each defect's binary mask (PNG).")


class DiffusersBackendConfig(SectionConfig):
    """Stable Diffusion text-to-image, or inpainting a defect into a procedural clean image
    (the template prompt is the diffusion prompt; the inpainted region is the label)."""

    type: Literal["diffusers"]
    model: str = Field(description="Hugging Face id or local folder of a diffusers pipeline.")
    mode: Literal["text2img", "inpaint"] = Field(
        "text2img", description="text2img: image from the prompt; inpaint: defect into a mask."
    )
    width: int = Field(512, ge=32, le=2048, multiple_of=8, description="Image width.")
    height: int = Field(512, ge=32, le=2048, multiple_of=8, description="Image height.")
    steps: int = Field(25, ge=1, le=200, description="Denoising steps.")
    guidance_scale: float = Field(7.5, ge=0, description="Classifier-free guidance.")
    negative_prompt: str | None = Field(None, description="What the image must not show.")
    batch_size: int = Field(4, gt=0, description="Prompts per pipeline call.")
    device: str = Field("auto", description="auto (cuda when present), cpu, cuda:1 ...")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: float16 on GPU, float32 on CPU."
    )


class MachineSoundBackendConfig(SectionConfig):
    """Procedural machine sounds (fan, pump, bearing) with labelled anomaly types and
    severities (``synthtune.audio.machine``); slots named machine, anomaly, severity, rpm,
    load, snr_db, reverb steer the synthesis, the rest is drawn from the request's seed."""

    type: Literal["machine-sound"]
    sample_rate: int = Field(16_000, ge=4_000, le=48_000, description="Samples per second.")
    seconds: float = Field(1.0, gt=0, le=30, description="Clip length.")


class EspeakBackendConfig(SectionConfig):
    """Speech from the rendered template prompt through eSpeak NG (offline, the
    ``synthtune[audio]`` extra); slots named voice, rate, pitch, snr_db, reverb steer it."""

    type: Literal["espeak"]
    sample_rate: int = Field(16_000, ge=8_000, le=48_000, description="Samples per second.")
    voice: str = Field("en", description="Default voice (en, en-us, cmn, ...): a slot wins.")
    max_seconds: float = Field(20.0, gt=0, le=120, description="Longer speech is cut.")


def is_image_backend(name: str) -> bool:
    """An image backend (``strategy: image`` turns its output into records)."""
    from synthtune.plugins import IMAGE_BACKENDS

    return name in IMAGE_BACKENDS


def is_audio_backend(name: str) -> bool:
    """An audio backend (``strategy: audio`` turns its output into records)."""
    from synthtune.plugins import AUDIO_BACKENDS

    return name in AUDIO_BACKENDS


# generate.backend / quality.judge.backend: any registered backend's config model
BackendConfig = Annotated[
    SectionConfig, PluginSection(("backend", "image backend", "audio backend"))
]


class TemplateFillStrategy(SectionConfig):
    type: Literal["template-fill"] = "template-fill"


class SelfInstructStrategy(SectionConfig):
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


class EvolInstructStrategy(SectionConfig):
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


class DocQAStrategy(SectionConfig):
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


class ImageStrategy(SectionConfig):
    """Each item's rendered prompt is an image caption; an image backend draws the image.
    The default strategy of image backends."""

    type: Literal["image"]


class AudioStrategy(SectionConfig):
    """Each item's rendered prompt is a description (machine sounds) or the text to speak
    (speech); an audio backend makes the clip. The default strategy of audio backends."""

    type: Literal["audio"]


StrategyConfig = Annotated[SectionConfig, PluginSection(("strategy",))]


class EdgeCasesConfig(StrictModel):
    """Boundary and adversarial items aimed at the rules (inputs of adversarial training).

    A share of the planned items gets slot values just below, at or just above a rule's
    threshold (``temp < 38.5`` -> temp 38.3..38.7), or one of the explicit ``variants``; each
    such record carries ``lineage.edge_case``. Planned from ``(seed, index)`` like every item.
    """

    share: float = Field(
        0.15, ge=0, le=1, description="Share of items that become edge cases (0.15 = 15 %)."
    )
    auto: bool = Field(
        True,
        description="Take thresholds from the comparisons `var <op> number` in the `when` and "
        "`check` of quality.rules (files and packs); a rule variable maps to the slot of the "
        "same name, or through `slot_for`.",
    )
    slot_for: dict[str, str] = Field(
        default_factory=dict, description="Rule variable -> template slot, e.g. {t: temp}."
    )
    boundaries: dict[str, list[float]] = Field(
        default_factory=dict,
        description="Explicit thresholds per randint/uniform slot, e.g. {age: [18, 65]}.",
    )
    spread: int = Field(
        2,
        ge=1,
        description="Boundary values lie at most this many steps from the threshold (a step: "
        "1 for randint, the rounding unit for uniform, 1 % of the range if unrounded).",
    )
    variants: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Adversarial slot overrides, e.g. {symptom: a persistent fever, temp: "
        "36.6} (a contradictory case); a variant applies to templates holding all its slots.",
    )
    variant_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of edge items that take a variant where a template has both.",
    )

    @field_validator("boundaries")
    @classmethod
    def _thresholds(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        empty = sorted(slot for slot, thresholds in value.items() if not thresholds)
        if empty:
            raise ValueError(f"boundaries of {', '.join(empty)}: list at least one threshold")
        return value

    @field_validator("variants")
    @classmethod
    def _non_empty(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if any(not variant for variant in value):
            raise ValueError("a variant overrides at least one slot, e.g. {temp: 36.6}")
        return value


BATCH_DISCOUNT = 0.5  # OpenAI's Batch API: half the listed price


class Price(StrictModel):
    input_per_1m: float = Field(ge=0, description="USD per million prompt tokens.")
    output_per_1m: float = Field(ge=0, description="USD per million completion tokens.")
    batch_input_per_1m: float | None = Field(
        None,
        ge=0,
        description="USD per million prompt tokens through the Batch API (default: half of "
        "input_per_1m).",
        json_schema_extra={"fingerprint": "when_set"},
    )
    batch_output_per_1m: float | None = Field(
        None,
        ge=0,
        description="USD per million completion tokens through the Batch API (default: half "
        "of output_per_1m).",
        json_schema_extra={"fingerprint": "when_set"},
    )

    def batch(self) -> Price:
        """The price of the Batch API: the recipe's batch prices, else half the listed."""
        return Price(
            input_per_1m=(
                self.batch_input_per_1m
                if self.batch_input_per_1m is not None
                else self.input_per_1m * BATCH_DISCOUNT
            ),
            output_per_1m=(
                self.batch_output_per_1m
                if self.batch_output_per_1m is not None
                else self.output_per_1m * BATCH_DISCOUNT
            ),
        )


class FewShotConfig(StrictModel):
    """Worked examples shown before each prompt (template-fill): the reviewers' corrections
    of an earlier round (``synthtune review-stats --few-shot FILE`` writes them), or any
    hand-picked pairs. They shape the request only; the records hold the plain prompt."""

    file: RecipePath = Field(
        description="JSONL, one example per line: {user, assistant, template?}; an example "
        "with a template id is shown only with that template."
    )
    per_prompt: int = Field(2, ge=1, le=8, description="Examples shown per request.")


class GenerateConfig(StrictModel):
    n: int = Field(
        200,
        gt=0,
        strict=True,  # `n: true` is not 1 request
        description="Items to request (doc-qa: chunks at most).",
    )
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
    edge_cases: EdgeCasesConfig | None = Field(
        None,
        description="Boundary and adversarial items aimed at the rules (None = off); "
        "template-based strategies only.",
    )
    few_shot: FewShotConfig | None = Field(
        None,
        description="Worked examples before each prompt (template-fill only; None = off).",
        json_schema_extra={"fingerprint": "when_set"},
    )

    @model_validator(mode="before")
    @classmethod
    def _image_strategy(cls, data: Any) -> Any:
        """An image (audio) backend without a strategy gets the `image` (`audio`) strategy."""
        backend = data.get("backend") if isinstance(data, dict) else None
        kind = backend.get("type") if isinstance(backend, dict) else getattr(backend, "type", None)
        if isinstance(kind, str) and is_image_backend(kind) and "strategy" not in data:
            return {**data, "strategy": {"type": "image"}}
        if isinstance(kind, str) and is_audio_backend(kind) and "strategy" not in data:
            return {**data, "strategy": {"type": "audio"}}
        return data

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
        if is_image_backend(self.backend.type) != (self.strategy.type == "image"):
            from synthtune.plugins import IMAGE_BACKENDS

            raise ValueError(
                f"strategy {self.strategy.type!r} with backend {self.backend.type!r}: image "
                f"backends ({', '.join(IMAGE_BACKENDS.names())}) go with the `image` strategy, and "
                "the `image` strategy needs one of them"
            )
        if is_audio_backend(self.backend.type) != (self.strategy.type == "audio"):
            from synthtune.plugins import AUDIO_BACKENDS

            raise ValueError(
                f"strategy {self.strategy.type!r} with backend {self.backend.type!r}: audio "
                f"backends ({', '.join(AUDIO_BACKENDS.names())}) go with the `audio` strategy, and "
                "the `audio` strategy needs one of them"
            )
        if self.few_shot is not None and self.strategy.type != "template-fill":
            raise ValueError(
                f"few_shot: the {self.strategy.type} strategy writes its own prompts; "
                "few-shot examples go with template-fill"
            )
        if self.edge_cases is not None and self.strategy.type == "doc-qa":
            raise ValueError(
                "edge_cases: the doc-qa strategy plans items from document chunks, not from "
                "slots, so it has no edge cases; remove `edge_cases` or use template-fill, "
                "self-instruct or evol-instruct"
            )
        return self
