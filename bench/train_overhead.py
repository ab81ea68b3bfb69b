"""Our training step vs a bare PyTorch loop: same model, LoRA, batches, optimizer groups.

Goal (issue 6): overhead <= 15 %. Both run the same number of optimizer steps on the same
padded batches (fp32, CPU, max_grad_norm 1.0, AdamW with our parameter groups); the Trainer
side is the train stage's SynthtuneTrainer with its collator and callbacks, no evaluation or
checkpointing inside the timed window.

    python bench/train_overhead.py [--steps 40]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainingArguments
from transformers.trainer_callback import PrinterCallback

from synthtune.config import LocalTinyConfig, TrainConfig
from synthtune.models import build_local_tiny, load_causal_lm
from synthtune.train.data import NoisyCollator
from synthtune.train.methods import METHODS
from synthtune.train.param_groups import apply_freezing, param_groups
from synthtune.train.trainer import SynthtuneTrainer


def model_and_data(folder: Path, n: int, length: int):  # type: ignore[no-untyped-def]
    rng = random.Random(0)
    words = [
        "patient",
        "fever",
        "cough",
        "rest",
        "fluids",
        "doctor",
        "temperature",
        "pain",
        "advice",
    ]
    texts = [" ".join(rng.choices(words, k=length)) for _ in range(n)]
    cfg = LocalTinyConfig(vocab_size=4000, hidden_size=512, layers=6, heads=8, pretrain_epochs=0)
    build_local_tiny(folder, texts, [], cfg, seed=0)
    model, tokenizer = load_causal_lm(str(folder), dtype="float32")
    rows = [tokenizer(t, truncation=True, max_length=length) for t in texts]
    data = [{"input_ids": r["input_ids"], "labels": list(r["input_ids"])} for r in rows]
    return model, tokenizer, data


def prepared(model, train_cfg, tokenizer, data):  # type: ignore[no-untyped-def]
    """LoRA-wrapped model, warmed up by one untimed forward/backward (first-call costs)."""
    model.train()
    model = METHODS.get("lora").prepare(model, train_cfg)
    apply_freezing(model, train_cfg)
    model(**NoisyCollator(tokenizer, 0.0, 0.0, 0)(data[:8])).loss.backward()
    model.zero_grad(set_to_none=True)
    return model


def bare_loop(model, tokenizer, data, steps: int, batch: int, cfg) -> float:  # type: ignore[no-untyped-def]
    collator = NoisyCollator(tokenizer, 0.0, 0.0, 0)
    optimizer = torch.optim.AdamW(param_groups(model, cfg))
    batches = [collator(data[i : i + batch]) for i in range(0, steps * batch, batch)]
    started = time.perf_counter()
    for inputs in batches:
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def trainer_loop(model, tokenizer, data, steps: int, batch: int, cfg) -> float:  # type: ignore[no-untyped-def]
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=cfg.learning_rates()[0],
        max_grad_norm=1.0,
        logging_steps=10_000,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_drop_last=True,
        lr_scheduler_type="constant",
    )
    trainer = SynthtuneTrainer(
        model=model,
        args=args,
        train_dataset=data[: steps * batch],
        data_collator=NoisyCollator(tokenizer, 0.0, 0.0, 0),
        optimizers=(torch.optim.AdamW(param_groups(model, cfg)), None),
    )
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    args = parser.parse_args()
    cfg = TrainConfig()
    folder = Path(tempfile.mkdtemp()) / "m"
    model, tokenizer, data = model_and_data(folder, args.steps * args.batch, args.length)
    torch.manual_seed(0)
    t_bare = bare_loop(
        prepared(model, cfg, tokenizer, data), tokenizer, data, args.steps, args.batch, cfg
    )
    model, tokenizer = load_causal_lm(str(folder), dtype="float32")
    torch.manual_seed(0)
    t_ours = trainer_loop(
        prepared(model, cfg, tokenizer, data), tokenizer, data, args.steps, args.batch, cfg
    )
    print(f"{args.steps} steps of batch {args.batch} x {args.length} tokens, LoRA on 19M Llama")
    print(
        f"bare loop {t_bare:.2f} s, SynthtuneTrainer {t_ours:.2f} s: overhead "
        f"{100 * (t_ours / t_bare - 1):+.1f} % (goal <= 15 %)"
    )


if __name__ == "__main__":
    main()
