"""Recipe models of the mix, train, evaluate and export stages and of local-tiny."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from synthtune.config.base import RecipePath, RegisteredName, StrictModel

# --------------------------------------------------------------------------- mix
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")


RealFormat = Literal["auto", "jsonl", "json", "csv", "parquet", "hf-disk", "hf"]
RealSplitName = Literal["train", "validation", "test"]


class RealDataConfig(StrictModel):
    """Human-written data and how its columns map into records (``source: real``).

    Either one ``path``, split by a hash of each record (``mix.val_fraction`` /
    ``mix.test_fraction``), or your own ``train`` file with optional ``validation`` and
    ``test`` files; a split without a file of its own is hash-split from ``train``.
    """

    path: RecipePath | None = Field(
        None,
        description="One file or folder of human-written records, relative to the recipe, "
        "split by hash into train/validation/test: JSONL (flat or chat `messages`), a JSON "
        "array, CSV/TSV, Parquet, a `save_to_disk` folder, or a folder for "
        "`datasets.load_dataset`. Use train/validation/test instead for your own splits.",
    )
    train: RecipePath | None = Field(
        None, description="Your own training file or folder (instead of path); same formats."
    )
    validation: RecipePath | None = Field(
        None,
        description="Your own validation file (with train); unset: hash-split from train "
        "with mix.val_fraction.",
    )
    test: RecipePath | None = Field(
        None,
        description="Your own test file (with train); unset: hash-split from train with "
        "mix.test_fraction.",
    )
    format: RealFormat = Field(
        "auto",
        description="auto: by suffix (.jsonl/.ndjson, .json, .csv/.tsv, .parquet/.pq); a "
        "folder written by `save_to_disk` is hf-disk, any other folder hf (`load_dataset`).",
    )
    encoding: str = Field(
        "utf-8",
        description="Text encoding of JSONL/JSON/CSV files (utf-8 also accepts a BOM); e.g. "
        "latin-1, cp1252, utf-16, gb18030.",
    )
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None,
        description="format hf: files inside the folder (glob, list, or split -> files), "
        "passed to `datasets.load_dataset` as is.",
    )
    split: str = Field("train", description="Split to read when the data has several.")
    text_field: str | None = Field("text", description="Column holding plain text.")
    prompt_field: str | None = Field(None, description="Column holding a prompt (QA data).")
    response_field: str | None = Field(None, description="Column holding the answer.")
    messages_field: str | None = Field(
        None,
        description="Column holding chat turns ([{role, content}, ...], OpenAI/ShareGPT "
        "style); unset: used automatically when the text column is absent and a `messages` "
        "column is present.",
    )
    label_field: str | None = Field(
        None, description="Column holding a class label (-> payload.label; classification)."
    )
    image_field: str | None = Field(
        None,
        description="Column holding an image path (relative to the data file's folder): "
        "image records, whose text column is the caption (the user turn, as generated ones).",
    )
    audio_field: str | None = Field(
        None,
        description="Column holding a WAV path (relative to the data file's folder): audio "
        "records, whose text column is the clip's description or transcript (the user "
        "turn, as generated ones).",
        json_schema_extra={"fingerprint": "when_set"},
    )
    slots: list[str] | dict[str, str] = Field(
        default_factory=list,
        description="Columns kept as slot values in lineage.slots, where synthetic records "
        "keep their template slots: a list of columns, or a mapping column -> slot name.",
    )
    duplicates: Literal["keep", "drop"] = Field(
        "keep",
        description="Rows with the same content: keep (counted and reported; a duplicate "
        "always lands in the same split as its twin) or drop (all but the first, counted "
        "and reported).",
    )

    @model_validator(mode="after")
    def _mapping(self) -> RealDataConfig:
        if (self.path is None) == (self.train is None):
            raise ValueError(
                "set path (one file, split by hash) or train (your own train file, with "
                "optional validation and test files), not both"
            )
        if self.path is not None and (self.validation or self.test):
            raise ValueError("validation and test files go with train, not with path")
        if (self.prompt_field is None) != (self.response_field is None):
            raise ValueError("set both prompt_field and response_field, or neither")
        if self.prompt_field is None and self.text_field is None and not self.messages_field:
            raise ValueError("set text_field, messages_field, or prompt_field and response_field")
        if self.data_files is not None and self.format != "hf":
            raise ValueError("data_files is read only with format: hf")
        if self.image_field and self.audio_field:
            raise ValueError("a record holds an image or a clip: set image_field or audio_field")
        import codecs

        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"encoding {self.encoding!r} is not a known codec") from None
        names = list(self.slot_names().values())
        if len(set(names)) != len(names):
            raise ValueError(f"slots: two columns map to the same slot name in {names}")
        return self

    def slot_names(self) -> dict[str, str]:
        """Column -> slot name (a list of columns keeps each column's name)."""
        if isinstance(self.slots, dict):
            return dict(self.slots)
        return {column: column for column in self.slots}

    def files(self) -> dict[str, Path]:
        """Recipe field -> data file: ``{"path": ...}`` or ``{"train": ..., "validation":
        ..., "test": ...}`` (the ones set)."""
        named = {
            "path": self.path,
            "train": self.train,
            "validation": self.validation,
            "test": self.test,
        }
        return {field: value for field, value in named.items() if value is not None}

    def source_path(self) -> Path:
        """The file every split comes from when there is one (path), else the train file."""
        source = self.path if self.path is not None else self.train
        assert source is not None  # checked by _mapping
        return source


class StopWhenConfig(StrictModel):
    wasserstein_below: float = Field(
        0.15,
        gt=0,
        description="Stop injecting once the sliced Wasserstein distance of the chosen "
        "synthetic records to the real train split is below this (in real standard "
        "deviations, debiased for size: docs/mixing.md).",
    )


class FeatureSpaceConfig(StrictModel):
    """Where distances are measured: text -> vectors fitted on the real data."""

    space: Annotated[str, RegisteredName("feature space")] = Field(
        "tfidf",
        description="tfidf: hashed character n-gram TF-IDF + SVD (no model, any script); "
        "embedding: a sentence-transformers model; image records: clip (a CLIP model's "
        "image embeddings) or pixels (pixel statistics, no model).",
    )
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="embedding: sentence-transformers id (all-MiniLM-L6-v2 loads offline); "
        "clip: a CLIP id or folder.",
    )
    components: int = Field(64, ge=2, description="tfidf: SVD dimensions.")


