"""Train stage: fine-tune ``train.base`` on ``mix/train`` with early stopping on ``mix/val``.

Checkpoints go to ``train/checkpoints``; an interrupted stage resumes from the latest one.
The result is ``train/adapter`` (a peft adapter, or the full model for ``full``) and
``train/metrics.json`` with the log history, parameter groups and throughput.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from rich.table import Table
from transformers import EarlyStoppingCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint

from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.errors import StageError
from synthtune.models import load_causal_lm, seed_everything
from synthtune.train.data import NoisyCollator, encode_record
from synthtune.train.methods import METHODS
from synthtune.train.param_groups import apply_freezing, group_table, param_groups
from synthtune.train.trainer import ProgressCallback, SynthtuneTrainer


def training_arguments(recipe: Recipe, out_dir: str, steps_per_epoch: int) -> TrainingArguments:
    """Settings per device: on CPU no bf16 and no gradient checkpointing (both slow it down)."""
    cfg = recipe.train
    cuda = torch.cuda.is_available()
    total = math.ceil(steps_per_epoch * cfg.epochs)
    strategy = "steps" if cfg.eval_every else "epoch"
    return TrainingArguments(
        output_dir=out_dir,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=cfg.lr.adapter,
        warmup_steps=math.ceil(cfg.warmup_ratio * total),
        lr_scheduler_type="cosine",
        max_grad_norm=cfg.max_grad_norm,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=cfg.eval_every,
        save_steps=cfg.eval_every or 500,
        logging_steps=max(1, steps_per_epoch // 4),
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_total_limit=2,
        report_to=[],
        seed=recipe.seed,
        data_seed=recipe.seed,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        disable_tqdm=True,
        remove_unused_columns=False,
    )


class TrainStage:
    name = "train"
    sections: tuple[str, ...] = ("train",)

    def check(self, recipe: Recipe) -> None:
        METHODS.get(recipe.train.method)

    def _print_groups(self, ctx: StageContext, rows: list[dict[str, Any]]) -> None:
        table = Table(title="parameter groups")
        for column in ("group", "parameters", "lr"):
            table.add_column(column)
        for row in rows:
            table.add_row(row["group"], f"{row['parameters']:,}", f"{row['lr']:g}")
        if not ctx.quiet:
            ctx.console.print(table)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        recipe, store, cfg = ctx.recipe, ctx.store, ctx.recipe.train
        seed_everything(recipe.seed)
        base_path = ctx.resolve_model(cfg.base)
        model, tokenizer = load_causal_lm(base_path, dtype="float32")
        model.train()
        model = METHODS.get(cfg.method)(model, cfg)
        apply_freezing(model, cfg)
        groups = group_table(model, cfg)
        self._print_groups(ctx, groups)
        train = [
            encode_record(tokenizer, r, cfg.max_length) for r in store.read_table("mix", "train")
        ]
        val = [encode_record(tokenizer, r, cfg.max_length) for r in store.read_table("mix", "val")]
        if not val:
            raise StageError("train: the val split is empty; set mix.val_fraction above 0")
        out_dir = store.stage_dir(self.name)
        args = training_arguments(
            recipe, str(out_dir / "checkpoints"), math.ceil(len(train) / cfg.batch_size)
        )
        optimizer = torch.optim.AdamW(param_groups(model, cfg))
        collator = NoisyCollator(
            tokenizer, cfg.augment.noise_prob, cfg.augment.token_rate, recipe.seed
        )
        total_steps = math.ceil(len(train) / cfg.batch_size) * math.ceil(cfg.epochs)
        with ctx.progress("train", total_steps) as advance:
            trainer = SynthtuneTrainer(
                model=model,
                args=args,
                train_dataset=train,
                eval_dataset=val,
                data_collator=collator,
                optimizers=(optimizer, None),
                callbacks=[
                    EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping.patience),
                    ProgressCallback(advance),
                ],
            )
            trainer.remove_callback(PrinterCallback)
            resume = get_last_checkpoint(args.output_dir) if args.output_dir else None
            if resume:
                ctx.log(f"train: resuming from {resume}")
            started = time.perf_counter()
            result = trainer.train(resume_from_checkpoint=resume)
            elapsed = time.perf_counter() - started
        adapter_dir = out_dir / "adapter"
        model.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)
        tokens = sum(len(r["input_ids"]) for r in train) * cfg.epochs
        metrics = {
            "base": cfg.base,
            "base_path": base_path,
            "method": cfg.method,
            "parameter_groups": groups,
            "log_history": trainer.state.log_history,
            "best_eval_loss": trainer.state.best_metric,
            "global_step": trainer.state.global_step,
            "train_loss": result.training_loss,
            "seconds": round(elapsed, 2),
            "tokens_per_second": round(tokens / elapsed, 1) if elapsed else None,
        }
        store.write_json(self.name, "metrics.json", metrics)
        return {
            "records_in": len(train),
            "records_out": len(train),
            "method": cfg.method,
            "steps": trainer.state.global_step,
            "best_eval_loss": trainer.state.best_metric,
            "trainable_parameters": sum(g["parameters"] for g in groups if g["group"] != "frozen"),
        }
