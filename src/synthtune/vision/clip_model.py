"""Load a CLIP model by id or path, and build the offline ``local-tiny-clip``.

``local-tiny-clip`` is a normal Hugging Face folder (``CLIPModel`` config + safetensors, a
``CLIPProcessor`` with its image processor and tokenizer), so the train, evaluate and export
stages load it with ``from_pretrained`` exactly as they load a hub id such as
``openai/clip-vit-base-patch32``: one code path for the demo and for real use.

The tiny model is randomly initialised (seeded); it has no pre-training, so its zero-shot
accuracy is chance level and everything it knows comes from fine-tuning on the run's images.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from synthtune.models import LOCAL_MODELS, seed_everything, train_bpe

LOCAL_TINY_CLIP = "local-tiny-clip"
# CLIP's text tower pools at the first end-of-text token, unless eos_token_id is 2, which
# transformers keeps for old checkpoints (pooling at the highest token id instead): the
# end-of-text token must therefore not get id 2.
SPECIAL_TOKENS = ["<unk>", "<pad>", "<|startoftext|>", "<|endoftext|>"]


@dataclass(frozen=True)
class TinyClipShape:
    """Size of ``local-tiny-clip``: 64x64 images in 8x8 patches, two 64-wide blocks per tower
    (about 0.2 M parameters), small enough to fine-tune on a laptop CPU in a minute."""

    image_size: int = 64
    patch_size: int = 8
    hidden_size: int = 64
    layers: int = 2
    heads: int = 2
    projection_dim: int = 64
    vocab_size: int = 512
    max_text_length: int = 32


def train_caption_tokenizer(texts: Sequence[str], vocab_size: int, max_length: int) -> Any:
    """Byte-level BPE trained on ``texts`` that wraps every text in start/end-of-text tokens
    (CLIP's layout; unseen words still encode byte by byte)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok = train_bpe(texts, vocab_size, SPECIAL_TOKENS)
    bos, eos = SPECIAL_TOKENS[2], SPECIAL_TOKENS[3]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        special_tokens=[(bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token=bos,
        eos_token=eos,
        model_max_length=max_length,
    )


def tiny_clip_config(tokenizer: Any, shape: TinyClipShape) -> Any:
    from transformers import CLIPConfig

    width = {
        "hidden_size": shape.hidden_size,
        "intermediate_size": 2 * shape.hidden_size,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
    }
    text = {
        **width,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": shape.max_text_length,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {**width, "image_size": shape.image_size, "patch_size": shape.patch_size}
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=shape.projection_dim)


def build_tiny_clip(
    out_dir: Path, texts: Sequence[str], seed: int, shape: TinyClipShape | None = None
) -> dict[str, Any]:
    """Train the tokenizer on ``texts``, build a seeded ``CLIPModel``, save an HF folder
    (model + processor). Deterministic for given texts, shape and seed. Returns a summary."""
    from transformers import CLIPModel, CLIPProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    shape = shape or TinyClipShape()
    seed_everything(seed)
    tokenizer = train_caption_tokenizer(texts, shape.vocab_size, shape.max_text_length)
    model = CLIPModel(tiny_clip_config(tokenizer, shape))
    size = shape.image_size
    images = CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    model.save_pretrained(out_dir)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters()), **asdict(shape)}


def load_clip(path: str) -> tuple[Any, Any]:
    """``(CLIPModel in fp32, CLIPProcessor)`` from a hub id or a folder."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(path, dtype=torch.float32)
    return model, CLIPProcessor.from_pretrained(path)


def _recipe_texts(recipe: Any) -> list[str]:
    """Every string of the generate section and the class-prompt template: the words the
    captions and prompts are made of, so they get their own tokens."""
    from synthtune.models import recipe_strings

    texts = recipe_strings(
        recipe.generate.model_dump(mode="json") if recipe.generate is not None else {}
    )
    texts.append(recipe.train.clip.prompt)
    return list(dict.fromkeys(texts))


def ensure_local_tiny_clip(out: Path, recipe: Any) -> Path:
    """Build ``local-tiny-clip`` under ``out`` unless the same build is already there."""
    from synthtune.records import content_hash
    from synthtune.store import atomic_write_json

    texts = _recipe_texts(recipe)
    fingerprint = content_hash(
        {"shape": asdict(TinyClipShape()), "seed": recipe.seed, "texts": texts}
    )
    marker = out / "synthtune.json"
    if marker.exists() and json.loads(marker.read_text())["fingerprint"] == fingerprint:
        return out
    summary = build_tiny_clip(out, texts, recipe.seed)
    atomic_write_json(marker, {"fingerprint": fingerprint, **summary})
    return out


LOCAL_MODELS.register(LOCAL_TINY_CLIP, ensure_local_tiny_clip)