class DistanceConfig(StrictModel):
    components: int = Field(16, ge=1, description="Whitened principal directions compared.")
    projections: int = Field(64, ge=1, description="Sliced Wasserstein random directions.")
    bootstrap: int = Field(30, ge=0, description="Resamples for confidence intervals (0: none).")
    level: float = Field(0.95, gt=0, lt=1, description="Confidence level of the intervals.")


class ScheduleConfig(StrictModel):
    """Rounds of injection after the starting ratio (docs/mixing.md)."""

    max_rounds: int = Field(10, ge=0, description="Rounds after the start (0: ratio only).")
    per_round: int | None = Field(
        None, gt=0, description="Synthetic records added per round (default: half the start)."
    )
    max_ratio: str | None = Field(
        None,
        description="Budget: at most this synthetic:real in train (default 1:1, or the "
        "starting ratio when that is higher).",
    )
    clusters: int | None = Field(
        None, ge=2, description="k-means clusters of the real data that steer what is added."
    )

    @field_validator("max_ratio")
    @classmethod
    def _ratio(cls, value: str | None) -> str | None:
        return None if value is None else _check_ratio(value)


def _check_ratio(value: str) -> str:
    m = _RATIO.match(value)
    if not m or float(m.group(1)) <= 0 or float(m.group(2)) <= 0:
        raise ValueError(f"ratio {value!r} must look like '1:3' (synthetic:real)")
    return value


def ratio_value(value: str) -> float:
    """synthetic per real of a checked ``'a:b'`` ratio."""
    m = _RATIO.match(value)
    assert m is not None  # checked by the validators
    return float(m.group(1)) / float(m.group(2))


