"""Load causal LMs by id or path, and build the offline ``local-tiny`` model.

``local-tiny`` is a normal Hugging Face folder (config, safetensors weights, tokenizer,
chat template), so every later stage loads it with ``AutoModelForCausalLM.from_pretrained``
exactly as it would load a hub id: one code path for the demo and for real use.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synthtune.config import LocalTinyConfig
from synthtune.registry import Registry

if TYPE_CHECKING:
    import torch


LOCAL_TINY = "local-tiny"
# Other offline models built on demand, by name: builder(folder, recipe) -> the folder it
# built (e.g. synthtune.vision.clip_model registers local-tiny-clip).
LocalBuilder = Callable[[Path, Any], Path]
LOCAL_MODELS: Registry[LocalBuilder] = Registry("local model")
# the CLIP twin of local-tiny, imported only when a recipe names it
LOCAL_MODELS.register_lazy("local-tiny-clip", "synthtune.vision.clip_model:ensure_local_tiny_clip")
LOCAL_MODELS.register_lazy("local-tiny-audio", "synthtune.audio.model:ensure_local_tiny_audio")
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
# A minimal chat layout: role tag line, content, and EOS after each assistant turn so a tuned
# model learns to stop.
# Newlines are written as expressions: transformers renders chat templates with
# trim_blocks, which would drop a literal newline that follows a block tag.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ '\\n' }}{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}</s>{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{{ '\\n' }}{% endif %}"
)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(device: str = "auto") -> torch.device:
    import torch

    if device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(
    path: str, device: torch.device | None = None, dtype: str = "auto", **kwargs: Any
) -> tuple[Any, Any]:
    """Model (eval mode, on ``device``) and tokenizer (with a pad token) from an id or path.

    ``kwargs`` go to ``from_pretrained`` (e.g. a quantization config); a quantized model is
    placed by its loader, not moved.
    """
    from transformers import AutoModelForCausalLM

    device = device or pick_device()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype, device), **kwargs)
    if "quantization_config" not in kwargs and "device_map" not in kwargs:
        model.to(device)  # type: ignore[arg-type]
    model.eval()
    return model, load_tokenizer(path)


def load_sequence_classifier(path: str, labels: list[str]) -> tuple[Any, Any]:
    """A sequence classifier with a fresh head for ``labels`` (any encoder or decoder)."""
    from transformers import AutoModelForSequenceClassification

    tokenizer = load_tokenizer(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_tuned_classifier(base_path: str, tuned_dir: Path, labels: list[str]) -> tuple[Any, Any]:
    """base + adapter when ``tuned_dir`` holds a peft adapter, else the full tuned model."""
    if not (tuned_dir / "adapter_config.json").exists():
        return load_sequence_classifier(str(tuned_dir), labels)
    from peft import PeftModel

    model, tokenizer = load_sequence_classifier(base_path, labels)
    return PeftModel.from_pretrained(model, str(tuned_dir)).eval(), tokenizer


def train_bpe(
    texts: Sequence[str], vocab_size: int, special_tokens: Sequence[str] = SPECIAL_TOKENS
) -> Any:
    """A ``tokenizers`` byte-level BPE trained on ``texts`` (any script: unseen bytes still
    encode); callers add the post-processor their model needs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """Byte-level BPE trained on ``texts`` for the local causal LM (BOS-prefixed)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok = train_bpe(texts, vocab_size)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=SPECIAL_TOKENS[4:],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama_config(
    vocab_size: int, cfg: LocalTinyConfig, special: tuple[int, int, int] = (1, 2, 3)
) -> Any:
    """The LlamaConfig of local-tiny (bos, eos, pad ids in ``special``)."""
    from transformers import LlamaConfig

    bos, eos, pad = special
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.hidden_size * 8 // 3 // 8 * 8,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        max_position_embeddings=max(512, cfg.max_length),
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
        tie_word_embeddings=True,
    )


def build_tiny_llama(tokenizer: Any, cfg: LocalTinyConfig, seed: int) -> Any:
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    special = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    return LlamaForCausalLM(tiny_llama_config(len(tokenizer), cfg, special))


def pretrain(
    model: Any, tokenizer: Any, texts: Sequence[str], cfg: LocalTinyConfig, seed: int, out_dir: Path
) -> list[float]:
    """A short causal-LM pre-training pass with the transformers Trainer; returns the losses."""
    import torch
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    rows = [
        tokenizer(t + tokenizer.eos_token, truncation=True, max_length=cfg.max_length)
        for t in texts
    ]
    args = TrainingArguments(
        output_dir=str(out_dir / "_pretrain"),
        num_train_epochs=cfg.pretrain_epochs,
        per_device_train_batch_size=16,
        learning_rate=3e-3,
        warmup_steps=max(1, math.ceil(0.05 * len(rows) / 16 * cfg.pretrain_epochs)),
        lr_scheduler_type="cosine",
        weight_decay=0.01,
        max_grad_norm=1.0,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def build_local_tiny(
    out_dir: Path,
    tokenizer_texts: Sequence[str],
    pretrain_texts: Sequence[str],
    cfg: LocalTinyConfig,
    seed: int,
) -> dict[str, Any]:
    """Train a tokenizer, build a seeded tiny Llama, pre-train it, save an HF folder.

    Deterministic for a given corpus, config and seed on one machine. Returns a summary.
    """
    seed_everything(seed)
    tokenizer = train_tokenizer(tokenizer_texts, cfg.vocab_size)
    model = build_tiny_llama(tokenizer, cfg, seed)
    losses = (
        pretrain(model, tokenizer, pretrain_texts, cfg, seed, out_dir)
        if (cfg.pretrain_epochs > 0 and pretrain_texts)
        else []
    )
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "pretrain_texts": len(pretrain_texts),
        "pretrain_losses": losses,
    }


def recipe_strings(value: Any) -> list[str]:
    """Every string in a nested dict/list (a recipe section dumped to JSON)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in recipe_strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in recipe_strings(v)]
    return []


