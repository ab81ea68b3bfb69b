"""transformers backend vs the seed's loop (one prompt at a time, ``model.generate`` each).

Same ~20M-parameter Llama-style model built locally, same prompts, greedy decoding, measured
side by side in one run. Goal (issue 4): >= 6x records/s at batch 16 and >= 10x at batch 64,
with outputs identical token for token.

The model (``--vocab wordpiece``, default): a 6-layer, 384-wide Llama (22.3M parameters) over
a real 30,522-token vocabulary, the WordPiece tokenizer shipped offline with all-MiniLM-L6-v2:
the shape of published small Llamas (llama2.c's stories15M: 288 wide, 32k vocabulary), where
about half the parameters are the tied embedding / LM head. ``--vocab trained`` builds
local-tiny's way instead (BPE trained on the 128 prompts: only ~490 tokens, so 19.1M
parameters all in 6 blocks 512 wide); that shape caps the ratio lower, see below.

The ratio depends on the shape and the reply length. Prefill costs about the same per prompt
token in both loops (compute-bound either way, and the LM head runs once per prompt), while a
batch-1 decode step streams every weight from memory for one token and a batch-64 step
computes 64 tokens for the same traffic. So short replies and a model whose weights are all
blocks (prefill-heavy) cap the ratio; longer replies and a real vocabulary (the LM head runs
at every decode step, which batching amortises) raise it. Both lengths are measured by default.

    python bench/transformers_batching.py [--prompts 128] [--new-tokens 32 64] [--vocab trained]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from synthtune.config import LocalTinyConfig, TransformersBackendConfig
from synthtune.embeddings import resolve_embedder
from synthtune.llm.backends import GenerationRequest, create_backend
from synthtune.llm.backends.transformers import render_chat
from synthtune.models import build_local_tiny, build_tiny_llama, load_causal_lm

SYMPTOMS = [
    "a persistent fever",
    "a sore throat",
    "right abdominal pain",
    "a dry cough",
    "dizziness and blurred vision when standing up quickly",
    "a headache",
]


def prompts(n: int) -> list[str]:
    out = []
    for i in range(n):
        extra = " Also reports fatigue, nausea and poor appetite." * (i % 4)
        out.append(
            f"Patient: {18 + i % 60}-year-old {'male' if i % 2 else 'female'}. Chief complaint: "
            f"{SYMPTOMS[i % len(SYMPTOMS)]} for {1 + i % 7} days.{extra} What should they do?"
        )
    return out


def seed_loop(model, tokenizer, texts: list[str], new_tokens: int) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for text in texts:
        prompt = render_chat(tokenizer, [{"role": "user", "content": text}])
        enc = tokenizer(prompt, return_tensors="pt", return_token_type_ids=False)
        with torch.inference_mode():
            ids = model.generate(
                **enc,
                max_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = ids[0, enc["input_ids"].shape[1] :].tolist()
        if tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id)]
        out.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return out


def batched(backend, texts: list[str]) -> list[str | None]:  # type: ignore[no-untyped-def]
    requests = [
        GenerationRequest(str(i), [{"role": "user", "content": t}]) for i, t in enumerate(texts)
    ]
    return [r.text for r in backend.generate(requests)]


def timed(fn, *args):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--vocab", choices=["wordpiece", "trained"], default="wordpiece")
    args = parser.parse_args()
    texts = prompts(args.prompts)
    folder = Path(tempfile.mkdtemp()) / "bench-llama"
    parameters, vocab = build_model(folder, texts, args.vocab)
    print(
        f"model: {parameters / 1e6:.1f}M parameters, vocabulary {vocab}, torch threads "
        f"{torch.get_num_threads()}, {len(texts)} prompts"
    )
    # Models are loaded before the clock starts: the comparison is generation only.
    model, tokenizer = load_causal_lm(str(folder), dtype="float32")
    for new_tokens in args.new_tokens:
        compare(folder, model, tokenizer, texts, new_tokens)


def build_model(folder: Path, texts: list[str], vocab: str) -> tuple[int, int]:
    """A seeded random Llama saved as an HF folder; (parameters, vocabulary size)."""
    if vocab == "trained":
        cfg = LocalTinyConfig(
            vocab_size=8000, hidden_size=512, layers=6, heads=8, pretrain_epochs=0
        )
        info = build_local_tiny(folder, texts * 4, [], cfg, seed=0)
        return int(info["parameters"]), int(info["vocab_size"])
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_embedder("all-MiniLM-L6-v2"))
    tokenizer.bos_token, tokenizer.eos_token = tokenizer.cls_token, tokenizer.sep_token
    cfg = LocalTinyConfig(hidden_size=384, layers=6, heads=6, pretrain_epochs=0)
    model = build_tiny_llama(tokenizer, cfg, seed=0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters()), len(tokenizer)


def compare(folder: Path, model, tokenizer, texts: list[str], new_tokens: int) -> None:  # type: ignore[no-untyped-def]
    reference, t_loop = timed(seed_loop, model, tokenizer, texts, new_tokens)
    print(f"{new_tokens} new tokens, seed loop: {len(texts) / t_loop:.2f} records/s")
    for batch in (16, 64):
        cfg = TransformersBackendConfig(
            type="transformers",
            model=str(folder),
            dtype="float32",
            max_new_tokens=new_tokens,
            batch_size=batch,
        )
        backend = create_backend(cfg, lambda name: name)
        got, t = timed(batched, backend, texts)
        same = sum(a == (b or "") for a, b in zip(reference, got, strict=True))
        print(
            f"  batch {batch}: {len(texts) / t:.2f} records/s, {t_loop / t:.1f}x the seed loop, "
            f"identical outputs {same}/{len(texts)}"
        )


if __name__ == "__main__":
    main()