class LabelTargetsConfig(StrictModel):
    """How many synthetic records each class label should get (docs/mixing.md: labels).

    Targets are computed from the real train split's label counts; generation weights its
    label slot by them and mixing enforces them as per-label quotas. Unlabelled data ignores
    this section.
    """

    target: Literal["as-real", "balanced"] | dict[str, float] = Field(
        "as-real",
        description="as-real: the real train split's label shares; balanced: real + "
        "synthetic per label as even as possible (water-filling); or explicit shares "
        "{label: share} (normalised; labels left out get min_per_label).",
    )
    ratio_per_label: bool = Field(
        True,
        description="as-real: apply mix.ratio to each label (30 real rows at 1:3 -> 10); "
        "false: split the total budget by the real shares (largest remainder).",
    )
    allow_zero: list[str] = Field(
        default_factory=list,
        description="Labels that may end with no synthetic records: no min_per_label, no "
        "fill from off-manifold records, no warning.",
    )
    min_per_label: int = Field(
        1,
        ge=0,
        description="Least synthetic records per label when synthetic data is asked for "
        "(may add a few records beyond the ratio).",
    )

    @field_validator("target", mode="before")
    @classmethod
    def _label_keys(cls, value: object) -> object:
        """YAML reads labels 0/1 as numbers; labels are strings in records."""
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("allow_zero", mode="before")
    @classmethod
    def _label_names(cls, value: object) -> object:
        return [str(v) for v in value] if isinstance(value, list) else value

    @field_validator("target")
    @classmethod
    def _shares(cls, value: str | dict[str, float]) -> str | dict[str, float]:
        if isinstance(value, dict) and (
            not value or any(s < 0 for s in value.values()) or sum(value.values()) <= 0
        ):
            raise ValueError("explicit shares must be non-negative with a positive sum")
        return value


class MixConfig(StrictModel):
    real: RealDataConfig | None = Field(None, description="Real data to mix with.")
    ratio: str = Field("1:3", description="synthetic:real in the training split, to start.")
    val_fraction: float = Field(0.1, ge=0, lt=0.5, description="Share of real data for val.")
    test_fraction: float = Field(0.2, gt=0, lt=0.5, description="Real-only test share.")
    stop_when: StopWhenConfig = Field(default_factory=StopWhenConfig)
    features: FeatureSpaceConfig = Field(default_factory=FeatureSpaceConfig)
    distance: DistanceConfig = Field(default_factory=DistanceConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    labels: LabelTargetsConfig = Field(
        default_factory=LabelTargetsConfig,
        description="Synthetic records per class label (classification data only).",
    )
    use_real_train: bool = Field(
        True,
        description="false: the train split holds the synthetic records only (validation "
        "and test stay real; label targets still come from the real train counts).",
    )

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, value: str) -> str:
        return _check_ratio(value)

    @model_validator(mode="after")
    def _budget(self) -> MixConfig:
        if self.schedule.max_ratio and ratio_value(self.schedule.max_ratio) < ratio_value(
            self.ratio
        ):
            raise ValueError(
                f"schedule.max_ratio {self.schedule.max_ratio!r} is below the starting "
                f"ratio {self.ratio!r}"
            )
        return self

    def synthetic_per_real(self) -> float:
        return ratio_value(self.ratio)

    def max_synthetic_per_real(self) -> float:
        if self.schedule.max_ratio is not None:
            return ratio_value(self.schedule.max_ratio)
        return max(1.0, self.synthetic_per_real())