def general_corpus() -> list[str]:
    """English prose paragraphs shipped with every CPython (``pydoc_data.topics``).

    A stand-in for the general pre-training a real base model has: offline, licensed with
    Python (PSF), about 1,200 paragraphs and 240 kB, and unrelated to any example domain, so
    fine-tuning on domain data has something real to add.
    """
    import re
    from pydoc_data.topics import topics

    paragraphs = []
    for text in topics.values():
        for block in re.split(r"\n\s*\n", text):
            flat = " ".join(block.split())
            letters = sum(c.isalpha() for c in flat)
            if 40 <= len(flat) <= 600 and letters / len(flat) > 0.75:
                paragraphs.append(flat)
    return paragraphs


class ModelResolver:
    """Maps a model name from the recipe to a loadable path, building local-tiny on demand.

    local-tiny's tokenizer learns from the pre-training corpus, the real non-test texts and
    every string of the generate section (so domain words get their own tokens). The model is
    pre-trained on ``local_tiny.pretrain_on``; the real test split is never seen.
    """

    def __init__(self, root: Path, recipe: Any, log: Any = print) -> None:
        self.root = Path(root)
        self.recipe = recipe
        self.log = log

    def resolve(self, name: str) -> str:
        """A loadable folder or hub id for ``name``: local-tiny and registered offline models
        built on demand, packaged models from their package (``model_names``), the rest
        unchanged. Every stage resolves through here, so a name means the same everywhere."""
        if name != LOCAL_TINY and name not in LOCAL_MODELS:
            from synthtune.model_names import resolve_name

            return resolve_name(name)
        from synthtune import distributed

        def build() -> Path:
            if name == LOCAL_TINY:
                return self._ensure_local_tiny()
            return LOCAL_MODELS.get(name)(self.root / "models" / name, self.recipe)

        if distributed.world_size() == 1:
            return str(build())
        # several processes (torchrun): the main one builds, the others wait and read
        path = build() if distributed.is_main() else None
        distributed.barrier()
        return str(path or build())

    def _corpus(self) -> tuple[list[str], list[str]]:
        from synthtune.realdata import real_texts

        recipe = self.recipe
        real = real_texts(recipe, test=False)
        generate_strings = (
            recipe_strings(recipe.generate.model_dump(mode="json"))
            if recipe.generate is not None
            else []
        )
        sources = recipe.local_tiny.pretrain_on
        pretrain = (general_corpus() if "general" in sources else []) + (
            real if "real" in sources else []
        )
        tokenizer_texts = list(dict.fromkeys(pretrain + real + generate_strings))
        return tokenizer_texts, pretrain

    def _ensure_local_tiny(self) -> Path:
        import json

        from synthtune.records import content_hash
        from synthtune.store import atomic_write_json

        out = self.root / "models" / LOCAL_TINY
        tokenizer_texts, pretrain_texts = self._corpus()
        fingerprint = content_hash(
            {
                "cfg": self.recipe.local_tiny.model_dump(mode="json"),
                "seed": self.recipe.seed,
                "tok": tokenizer_texts,
                "pre": pretrain_texts,
            }
        )
        marker = out / "synthtune.json"
        if marker.exists() and json.loads(marker.read_text())["fingerprint"] == fingerprint:
            return out
        self.log(f"building {LOCAL_TINY} ({len(pretrain_texts)} pre-training texts) -> {out}")
        summary = build_local_tiny(
            out, tokenizer_texts, pretrain_texts, self.recipe.local_tiny, self.recipe.seed
        )
        atomic_write_json(marker, {"fingerprint": fingerprint, **summary})
        return out
