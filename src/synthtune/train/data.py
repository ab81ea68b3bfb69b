"""Tokenise records for causal-LM training and collate them with on-the-fly noise.

Records with a prompt are rendered with the tokenizer's chat template and the prompt tokens
are masked (-100) so only the reply is learned (completion-only loss); plain-text records
(one assistant message, e.g. real documents) are learned as plain language-model text.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING, Any

from synthtune.records import Message, Record

if TYPE_CHECKING:
    import torch


# Per-example flag the train stage adds for `train.adversarial.on: edge_cases` (1 = the record
# is tagged lineage.edge_case); the collators carry it to the trainer, never to the model.
EDGE_FLAG = "edge_case"


def edge_flags(features: list[dict[str, Any]]) -> list[bool] | None:
    """The edge-case flag of each example, or None when the features carry none."""
    if not features or EDGE_FLAG not in features[0]:
        return None
    return [bool(f[EDGE_FLAG]) for f in features]


# Per-example loss weight the train stage adds when `train.synthetic_weight` is not 1
# (synthetic records get it, real ones 1.0); carried like the edge flag, never a model input.
LOSS_WEIGHT = "loss_weight"


def loss_weights(features: list[dict[str, Any]]) -> list[float] | None:
    """The loss weight of each example, or None when the features carry none."""
    if not features or LOSS_WEIGHT not in features[0]:
        return None
    return [float(f[LOSS_WEIGHT]) for f in features]


def as_plain_text(record: Record) -> Record:
    """The record as its reply alone, learned as plain text (``train.lm_format: text``)."""
    messages = record.payload.messages
    if len(messages) == 1 and messages[0].role == "assistant":
        return record
    reply = record.payload.text("response")
    message = Message(role="assistant", content=reply)
    payload = record.payload.model_copy(update={"messages": [message]})
    return record.model_copy(update={"payload": payload})


def _encode(tokenizer: Any, text: str) -> list[int]:
    bos = tokenizer.bos_token
    add_special = not (bos and text.startswith(bos))
    ids: list[int] = tokenizer(text, add_special_tokens=add_special)["input_ids"]
    return ids


def encode_record(tokenizer: Any, record: Record, max_length: int) -> dict[str, list[int]]:
    messages = [m.model_dump() for m in record.payload.messages]
    eos = tokenizer.eos_token or ""
    if len(messages) == 1 and messages[0]["role"] == "assistant":
        ids = _encode(tokenizer, messages[0]["content"] + eos)
        labels = list(ids)
    else:
        prompt = tokenizer.apply_chat_template(
            messages[:-1], tokenize=False, add_generation_prompt=True
        )
        # End the sequence at the reply's EOS: what templates put after it (a newline) is not
        # something the model should learn to emit.
        full = tokenizer.apply_chat_template(messages, tokenize=False).rstrip()
        prompt_ids = _encode(tokenizer, prompt)
        ids = _encode(tokenizer, full)
        if not full.endswith(eos):
            ids.append(tokenizer.eos_token_id)
        labels = [-100] * len(prompt_ids) + ids[len(prompt_ids) :]
    ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels}


class NoisyCollator:
    """Pads a batch; with probability ``noise_prob`` per plain-text example, perturbs input
    tokens (examples with a masked prompt get text-level noise in ``augment`` instead).

    Perturbation (random replacement or a swap with the neighbour) touches ``input_ids`` only:
    ``labels`` keep the clean tokens, so the model learns to predict clean text from noisy
    context and the targets are never corrupted. Special tokens are left alone.

    The noise of an example depends only on (seed, epoch, the example's tokens), never on how
    many batches came before: a run resumed mid-epoch draws exactly the noise an uninterrupted
    run would. ``epoch`` is set by the trainer's callback at each epoch start.
    """

    def __init__(self, tokenizer: Any, noise_prob: float, token_rate: float, seed: int):
        self.pad_id = tokenizer.pad_token_id
        self.vocab_size = len(tokenizer)
        self.special = set(tokenizer.all_special_ids)
        self.noise_prob = noise_prob
        self.token_rate = token_rate
        self.seed = seed
        self.epoch = 0
        self.training = True

    def _rng(self, ids: list[int]) -> random.Random:
        digest = hashlib.sha256(f"{self.seed}:{self.epoch}:{ids}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def _perturb(self, ids: list[int], rng: random.Random) -> list[int]:
        ids = list(ids)
        positions = [i for i, t in enumerate(ids) if t not in self.special]
        for i in rng.sample(positions, int(len(positions) * self.token_rate)):
            if rng.random() < 0.5 and i + 1 < len(ids) and ids[i + 1] not in self.special:
                ids[i], ids[i + 1] = ids[i + 1], ids[i]
            else:
                ids[i] = rng.randrange(self.vocab_size)
                while ids[i] in self.special:
                    ids[i] = rng.randrange(self.vocab_size)
        return ids

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        batch_ids, batch_labels, batch_mask = [], [], []
        for f in features:
            ids = f["input_ids"]
            # token-level noise for plain text only: prompts were perturbed as text already
            plain = -100 not in f["labels"]
            if self.training and self.noise_prob and plain:
                rng = self._rng(ids)
                if rng.random() < self.noise_prob:
                    ids = self._perturb(ids, rng)
            pad = width - len(ids)
            batch_ids.append(ids + [self.pad_id] * pad)
            batch_labels.append(list(f["labels"]) + [-100] * pad)
            batch_mask.append([1] * len(ids) + [0] * pad)
        batch = {
            "input_ids": torch.tensor(batch_ids),
            "labels": torch.tensor(batch_labels),
            "attention_mask": torch.tensor(batch_mask),
        }
        flags = edge_flags(features)
        if flags is not None:  # one flag per row
            batch[EDGE_FLAG] = torch.tensor(flags, dtype=torch.bool)
        weights = loss_weights(features)
        if weights is not None:  # one weight per row
            batch[LOSS_WEIGHT] = torch.tensor(weights, dtype=torch.float32)
        return batch


class PackedCollator(NoisyCollator):
    """Padding-free packing: a batch becomes one row of all its examples, back to back.

    ``position_ids`` restart at 0 for every example, which is how transformers (sdpa and
    eager attention, no KV cache) builds a block-diagonal causal mask: no token attends across
    an example boundary, and no pad token is computed. The first label of every example is
    masked, so no example learns to predict its neighbour's start. Noise as in the parent.
    """

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        import torch

        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for f in features:
            example = f["input_ids"]
            if self.training and self.noise_prob and -100 not in f["labels"]:
                rng = self._rng(example)
                if rng.random() < self.noise_prob:
                    example = self._perturb(example, rng)
            ids.extend(example)
            labels.extend([-100, *list(f["labels"])[1:]])
            positions.extend(range(len(example)))
        batch: dict[str, torch.Tensor] = {
            "input_ids": torch.tensor([ids]),
            "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([positions]),
            "use_cache": False,  # type: ignore[dict-item]
        }
        flags = edge_flags(features)
        if flags is not None:  # one row holds every example: one flag per token
            per_token = [
                flag for f, flag in zip(features, flags, strict=True) for _ in f["input_ids"]
            ]
            batch[EDGE_FLAG] = torch.tensor([per_token], dtype=torch.bool)
        weights = loss_weights(features)
        if weights is not None:  # one row holds every example: one weight per token
            tokens = [w for f, w in zip(features, weights, strict=True) for _ in f["input_ids"]]
            batch[LOSS_WEIGHT] = torch.tensor([tokens], dtype=torch.float32)
        return batch
