"""The method advisor: which training method fits this model, task, dataset and machine.

It encodes the seed's table (full fine-tuning: most compute, for a large task shift; LoRA:
under 1 % of parameters, for limited hardware; prefix tuning: about 0.1 %, lowest serving
latency) with memory arithmetic: full fine-tuning with AdamW in fp32 needs about 16 bytes per
parameter (weights 4, gradients 4, two optimizer moments 8) before activations; adapters need
the frozen weights (4 bytes/param fp32, 2 in bf16, ~0.5 in 4-bit NF4) plus a small trainable
part.

Two rules come from measurements (issue 17): a method that cannot run for the task and base
(``methods.unsupported_methods``, e.g. prefix tuning of a BERT classifier) is never
recommended; and a classifier whose full fine-tune fits easily ranks full fine-tuning first --
on 200 real rows with a small BERT encoder, full fine-tuning reached 0.743 accuracy against
LoRA's 0.658 at the same defaults (0.946 with 10 epochs and lr 5e-5): a fresh head and a
small encoder learn best with every weight training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GIB = 1024**3


@dataclass(frozen=True)
class Hardware:
    device: str  # "cuda" or "cpu"
    memory_bytes: int

    @classmethod
    def detect(cls) -> Hardware:
        import torch

        if torch.cuda.is_available():
            return cls("cuda", torch.cuda.get_device_properties(0).total_memory)
        import psutil

        return cls("cpu", psutil.virtual_memory().total)


@dataclass(frozen=True)
class RunFacts:
    """What the advice depends on: the base, its size and architecture, the task, the
    training examples (and where that count comes from), the methods that cannot run."""

    base: str
    parameters: int
    model_type: str
    task: str
    examples: int
    examples_from: str
    unsupported: dict[str, str] = field(default_factory=dict)


def base_config(recipe: Any, run_dir: Any, local_only: bool = False) -> Any:
    """The base model's config, without loading weights: local-tiny's from its folder or the
    recipe, a registered offline model's from its built folder, a packaged model's from its
    package, else from the folder or hub id (``local_only``: never the network)."""
    from transformers import AutoConfig

    from synthtune.errors import StageError
    from synthtune.model_names import built_on_demand, offline_problem, resolve_name
    from synthtune.models import LOCAL_TINY, tiny_llama_config

    base = recipe.train.base
    built = Path(run_dir) / "models" / base if run_dir is not None else None
    local = built_on_demand(base)
    if base == LOCAL_TINY and (built is None or not built.exists()):
        return tiny_llama_config(recipe.local_tiny.vocab_size, recipe.local_tiny)
    if local and (built is None or not built.exists()):
        raise StageError(f"train.base {base!r}: built by the train stage; run it first")
    if not local and not local_only and (problem := offline_problem(base)):
        raise StageError(f"train.base: {problem}")
    path = str(built) if local else resolve_name(base)
    try:
        return AutoConfig.from_pretrained(path, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise StageError(f"train.base {base!r}: cannot read its config ({exc})") from None


def count_parameters_from_config(config: Any, task: str = "causal_lm") -> int:
    """Parameters of the model ``task`` trains (causal LM, or classifier with its head)."""
    from synthtune.train.methods import empty_task_model

    model = empty_task_model(config, task)
    return sum(p.numel() for p in model.parameters()) - untied_duplicate(model)


def untied_duplicate(model: Any) -> int:
    """Parameters counted twice because meta initialisation leaves tied embeddings untied."""
    if not getattr(model.config, "tie_word_embeddings", False):
        return 0
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if out is None or out.weight is inp.weight:
        return 0
    return int(out.weight.numel())


def training_examples(recipe: Any, run_dir: Any) -> tuple[int, str]:
    """(examples, where the count comes from): the rows of ``mix/train`` once the run has
    mixed; before, the real train rows the recipe reads (``realdata.load_real_splits``) plus
    the synthetic share the mix starts with (``mix.ratio``), or, with synthetic data only, the
    train share of ``generate.n``."""
    from synthtune.store import RunStore

    mixed = Path(run_dir) / "mix" / "train.parquet"
    if mixed.exists():
        return len(RunStore(run_dir).read_table("mix", "train")), "mix/train"
    generate = getattr(recipe, "generate", None)
    mix = recipe.mix
    if mix.real is None:
        n = generate.n if generate is not None else 0
        return round(n * (1 - mix.val_fraction - mix.test_fraction)), "generate.n (train share)"
    from synthtune.realdata import load_real_splits

    real = len(load_real_splits(recipe).splits["train"])
    if generate is None:
        return real, "real train rows"
    synthetic = min(generate.n, round(real * mix.synthetic_per_real()))
    return real + synthetic, "real train rows + mix.ratio synthetic"


def recipe_facts(recipe: Any, run_dir: Any) -> RunFacts:
    """The facts the advisor needs for a recipe and its run dir (nothing is trained)."""
    from synthtune.train.methods import unsupported_methods

    config = base_config(recipe, run_dir)
    cfg = recipe.train
    examples, source = training_examples(recipe, run_dir)
    return RunFacts(
        base=cfg.base,
        parameters=count_parameters_from_config(config, cfg.task),
        model_type=str(getattr(config, "model_type", "?")),
        task=cfg.task,
        examples=examples,
        examples_from=source,
        unsupported={} if cfg.task == "clip" else unsupported_methods(config, cfg),
    )


def advise(
    examples: int,
    parameters: int,
    hardware: Hardware,
    task: str = "causal_lm",
    unsupported: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Methods ranked best first, each with whether it fits in memory, whether it can run
    for ``task`` on this base (``unsupported``: method -> why not), and why."""
    unsupported = unsupported or {}
    weights_bytes = 2 if hardware.device == "cuda" else 4  # bf16 on GPU, fp32 on CPU
    budget = 0.8 * hardware.memory_bytes  # leave room for activations and the runtime
    full_bytes = 16 * parameters
    adapter_bytes = weights_bytes * parameters + 16 * 0.01 * parameters
    qlora_bytes = 0.5 * parameters + 16 * 0.01 * parameters
    # a classifier whose full fine-tune fits twice over: full first (module docstring)
    small_classifier = task == "classification" and full_bytes <= budget / 2
    rows: list[dict[str, Any]] = [
        {
            "method": "full",
            "fits": full_bytes <= budget,
            "memory_gib": full_bytes / GIB,
            "trainable": "100 %",
            "why": "a classifier that fits: every weight learns the new head and task "
            "(measured above LoRA on 200 rows)"
            if small_classifier
            else "most compute; worth it for a large task shift and a large dataset",
            "score": 3
            if small_classifier
            else (2 if examples >= 50_000 else 0) + (1 if full_bytes <= budget / 2 else 0),
        },
        {
            "method": "lora",
            "fits": adapter_bytes <= budget,
            "memory_gib": adapter_bytes / GIB,
            "trainable": "< 1 %",
            "why": "the default: < 1 % of parameters, works on limited hardware",
            "score": 2,
        },
        {
            "method": "qlora",
            "fits": hardware.device == "cuda" and qlora_bytes <= budget,
            "memory_gib": qlora_bytes / GIB,
            "trainable": "< 1 %",
            "why": "LoRA on a 4-bit base: when the bf16 weights do not fit the GPU",
            "score": 3 if hardware.device == "cuda" and adapter_bytes > budget else -1,
        },
        {
            "method": "prefix",
            "fits": adapter_bytes <= budget,
            "memory_gib": adapter_bytes / GIB,
            "trainable": "~0.1 %",
            "why": "~0.1 % of parameters, lowest serving latency; best with little data",
            "score": 2.5 if examples < 1_000 and task == "causal_lm" else 1,
        },
    ]
    for row in rows:
        row["runs"] = row["method"] not in unsupported
        if not row["runs"]:
            row["why"] = f"cannot run: {unsupported[row['method']]}"
            row["score"] -= 100
        if not row["fits"]:
            row["score"] -= 10
    return sorted(rows, key=lambda r: -float(r["score"]))


def recommended(rows: list[dict[str, Any]]) -> str | None:
    """The best method that runs and fits, or ``None`` when none does."""
    return next((r["method"] for r in rows if r["runs"] and r["fits"]), None)
