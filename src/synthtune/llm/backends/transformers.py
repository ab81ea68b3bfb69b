"""The ``transformers`` backend: batched generation with a local or hub causal LM.

Prompts are sorted by length and generated in batches with left padding (decoder-only
models continue from the right edge), which is what makes batching pay on CPU: similar
lengths waste little compute on padding. Results are returned in the caller's order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synthtune import plugins
from synthtune.config import TransformersBackendConfig
from synthtune.llm.backends.base import GenerationRequest, GenerationResult
from synthtune.models import load_causal_lm, pick_device


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """Chat template when the tokenizer has one; a plain role-tagged layout otherwise."""
    if getattr(tokenizer, "chat_template", None):
        return str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
    turns = [m["content"] for m in messages]
    return "\n".join(turns) + "\n"


def cut_at_stop(text: str, stops: list[str] | None) -> str:
    """The reply up to the first stop string (generation halts on it but keeps it)."""
    for stop in stops or []:
        at = text.find(stop)
        if at >= 0:
            text = text[:at]
    return text.strip()


class TransformersBackend:
    name = "transformers"

    def __init__(self, config: TransformersBackendConfig, path: str) -> None:
        device = pick_device(config.device)
        lm, tokenizer = load_causal_lm(path, device=device, dtype=config.dtype)
        self._attach(config, lm, tokenizer, device)

    def _attach(
        self, config: TransformersBackendConfig, lm: Any, tokenizer: Any, device: Any
    ) -> None:
        """Use ``lm`` (already loaded, on ``device``) to generate with ``config``."""
        self.config = config
        self.model = config.model
        self.device = device
        self.lm, self.tokenizer = lm, tokenizer
        self.tokenizer.padding_side = "left"
        self.kv_cache = config.kv_cache
        self.static_error: str | None = None  # why static was given up, if it was

    def _generate_batch(self, prompts: list[str]) -> list[tuple[str, int, int]]:
        # Only ids and mask go to generate(): some tokenizers (BERT-style vocabularies reused
        # for a decoder) also return token_type_ids, which a causal LM's generate() rejects.
        import torch

        enc = self.tokenizer(
            prompts, return_tensors="pt", padding=True, return_token_type_ids=False
        ).to(self.device)
        sampling = self.config.temperature > 0
        stops = (
            {"stop_strings": self.config.stop, "tokenizer": self.tokenizer}
            if self.config.stop
            else {}
        )
        settings = {
            **enc,
            **stops,
            "max_new_tokens": self.config.max_new_tokens,
            "do_sample": sampling,
            "temperature": self.config.temperature if sampling else None,
            "top_p": self.config.top_p if sampling else None,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        with torch.inference_mode():
            if self.kv_cache == "static":
                try:
                    # disable_compile: with a static cache on CUDA, transformers would
                    # torch.compile the model on the first batch and again whenever the
                    # cache grows (seconds each; measured 16 s vs 0.3 s on an H100)
                    out = self.lm.generate(
                        **settings, cache_implementation="static", disable_compile=True
                    )
                except Exception as exc:  # an architecture whose static cache fails
                    out = self.lm.generate(**settings, cache_implementation="dynamic")
                    # dynamic worked, so static was the problem: keep dynamic from now on
                    self.kv_cache = "dynamic"
                    self.static_error = repr(exc)
            else:
                out = self.lm.generate(**settings, cache_implementation="dynamic")
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        results = []
        eos = self.tokenizer.eos_token_id
        for row, mask in zip(new, enc["attention_mask"], strict=True):
            # generate() pads rows that finished early; everything from EOS on is not reply
            keep = row[: row.index(eos)] if eos in row else row
            text = cut_at_stop(
                self.tokenizer.decode(keep, skip_special_tokens=True), self.config.stop
            )
            results.append((text, int(mask.sum()), len(keep)))
        return results

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        prompts = [render_chat(self.tokenizer, r.messages) for r in requests]
        lengths = [len(self.tokenizer(p)["input_ids"]) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        results: list[GenerationResult | None] = [None] * len(prompts)
        size = self.config.batch_size
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            for i, (text, n_in, n_out) in zip(
                chunk, self._generate_batch([prompts[i] for i in chunk]), strict=True
            ):
                results[i] = (
                    GenerationResult(text=text, tokens_in=n_in, tokens_out=n_out)
                    if text
                    else GenerationResult(text=None, error="empty reply", tokens_in=n_in)
                )
        return [r for r in results if r is not None]


def _create(config: Any, resolve_model: Callable[[str], str]) -> TransformersBackend:
    return TransformersBackend(config, resolve_model(config.model))


plugins.register_backend("transformers", _create, config=TransformersBackendConfig)