# --------------------------------------------------------------------------- train
class LoraConfig(StrictModel):
    r: int = Field(16, gt=0, description="Adapter rank.")
    alpha: int = Field(32, gt=0, description="Scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: str | list[str] = Field(
        "attention", description="Alias (attention, mlp, all-linear) or module names."
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Biases that train.")
    use_rslora: bool = Field(False, description="rsLoRA scaling alpha/sqrt(r).")
    use_dora: bool = Field(False, description="DoRA: weight-decomposed LoRA.")
    init: Literal["default", "gaussian", "pissa", "olora"] = Field(
        "default", description="Adapter initialisation (pissa: principal singular vectors)."
    )
    plus_ratio: float | None = Field(
        None, gt=0, description="LoRA+: learning rate of B = ratio x learning rate of A (16)."
    )


class PromptLearningConfig(StrictModel):
    virtual_tokens: int = Field(20, gt=0, description="Virtual tokens (prefix/prompt/ptuning).")
    init_text: str | None = Field(None, description="Prompt tuning: initialise from this text.")
    encoder_hidden_size: int = Field(128, gt=0, description="P-tuning prompt encoder size.")


class AdversarialConfig(StrictModel):
    """Adversarial training on the input embeddings (FGM: one step; PGD: several)."""

    method: Literal["fgm", "pgd"] = "fgm"
    epsilon: float = Field(1.0, gt=0, description="Perturbation norm bound.")
    steps: int = Field(3, ge=1, description="PGD ascent steps.")
    alpha: float = Field(0.3, gt=0, description="PGD step size.")
    on: Literal["all", "edge_cases"] = Field(
        "all",
        description="all: the adversarial loss on every example; edge_cases: only on records "
        "tagged lineage.edge_case (generate.edge_cases), a batch without one skips the pass.",
    )


Auto = Literal["auto"]


class LearningRates(StrictModel):
    """``auto`` picks a rate per task and method (``TrainConfig.learning_rates``)."""

    adapter: float | Auto = Field(
        "auto",
        description="LR of adapter/new parameters (LoRA, prompt encoders, a new head); auto: 1e-3.",
    )
    base: float | Auto = Field(
        "auto",
        description="LR of base weights that train (full, freeze); auto: 1e-4 for "
        "classification (a small encoder on a small set: docs/training.md), 1e-5 otherwise.",
    )

    @field_validator("adapter", "base")
    @classmethod
    def _positive(cls, value: float | str) -> float | str:
        if not isinstance(value, str) and value <= 0:
            raise ValueError("a learning rate must be above 0 (or auto)")
        return value


class FreezeConfig(StrictModel):
    layernorm: bool = Field(True, description="Keep LayerNorm/RMSNorm weights frozen.")
    first_n_layers: int = Field(0, ge=0, description="Freeze the first N transformer blocks.")
    train_last_n_layers: int | None = Field(
        None, ge=1, description="freeze method: train only the last N blocks (and the head)."
    )
    embeddings: bool = Field(False, description="Keep the input embeddings frozen.")


NoiseOperation = Literal["swap", "drop", "insert", "replace", "synonym"]


class AugmentConfig(StrictModel):
    noise_prob: float = Field(0.3, ge=0, le=1, description="Per-example noise probability.")
    token_rate: float = Field(0.1, ge=0, le=1, description="Share of input tokens perturbed.")
    operations: dict[NoiseOperation, float] | None = Field(
        None,
        description="Prompt perturbations: a list (equally likely) or a mapping operation -> "
        "relative weight, of swap, drop, insert, replace, synonym (English WordNet synonyms, "
        "needs synthtune[augment]). Unset: all available (synonym when installed).",
    )

    @field_validator("operations", mode="before")
    @classmethod
    def _list_means_equal_weights(cls, value: object) -> object:
        return dict.fromkeys(value, 1.0) if isinstance(value, list) else value

    @field_validator("operations")
    @classmethod
    def _usable(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if any(w < 0 for w in value.values()) or not any(w > 0 for w in value.values()):
            raise ValueError("weights must be >= 0 with at least one above 0")
        from synthtune import synonyms  # light module; imported here to keep config lean

        if value.get("synonym", 0) > 0 and not synonyms.synonyms_available():
            raise ValueError(
                f"'synonym' needs the WordNet data: {synonyms.INSTALL_HINT}; "
                "or remove synonym from the list"
            )
        return value

    def weights(self) -> dict[str, float]:
        """Operation -> relative weight; unset means every available operation, equally."""
        if self.operations is not None:
            return {str(name): weight for name, weight in self.operations.items()}
        from synthtune import synonyms

        names = ["swap", "drop", "insert", "replace"]
        return dict.fromkeys([*names, "synonym"] if synonyms.synonyms_available() else names, 1.0)


class EarlyStoppingConfig(StrictModel):
    """Stop when the validation metric stops improving, and keep the best checkpoint."""

    enabled: bool | Auto = Field(
        "auto",
        description="true, false, or auto: on when the validation set has at least "
        "min_val_rows rows (a smaller one cannot tell a plateau from noise).",
    )
    metric: Literal["auto", "eval_loss", "accuracy", "macro_f1"] = Field(
        "auto",
        description="Metric watched (and that picks the checkpoint kept); auto: accuracy for "
        "classification, eval_loss otherwise. accuracy/macro_f1: classification only.",
    )
    patience: int = Field(3, ge=1, description="Evaluations without improvement before stop.")
    min_val_rows: int = Field(
        50,
        ge=1,
        description="enabled auto: validation rows needed to stop early (below 50 rows one "
        "example moves accuracy by more than 2 points).",
    )


class ClipConfig(StrictModel):
    """train.task clip: CLIP on image records (docs/multimodal.md)."""

    objective: Literal["contrastive", "head"] = Field(
        "contrastive",
        description="contrastive: symmetric image-caption loss, classes predicted zero-shot "
        "from the class prompts; head: a linear classifier on the image embeddings.",
    )
    prompt: str = Field(
        "a photo of a {label} on {material}",
        description="Class prompt; {label} and the records' slots ({material} ...) are filled "
        "in, the prompts of one class averaged (prompt ensembling).",
    )


class AudioTrainConfig(StrictModel):
    """train.task audio: an audio encoder over log-mel maps, with a classification head or
    CLAP-style audio-text training against a sentence encoder (docs/audio.md)."""

    objective: Literal["contrastive", "head"] = Field(
        "contrastive",
        description="contrastive: audio-caption InfoNCE against the text encoder (CLAP), "
        "classes predicted zero-shot from the class prompts; head: a linear classifier on "
        "the audio embeddings.",
    )
    prompt: str = Field(
        "the sound of {label}",
        description="Class prompt; {label} and the records' slots ({machine} ...) are filled "
        "in, the prompts of one class averaged (prompt ensembling).",
    )
    text_model: str = Field(
        "all-MiniLM-L6-v2",
        description="Text encoder (mean-pooled sentence embeddings): a packaged name, a "
        "folder or a hub id; LoRA aliases (train.lora.target_modules) resolve on it, while "
        "the audio encoder trains in full (it has no pre-training).",
    )


class TrainConfig(StrictModel):
    base: str = Field(
        "local-tiny",
        description="Base model: id, path, local-tiny, local-tiny-clip or local-tiny-audio.",
    )
    task: Annotated[str, RegisteredName("task")] = Field(
        "causal_lm",
        description="causal_lm: SFT on the replies; classification: a sequence classifier "
        "on the records' labels (AutoModelForSequenceClassification); clip: CLIP on image "
        "records (train.clip); audio: an audio classifier on audio records (train.audio).",
    )
    clip: ClipConfig = Field(default_factory=ClipConfig)
    audio: AudioTrainConfig = Field(
        default_factory=AudioTrainConfig,
        description="train.task audio: objective, class prompt, text encoder.",
        json_schema_extra={"fingerprint": "when_set"},
    )
    method: str = Field(
        "lora",
        description="Training method: full, freeze, lora, dora, qlora, prefix, prompt, "
        "ptuning, ia3 (a registry: a new method is one module). Unset: lora, except full "
        "for train.task classification (small encoder classifiers underfit with LoRA on "
        "small real sets: docs/training.md).",
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)
    seed: int | None = Field(
        None,
        ge=0,
        le=2**32 - 1,
        description="Seed of training's randomness (head init, data order, dropout, "
        "augmentation); null: the recipe's seed. Splits and generation keep the recipe's "
        "seed, so `synthtune ablate` varies this one alone (docs/ablations.md).",
    )
    prompt_learning: PromptLearningConfig = Field(default_factory=PromptLearningConfig)
    adversarial: AdversarialConfig | None = Field(None, description="FGM/PGD training.")
    neftune_alpha: float | None = Field(None, gt=0, description="NEFTune noise (e.g. 5).")
    gradient_accumulation: int = Field(1, ge=1, description="Micro-batches per step.")
    log_to: list[Literal["tensorboard", "mlflow"]] = Field(
        default=["tensorboard"],
        description="Metric loggers: TensorBoard (train/tensorboard/), MLflow (its env config).",
    )
    batching: Literal["grouped", "padded", "packed"] = Field(
        "grouped",
        description="grouped: padded batches of similar lengths (fastest on CPU, bench/"
        "packing.py); packed: padding-free rows with per-example attention; padded: random "
        "(the default for train.task audio, whose caption lengths follow the class).",
    )
    gradient_checkpointing: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: on for GPU, off on CPU (where it only slows training)."
    )
    lr: LearningRates = Field(default_factory=LearningRates)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    max_grad_norm: float = Field(1.0, gt=0)
    weight_decay: float = Field(
        0.01, ge=0, description="AdamW weight decay of matrices (biases, norms: none)."
    )
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    epochs: float | Auto = Field(
        "auto",
        description="Passes over the training set; auto: 3 for causal_lm, and for "
        "classification/clip enough passes to reach min_steps optimizer steps (3 to 20).",
    )
    min_steps: int = Field(
        500,
        ge=1,
        description="epochs auto, classification/clip: optimizer steps a run reaches at "
        "least. Small sets need many more steps than epochs suggest (Mosbach et al. 2021, "
        "'On the Stability of Fine-tuning BERT'); measured in bench/small_real_defaults.py: "
        "MiniLM, 25 tweets per outlet, validation accuracy 0.271 at 250 steps, 0.396 at 500.",
    )
    max_steps: int | None = Field(
        None, gt=0, description="Optimizer steps to run; overrides epochs when set."
    )
    batch_size: int = Field(8, gt=0)
    max_length: int = Field(256, gt=8, description="Tokens per training example.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Warmup share of all steps.")
    warmup_steps: int | None = Field(
        None, ge=0, description="Warmup optimizer steps; overrides warmup_ratio when set."
    )
    scheduler: Literal["cosine", "linear", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    eval_strategy: Literal["no", "steps", "epoch"] = Field(
        "epoch",
        description="When to evaluate on the validation split: no (no validation split "
        "needed, no early stopping, the last model kept), every eval_steps, or each epoch.",
    )
    eval_steps: int | None = Field(
        None, gt=0, description="eval_strategy steps: optimizer steps between evaluations."
    )
    eval_every: int | None = Field(
        None,
        gt=0,
        description="Deprecated alias: eval_strategy steps with eval_steps = this value.",
    )
    logging_steps: int | Auto = Field(
        "auto",
        description="Optimizer steps between loss logs; auto: about 25 logs per run "
        "(1 to 50 steps apart).",
    )
    synthetic_weight: float = Field(
        1.0,
        gt=0,
        le=10,
        description="Loss weight of each synthetic record relative to a real one (1: equal). "
        "Below 1 the model learns from synthetic rows without letting them outvote the "
        "real ones; `synthtune ablate` measures whether it helps (docs/ablations.md).",
        json_schema_extra={"fingerprint": "when_set"},
    )
    lm_format: Literal["chat", "text"] = Field(
        "chat",
        description="causal_lm: chat trains records with a prompt as chat (loss on the reply "
        "only) and reply-only records as plain text; text trains every record as its reply "
        "in plain text, for models meant to write such text unprompted (judged by "
        "perplexity on real documents).",
        json_schema_extra={"fingerprint": "when_set"},
    )

    @model_validator(mode="after")
    def _evaluation(self) -> TrainConfig:
        if "method" not in self.model_fields_set and self.task == "classification":
            # issue 17, MiniLM on 25 real rows per class: LoRA 0.658 accuracy, full 0.743 at
            # the old defaults and 0.946 with enough steps, above TF-IDF (0.932)
            self.method = "full"
        if "batching" not in self.model_fields_set and self.task == "audio":
            # length-grouped batches sort by caption length, which follows the class (one
            # anomaly word per template): batches of one class leave a contrastive loss no
            # negatives. Measured, local-tiny-audio contrastive, 420 clips: macro-F1 0.79
            # grouped, 0.88 padded (random batches; captions are short, padding costs little)
            self.batching = "padded"
        if self.eval_every is not None:
            if self.eval_steps is not None and self.eval_steps != self.eval_every:
                raise ValueError("eval_every is an alias of eval_steps: set only eval_steps")
            self.eval_steps = self.eval_every
            self.eval_strategy = "steps"
            self.eval_every = None
        if self.eval_strategy == "steps" and self.eval_steps is None:
            raise ValueError("eval_strategy steps needs eval_steps")
        if self.eval_strategy == "no" and self.early_stopping.enabled is True:
            raise ValueError(
                "early_stopping.enabled: true needs evaluations; set eval_strategy to "
                "steps or epoch, or turn early stopping off"
            )
        if self.early_stopping.metric in ("accuracy", "macro_f1") and self.task == "causal_lm":
            raise ValueError(
                f"early_stopping.metric {self.early_stopping.metric} is computed for "
                "classification and clip only; use eval_loss"
            )
        if self.lm_format != "chat" and self.task != "causal_lm":
            raise ValueError(
                f"lm_format {self.lm_format} applies to train.task causal_lm only "
                f"(this recipe trains {self.task}); remove it"
            )
        return self

    def seed_for(self, recipe_seed: int) -> int:
        """The seed training draws from: ``seed``, or the recipe's when unset."""
        return recipe_seed if self.seed is None else self.seed

    def learning_rates(self) -> tuple[float, float]:
        """(adapter, base) with ``auto`` resolved. Base weights of an encoder classifier
        need a larger step than a causal LM's: the issue-17 measurement (MiniLM, 25 rows per
        class) reached 0.946 accuracy with 5e-5 where 1e-5 underfit; on 25 tweets per
        outlet, 500 steps, 1e-4 beat 5e-5 on validation accuracy for both seeds measured
        (0.438 vs 0.396, 0.438 vs 0.404: bench/small_real_defaults.py)."""
        adapter = 1.0e-3 if self.lr.adapter == "auto" else float(self.lr.adapter)
        base_auto = 1.0e-4 if self.task == "classification" else 1.0e-5
        base = base_auto if self.lr.base == "auto" else float(self.lr.base)
        return adapter, base

    def early_stopping_metric(self) -> str:
        """The metric early stopping and the best-checkpoint choice watch."""
        metric = self.early_stopping.metric
        if metric == "auto":
            return "accuracy" if self.task == "classification" else "eval_loss"
        return metric


# --------------------------------------------------------------------------- evaluate/export
class BootstrapConfig(StrictModel):
    """Percentile bootstrap intervals on the headline classification metrics."""

    resamples: int = Field(
        1000, ge=0, description="Bootstrap resamples of the test set (0: no intervals)."
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="Interval coverage, e.g. 0.95.")
    max_half_width: float = Field(
        0.1,
        gt=0,
        description="Warn when the tuned model's macro-F1 interval is wider than +/- this: "
        "the test set is too small to tell the models apart.",
    )
    min_test: int = Field(
        30, ge=1, description="Warn when fewer labelled test records than this are scored."
    )


class BaselineConfig(StrictModel):
    """The TF-IDF linear baseline scored beside base and tuned (classification)."""

    enabled: bool = Field(True, description="Train and score the baseline.")
    features: Literal["auto", "word", "char", "char_wb"] = Field(
        "auto",
        description="word: word 1-2-grams; char: character 1-3-grams; char_wb: character "
        "2-5-grams inside word boundaries; auto: char when the training texts are mostly "
        "CJK or have no spaces, else word or char_wb, whichever scores higher on the "
        "validation rows (word without them).",
    )
    model: Literal["logreg", "linear_svc"] = Field(
        "logreg", description="scikit-learn LogisticRegression or LinearSVC."
    )
    c: float | Literal["auto"] = Field(
        "auto",
        description="Inverse regularisation strength C; auto: 1 or 10, whichever scores "
        "higher on the validation rows (1 without them).",
    )

    @field_validator("c")
    @classmethod
    def _positive(cls, value: float | str) -> float | str:
        if value != "auto" and float(value) <= 0:
            raise ValueError("c must be above 0")
        return value


class ForgettingConfig(StrictModel):
    """Causal LMs: perplexity on general-domain prose, base vs tuned."""

    enabled: bool = Field(True, description="Run the forgetting probe for causal LMs.")
    samples: int = Field(
        200, gt=0, description="Paragraphs of synthtune.models.general_corpus() scored."
    )
    max_ratio: float = Field(
        1.5, gt=1, description="Warn when tuned / base general perplexity exceeds this."
    )


class AudioHeldoutConfig(StrictModel):
    """train.task audio: a held-aside synthetic test set, made by the recipe's audio generator
    with another seed (new machines and noise, same audio tier; docs/audio.md)."""

    n: int = Field(200, gt=0, description="Clips generated for the held-aside set.")
    seed: int = Field(
        1234,
        ge=0,
        le=2**32 - 1,
        description="Seed of the held-aside clips; must differ from the recipe's seed.",
    )


class EvaluateConfig(StrictModel):
    suites: list[Annotated[str, RegisteredName("suite")]] = Field(
        default=["perplexity"],
        description="Evaluation suites to run (docs/evaluation.md); classification runs "
        "on its own when train.task is classification, forgetting for causal LMs while "
        "evaluate.forgetting.enabled.",
    )
    base: Literal["run", "skip"] = Field(
        "run", description="run: score the base model beside the tuned one; skip: do not."
    )
    max_samples: int = Field(500, gt=0, description="Test records scored at most.")
    max_new_tokens: int = Field(
        64, gt=0, description="generation/rules: new tokens per greedy reply."
    )
    generation_samples: int = Field(
        100, gt=0, description="generation/rules: prompts answered per model at most."
    )
    batch_size: int = Field(16, gt=0, description="generation/rules: prompts per generate call.")
    lm_eval_tasks: list[str] = Field(
        default_factory=list, description="lm_eval: lm-evaluation-harness task names."
    )
    bootstrap: BootstrapConfig = Field(
        default_factory=BootstrapConfig,
        description="classification: confidence intervals and the small-test-set warning.",
    )
    baseline: BaselineConfig = Field(
        default_factory=BaselineConfig,
        description="classification: TF-IDF + linear model trained on the real train rows.",
    )
    forgetting: ForgettingConfig = Field(
        default_factory=ForgettingConfig,
        description="causal LMs: general-domain perplexity of base and tuned.",
    )
    audio_heldout: AudioHeldoutConfig | None = Field(
        None,
        description="audio: also score base and tuned on clips the generate section makes "
        "with another seed (under evaluate/heldout-audio/), beside the mix's test split.",
        json_schema_extra={"fingerprint": "when_set"},
    )


class VisionExportConfig(StrictModel):
    """train.task clip: the vision tower to ONNX (docs/multimodal.md)."""

    onnx: bool = Field(True, description="Export the vision tower + class scores to ONNX.")
    int8: bool = Field(True, description="Also a dynamic int8 ONNX model (ONNX Runtime).")
    tolerance: float = Field(1e-3, gt=0, description="Max abs diff, ONNX vs PyTorch, fp32.")
    batch_size: int = Field(16, gt=0, description="Images per batch in the speed test.")
    timed_batches: int = Field(10, gt=0, description="Batches timed per runtime.")


class AudioExportConfig(StrictModel):
    """train.task audio: the audio encoder to ONNX (docs/audio.md)."""

    onnx: bool = Field(True, description="Export the audio encoder + class scores to ONNX.")
    int8: bool = Field(True, description="Also a dynamic int8 ONNX model (ONNX Runtime).")
    tolerance: float = Field(1e-3, gt=0, description="Max abs diff, ONNX vs PyTorch, fp32.")
    batch_sizes: list[Annotated[int, Field(gt=0)]] = Field(
        default=[1, 16],
        min_length=1,
        description="Clips per batch in the speed test, each timed: 1 is streaming (one "
        "window at a time, as on a device listening live), 16 is throughput.",
    )
    timed_batches: int = Field(20, gt=0, description="Batches timed per runtime and size.")


class ExportConfig(StrictModel):
    formats: list[Annotated[str, RegisteredName("export format")]] = Field(
        default=["openai"], description="Dataset export formats."
    )
    dataset_files: list[Literal["dataset_info", "save_to_disk", "card"]] = Field(
        default=["dataset_info", "save_to_disk", "card"],
        description="Extra dataset exports: a LLaMA-Factory dataset_info.json entry per "
        "written file, a datasets.save_to_disk folder, a dataset card README.md.",
    )
    merge: bool = Field(
        True, description="Merge a trained LoRA adapter into the base (export/model)."
    )
    merge_tolerance: float = Field(
        1e-4,
        gt=0,
        description="Max abs logit diff, merged vs base+adapter, in fp32, relative to the "
        "largest |logit| (at least 1): rounding grows with the logits' size.",
    )
    verify_prompts: int = Field(8, gt=0, description="Test prompts the merge check compares.")
    quantize: Literal["int8", "nf4"] | None = Field(
        None,
        description="int8: dynamic int8 on CPU (backend chosen by measurement) or "
        "bitsandbytes 8-bit on CUDA; nf4: bitsandbytes 4-bit, CUDA only (skipped otherwise).",
    )
    latency_prompts: int = Field(8, gt=0, description="Prompts timed for the latency report.")
    latency_new_tokens: int = Field(32, gt=0, description="New tokens per timed generation.")
    quality_samples: int = Field(
        200,
        gt=0,
        description="Test records scored for the quality delta (perplexity; accuracy/F1 "
        "for classifiers).",
    )
    vision: VisionExportConfig = Field(default_factory=VisionExportConfig)
    audio: AudioExportConfig = Field(
        default_factory=AudioExportConfig,
        description="train.task audio: ONNX fp32/int8 export and its speed test.",
        json_schema_extra={"fingerprint": "when_set"},
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
