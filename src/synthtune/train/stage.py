"""Train stage: fine-tune ``train.base`` on ``mix/train``, evaluating on ``mix/val``.

The schedule (epochs, learning rates, warmup, logging, early stopping) is resolved from the
recipe and the data size first (``schedule.py``). Checkpoints go to ``train/checkpoints``; an
interrupted stage resumes from the latest one. The result is ``train/adapter`` (a peft
adapter, or the full model for ``full``) and ``train/metrics.json`` with the resolved
schedule, the log history, parameter groups, the early stop and throughput totals.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.errors import RecipeError, StageError
from synthtune.models import seed_everything
from synthtune.plugins import TASKS
from synthtune.train.data import EDGE_FLAG, LOSS_WEIGHT
from synthtune.train.estimate import utilisation
from synthtune.train.methods import METHODS
from synthtune.train.param_groups import apply_freezing, group_table, param_groups
from synthtune.train.schedule import Schedule, resolve_schedule
from synthtune.train.tasks import TaskSetup, labels_of

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from synthtune.train.trainer import (
        AnnouncedEarlyStopping,
        SynthtuneTrainer,
    )


def device_settings(recipe: Recipe, cuda: bool | None = None) -> dict[str, Any]:
    """Precision and checkpointing per device.

    On CPU: fp32 and no gradient checkpointing. TRL's SFTConfig defaults (bf16, checkpointing)
    made CPU LoRA training ~17x slower on these machines: bf16 matmuls have no fast path on
    AVX2 CPUs, and checkpointing recomputes activations memory does not need to save.
    """
    import torch

    cuda = torch.cuda.is_available() if cuda is None else cuda
    bf16 = cuda and torch.cuda.is_bf16_supported()
    checkpointing = {"auto": cuda, "on": True, "off": False}[recipe.train.gradient_checkpointing]
    return {
        "use_cpu": not cuda,
        "bf16": bf16,
        "fp16": cuda and not bf16,
        "gradient_checkpointing": checkpointing,
    }


def training_arguments(recipe: Recipe, out_dir: str, schedule: Schedule) -> TrainingArguments:
    """TrainingArguments from the recipe and its resolved schedule. When evaluating, the
    early-stopping metric is tracked (``best_metric``); the best checkpoint is restored at the
    end only when early stopping is on, otherwise the last model is kept."""
    from transformers import TrainingArguments

    cfg = recipe.train
    evaluating = schedule.eval_strategy != "no"
    metric = cfg.early_stopping_metric() if evaluating else None
    return TrainingArguments(
        output_dir=out_dir,
        num_train_epochs=schedule.epochs,
        max_steps=schedule.max_steps or -1,
        gradient_accumulation_steps=cfg.gradient_accumulation,
        train_sampling_strategy="group_by_length" if cfg.batching == "grouped" else "random",
        neftune_noise_alpha=cfg.neftune_alpha,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=schedule.lr_adapter,
        weight_decay=cfg.weight_decay,  # the optimizer's groups carry it (param_groups)
        warmup_steps=schedule.warmup_steps,
        lr_scheduler_type=cfg.scheduler,
        max_grad_norm=cfg.max_grad_norm,
        eval_strategy=schedule.eval_strategy,
        # checkpoints follow evaluations (restoring the best needs one per evaluation)
        save_strategy=schedule.eval_strategy if evaluating else "epoch",
        eval_steps=schedule.eval_steps,
        save_steps=schedule.eval_steps or 500,
        logging_steps=schedule.logging_steps,
        load_best_model_at_end=schedule.early_stopping,
        metric_for_best_model=metric,
        greater_is_better=None if metric is None else metric != "eval_loss",
        save_total_limit=2,
        report_to=["mlflow"] if "mlflow" in cfg.log_to else [],
        seed=cfg.seed_for(recipe.seed),
        data_seed=cfg.seed_for(recipe.seed),
        disable_tqdm=True,
        remove_unused_columns=False,
        **device_settings(recipe),
    )


class TrainStage:
    name = "train"
    sections: tuple[str, ...] = ("train",)
    distributed = True  # runs on every process of a torchrun/accelerate launch (DDP)

    def check(self, recipe: Recipe) -> None:
        if recipe.train.method not in METHODS:
            known = ", ".join(METHODS.names())
            raise RecipeError(
                str(recipe.source),
                [f"train.method: unknown method {recipe.train.method!r}; known: {known}"],
            )
        from synthtune.train.methods import check_method

        check_method(recipe)  # e.g. prefix tuning of a BERT classifier: refused here
        if recipe.train.adversarial is not None and not TASKS.get(recipe.train.task).adversarial:
            raise RecipeError(
                str(recipe.source),
                [
                    f"train.adversarial: not supported with train.task {recipe.train.task} "
                    "(FGM/PGD perturb token embeddings); remove it or use a text task"
                ],
            )
        import importlib.util

        for logger, module in (("tensorboard", "tensorboard"), ("mlflow", "mlflow")):
            if logger in recipe.train.log_to and importlib.util.find_spec(module) is None:
                raise StageError(
                    f"train.log_to: {logger} is not installed (pip install {module}), "
                    "or remove it from the list"
                )

    def _print_groups(self, ctx: StageContext, rows: list[dict[str, Any]]) -> None:
        table = Table(title="parameter groups")
        for column in ("group", "parameters", "lr"):
            table.add_column(column)
        for row in rows:
            table.add_row(row["group"], f"{row['parameters']:,}", f"{row['lr']:g}")
        if not ctx.quiet:
            ctx.console.print(table)

    def build_model(
        self, ctx: StageContext, labels: list[str], records: list[Any]
    ) -> tuple[Any, Any, str, list[dict[str, Any]]]:
        """Public hook: ``(model, tokenizer, base path, parameter groups)``, the task's model
        with the method applied and freezing done. Subclasses (federated rounds) extend it."""
        cfg = ctx.recipe.train
        method = METHODS.get(cfg.method)
        base_path = ctx.resolve_model(cfg.base)
        setup = TaskSetup(labels, cfg, ctx.store.root, records, method.load_kwargs(cfg))
        model, tokenizer = TASKS.get(cfg.task).load(base_path, setup)
        model.train()
        model = method.prepare(model, cfg)
        from synthtune.train.fast_ops import use_fast_dropout

        use_fast_dropout(model)  # LoRA dropout masks from numpy on the CPU (fast_ops)
        apply_freezing(model, cfg)
        groups = group_table(model, cfg)
        self._print_groups(ctx, groups)
        return model, tokenizer, base_path, groups

    def callbacks(self, ctx: StageContext) -> list[Any]:
        """Public hook: extra Trainer callbacks (TensorBoard when train.log_to asks)."""
        if "tensorboard" not in ctx.recipe.train.log_to:
            return []
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        writer = SummaryWriter(log_dir=str(ctx.store.path(self.name, "tensorboard")))
        return [TensorBoardCallback(tb_writer=writer)]

    def build_datasets(
        self, ctx: StageContext, tokenizer: Any, train_records: list[Any], ids: dict[str, int]
    ) -> tuple[Any, list[dict[str, Any]]]:
        from synthtune.train.augment import PromptNoiseDataset

        recipe, cfg = ctx.recipe, ctx.recipe.train
        task = TASKS.get(cfg.task)
        if task.prepare is not None:  # e.g. train.lm_format: text
            train_records = task.prepare(train_records, cfg)
        flag_edges = cfg.adversarial is not None and cfg.adversarial.on == "edge_cases"
        if flag_edges and not any("edge_case" in r.lineage for r in train_records):
            ctx.log(
                "[yellow]train.adversarial.on: edge_cases, but mix/train holds no edge-case "
                "record (set generate.edge_cases): no adversarial pass will run[/]"
            )

        weigh = cfg.synthetic_weight != 1.0

        def encode(record: Any) -> dict[str, Any]:
            features = task.encode(tokenizer, record, cfg.max_length, ids)
            if flag_edges:  # carried by the collator to the trainer (train.adversarial.on)
                features[EDGE_FLAG] = "edge_case" in record.lineage
            if weigh:  # likewise: the trainer weighs each example's loss
                features[LOSS_WEIGHT] = (
                    cfg.synthetic_weight if record.source == "synthetic" else 1.0
                )
            return features

        if weigh:
            synthetic = sum(r.source == "synthetic" for r in train_records)
            ctx.log(
                f"train: {synthetic} synthetic of {len(train_records)} records weigh "
                f"{cfg.synthetic_weight:g} in the loss (train.synthetic_weight)"
            )

        train: Any = (
            PromptNoiseDataset(
                train_records,
                encode,
                cfg.augment.noise_prob,
                cfg.augment.token_rate,
                cfg.seed_for(recipe.seed),
                cfg.augment.weights(),
            )
            if task.prompt_noise
            else [encode(r) for r in train_records]
        )
        if isinstance(train, PromptNoiseDataset):
            train.encode_all()
        val = self._val(ctx)
        if task.prepare is not None:
            val = task.prepare(val, cfg)
        return train, [task.encode(tokenizer, r, cfg.max_length, ids) for r in val]

    def _val(self, ctx: StageContext) -> list[Any]:
        """The validation records, or none when ``eval_strategy`` is no."""
        if ctx.recipe.train.eval_strategy == "no":
            return []
        val = ctx.store.read_table("mix", "val")
        if not val:
            raise StageError(
                "train: the val split is empty; give validation data (mix.val_fraction above "
                "0, or a validation file) or set train.eval_strategy: no"
            )
        return val

    def _schedule(self, ctx: StageContext, n_train: int, n_val: int) -> Schedule:
        schedule = resolve_schedule(ctx.recipe.train, n_train, n_val)
        ctx.log(
            f"train: {schedule.total_steps} steps ({schedule.epochs:g} epochs of "
            f"{schedule.steps_per_epoch}), lr adapter {schedule.lr_adapter:g} / base "
            f"{schedule.lr_base:g}, warmup {schedule.warmup_steps} steps, loss logged every "
            f"{schedule.logging_steps} steps, eval {schedule.eval_strategy}"
        )
        for note in schedule.notes:
            ctx.log(f"train: {note}")
        return schedule

    def _trainer(
        self, ctx: StageContext, parts: dict[str, Any], schedule: Schedule, advance: Any
    ) -> tuple[SynthtuneTrainer, AnnouncedEarlyStopping | None]:
        import torch
        from transformers.trainer_callback import PrinterCallback

        from synthtune.train.trainer import (
            AnnouncedEarlyStopping,
            EpochCallback,
            ProgressCallback,
            SynthtuneTrainer,
        )

        recipe, cfg = ctx.recipe, ctx.recipe.train
        task = TASKS.get(cfg.task)
        out_dir = ctx.store.stage_dir(self.name)
        args = training_arguments(recipe, str(out_dir / "checkpoints"), schedule)
        collator_cls = (
            task.packed_collator
            if cfg.batching == "packed" and task.packed_collator is not None
            else task.collator
        )
        collator = collator_cls(
            parts["tokenizer"],
            cfg.augment.noise_prob,
            cfg.augment.token_rate,
            cfg.seed_for(recipe.seed),
        )
        stopper = (
            AnnouncedEarlyStopping(cfg.early_stopping.patience, lambda m: ctx.log(f"train: {m}"))
            if schedule.early_stopping
            else None
        )
        evaluating = schedule.eval_strategy != "no"
        trainer = SynthtuneTrainer(
            model=parts["model"],
            args=args,
            train_dataset=parts["train"],
            eval_dataset=parts["val"] if evaluating else None,
            data_collator=collator,
            optimizers=(torch.optim.AdamW(param_groups(parts["model"], cfg)), None),
            callbacks=[
                *([stopper] if stopper else []),
                ProgressCallback(advance),
                EpochCallback(collator, parts["train"]),
                *self.callbacks(ctx),
            ],
            adversarial=cfg.adversarial,
            learned_logits=task.learned_logits,
            compute_metrics=task.metrics if evaluating else None,
            preprocess_logits_for_metrics=task.preprocess if evaluating else None,
        )
        trainer.remove_callback(PrinterCallback)
        return trainer, stopper

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from transformers.trainer_utils import get_last_checkpoint

        recipe, store, cfg = ctx.recipe, ctx.store, ctx.recipe.train
        seed_everything(cfg.seed_for(recipe.seed))  # head init, dropout
        task = TASKS.get(cfg.task)
        train_records = store.read_table("mix", "train")
        labels = labels_of(train_records) if task.labelled else []
        ids = {label: i for i, label in enumerate(labels)}
        model, tokenizer, base_path, groups = self.build_model(ctx, labels, train_records)
        train, val = self.build_datasets(ctx, tokenizer, train_records, ids)
        schedule = self._schedule(ctx, len(train), len(val))
        parts = {"model": model, "tokenizer": tokenizer, "train": train, "val": val}
        with ctx.progress("train", schedule.total_steps) as advance:
            trainer, stopper = self._trainer(ctx, parts, schedule, advance)
            # every process looks for the checkpoint folder; only the main one creates it
            checkpoints = Path(str(trainer.args.output_dir))
            resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
            if resume:
                ctx.log(f"train: resuming from {resume}")
            trainer.meter.resume_from(resume)
            with frozen_heap():
                trainer.train(resume_from_checkpoint=resume)
        if not trainer.is_world_process_zero():
            return {}
        out_dir = store.stage_dir(self.name)
        model.save_pretrained(out_dir / "adapter")
        tokenizer.save_pretrained(out_dir / "adapter")
        state = trainer.state
        totals = trainer.meter.totals(state.global_step).report()
        if task.token_flops:
            totals.update(utilisation(model, totals["tokens_per_second"]))
        evals = [h["eval_loss"] for h in state.log_history if "eval_loss" in h]
        early_stop = (
            stopper.result()
            if stopper is not None and stopper.step is not None
            else {"stopped": False, "step": None, "reason": schedule.notes[-1]}
        )
        store.write_json(
            self.name,
            "metrics.json",
            {
                "base": cfg.base,
                "base_path": base_path,
                "method": cfg.method,
                "parameter_groups": groups,
                "resolved": schedule.as_dict(),
                "early_stop": early_stop,
                "log_history": state.log_history,
                "best_eval_loss": min(evals) if evals else None,
                "best_metric": {
                    "name": trainer.args.metric_for_best_model,
                    "value": state.best_metric,
                    "step": state.best_global_step,
                },
                "global_step": state.global_step,
                **totals,
                "device": device_settings(recipe),
                "task": cfg.task,
                "labels": labels,
            },
        )
        return {
            "records_in": len(train),
            "records_out": len(train),
            "method": cfg.method,
            "steps": state.global_step,
            "best_eval_loss": min(evals) if evals else None,
            "early_stopped": early_stop["stopped"],
            "trainable_parameters": sum(g["parameters"] for g in groups if g["group"] != "frozen"),
            **{k: totals[k] for k in ("tokens_per_second", "samples_per_second", "train_seconds")},
            **{k: totals[k] for k in ("mfu", "matmul_peak_gflops") if k in totals},
        }


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Move every object alive before training out of the garbage collector's reach for the
    duration (``gc.freeze``): the Trainer's ``gc.collect()`` at the start (accelerate's
    ``free_memory``) and Python's own full collections then scan only what training creates,
    not the ~10^6 objects that torch and transformers leave behind at import (0.3 s per full
    collection here). Garbage present at the freeze is collected after ``gc.unfreeze``. A
    process that froze its heap itself (a forking server) is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
