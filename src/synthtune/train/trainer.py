"""A thin ``transformers.Trainer`` subclass and the callbacks the train stage uses.

Adversarial training (FGM, Miyato et al. 2017; PGD, Madry et al. 2018, as used for NLP by
Zhu et al. 2020) perturbs the *output* of the input-embedding layer, so it works when the
embedding weights are frozen (LoRA, prefix...): after the clean backward pass, the embedding
output's gradient gives the direction ``r = epsilon * g / ||g||``; the loss on the perturbed
input is back-propagated too, so each step learns from both.

With ``adversarial.on: edge_cases`` the perturbed loss is computed on the batch's edge-case
examples only (records tagged ``lineage.edge_case`` by generation, flagged per example by the
collator): padded batches keep just those rows; a packed row masks the other examples' labels
and perturbation. A batch without an edge case takes the clean step alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback

from synthtune.config import AdversarialConfig
from synthtune.train.data import EDGE_FLAG, LOSS_WEIGHT


class _EmbeddingHook:
    """Keeps the embedding output (with its gradient) and adds a perturbation when set."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.output: torch.Tensor | None = None
        self.delta: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module: Any, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if not output.requires_grad:  # frozen embeddings: make the output a leaf with a grad
            output = output.detach().requires_grad_(True)
        if self.delta is not None and self.delta.shape == output.shape:
            output = output + self.delta
        output.retain_grad()
        self.output = output
        return output

    def remove(self) -> None:
        self.handle.remove()


def _unit(grad: torch.Tensor) -> torch.Tensor:
    norm = grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return grad / norm


def edge_only(
    inputs: dict[str, Any], edge: torch.Tensor
) -> tuple[dict[str, Any], torch.Tensor | None, torch.Tensor | None]:
    """The batch the adversarial pass sees under ``on: edge_cases``: (inputs, rows, tokens).

    A per-row flag (padded batches) keeps the flagged rows (``rows`` indexes them); a per-token
    flag (one packed row) keeps the row but masks the labels of the other examples' tokens
    (``tokens`` is the mask the perturbation is multiplied by).
    """
    if edge.dim() == 1:
        rows = edge.nonzero().squeeze(-1)
        width = edge.shape[0]
        kept = {
            k: v[rows] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == width else v
            for k, v in inputs.items()
        }
        return kept, rows, None
    labels = inputs["labels"].masked_fill(~edge.to(inputs["labels"].device), -100)
    return {**inputs, "labels": labels}, None, edge


def weighted_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy weighted per example. ``logits`` [B, C] with ``labels`` [B] (a
    classifier), or [B, T, V] with ``labels`` [B, T] (a causal LM: shifted by one, -100
    ignored) and ``weights`` [B] per row or [B, T] per token (a packed row)."""
    import torch.nn.functional as F

    if logits.dim() == 2:
        losses = F.cross_entropy(logits.float(), labels, reduction="none")
        return (losses * weights).sum() / weights.sum().clamp_min(1e-12)
    logits, labels = logits[:, :-1], labels[:, 1:]
    token_weights = (weights[:, 1:] if weights.dim() == 2 else weights[:, None]).expand_as(labels)
    losses = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view_as(labels)
    learned = (labels != -100).float() * token_weights
    return (losses * learned).sum() / learned.sum().clamp_min(1e-12)


class SynthtuneTrainer(Trainer):
    """Trainer with a clean-eval noisy collator and optional FGM/PGD adversarial steps."""

    def __init__(
        self,
        *args: Any,
        adversarial: AdversarialConfig | None = None,
        learned_logits: bool = False,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.adversarial = adversarial
        self.learned_logits = learned_logits  # a causal LM: LM head at learned positions only
        self.meter = TrainMeter()
        self.add_callback(self.meter)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """Length-grouped batching over a dataset that knows its lengths (``lengths()``, as
        ``PromptNoiseDataset``) takes them from it; anything else goes to the Trainer."""
        dataset = self.train_dataset if train_dataset is None else train_dataset
        lengths = getattr(dataset, "lengths", None)
        if self.args.train_sampling_strategy == "group_by_length" and callable(lengths):
            from transformers.trainer_pt_utils import LengthGroupedSampler

            size = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthGroupedSampler(size, lengths=lengths())
        return super()._get_train_sampler(train_dataset)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        collator = self.data_collator
        previous = getattr(collator, "training", None)
        if previous is not None:
            collator.training = False  # type: ignore[union-attr]
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            if previous is not None:
                collator.training = previous  # type: ignore[union-attr]

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """The Trainer's loss, or with per-example weights (``train.synthetic_weight``) the
        weighted mean: sum(w * loss) / sum(w) over examples (classification) or over the
        learned tokens (causal LM), so a weight scales what an example teaches, not the
        step size of a batch that happens to hold many synthetic rows."""
        weights = inputs.get(LOSS_WEIGHT)
        inputs = {k: v for k, v in inputs.items() if k != LOSS_WEIGHT}
        if weights is None:
            head = self._learned_head(model, inputs)
            if head is not None:
                return self._learned_positions_loss(
                    model, head, inputs, return_outputs, num_items_in_batch
                )
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        loss = weighted_loss(logits, labels.to(logits.device), weights.to(logits.device))
        # The Trainer divides a micro-batch's loss by the accumulation steps unless it takes
        # the loss as already normalised by the whole step's token count (then it also
        # multiplies by the processes): undo what it will do to this per-batch mean.
        scaled = getattr(self, "loss_is_scaled_for_ga", None)
        if scaled is None:
            scaled = bool(self.model_accepts_loss_kwargs and num_items_in_batch is not None)
        if scaled:
            loss = loss / getattr(self, "current_gradient_accumulation_steps", 1)
            if self.args.average_tokens_across_devices:
                loss = loss / max(1, self.accelerator.num_processes)
        return (loss, outputs) if return_outputs else loss

    def _learned_head(self, model: Any, inputs: dict[str, Any]) -> Any:
        """The LM head (output embeddings) when this training batch takes it at the learned
        positions only (``learned_logits``; not under label smoothing or a custom loss
        function), else None."""
        labels = inputs.get("labels")
        if not (
            self.learned_logits
            and model.training
            and isinstance(labels, torch.Tensor)
            and labels.dim() == 2
            and self.label_smoother is None
            and self.compute_loss_func is None
        ):
            return None
        return self.accelerator.unwrap_model(model).get_output_embeddings()

    def _learned_positions_loss(
        self, model: Any, head: Any, inputs: dict[str, Any], return_outputs: bool, num_items: Any
    ) -> Any:
        """The model's own causal-LM loss, with the LM head run only where a label is learned
        (``fast_ops.learned_positions_loss``), scaled as ``Trainer.compute_loss`` scales it."""
        from synthtune.train.fast_ops import learned_positions_loss

        scaled = bool(self.model_accepts_loss_kwargs and num_items is not None)
        loss, outputs = learned_positions_loss(model, head, inputs, num_items, scaled)
        if scaled and self.args.average_tokens_across_devices:
            loss = loss * max(1, self.accelerator.num_processes)
        return (loss, outputs) if return_outputs else loss

    def training_step(
        self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        edge = inputs.pop(EDGE_FLAG, None)  # a flag for the trainer, never a model input
        loss = self._step(model, inputs, num_items_in_batch, edge)
        self.meter.add(loss, inputs)
        return loss

    def _step(
        self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any, edge: Any
    ) -> torch.Tensor:
        if self.adversarial is None:
            return super().training_step(model, inputs, num_items_in_batch)
        if self.adversarial.on == "all":
            edge = None
        elif edge is None or not bool(edge.any()):
            return super().training_step(model, inputs, num_items_in_batch)
        hook = _EmbeddingHook(model.get_input_embeddings())
        try:
            clean = super().training_step(model, inputs, num_items_in_batch)
            adv = self._adversarial_step(model, inputs, hook, num_items_in_batch, edge)
        finally:
            hook.remove()
        return (clean + adv) / 2

    def _adversarial_step(
        self,
        model: Any,
        inputs: dict[str, Any],
        hook: _EmbeddingHook,
        num_items: Any,
        edge: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One FGM step or ``steps`` PGD steps from the clean pass's embedding gradient; on
        the edge-case examples only when ``edge`` flags them (the loss is then their mean)."""
        cfg = self.adversarial
        assert cfg is not None
        if hook.output is None or hook.output.grad is None:
            return torch.zeros((), device=self.args.device)
        grad = hook.output.grad.detach()
        tokens: torch.Tensor | None = None
        if edge is not None:
            inputs, rows, tokens = edge_only(inputs, edge)
            if rows is not None:
                grad = grad[rows.to(grad.device)]
            num_items = None  # the whole batch's token count would dilute the edge rows' loss

        def keep(direction: torch.Tensor) -> torch.Tensor:
            if tokens is None:
                return direction
            return direction * tokens.to(direction.device).unsqueeze(-1)

        step = cfg.epsilon if cfg.method == "fgm" else cfg.alpha
        delta = keep(step * _unit(grad))
        steps = 1 if cfg.method == "fgm" else cfg.steps
        for k in range(steps):
            hook.delta = delta
            with self.compute_loss_context_manager():
                result = self.compute_loss(
                    model, self._prepare_inputs(inputs), num_items_in_batch=num_items
                )
            loss = result[0] if isinstance(result, tuple) else result
            if k == steps - 1:  # only the final perturbed loss trains the model
                self.accelerator.backward(loss / self.args.gradient_accumulation_steps)
                break
            grad = torch.autograd.grad(loss, hook.output, retain_graph=False)[0]
            delta = keep(delta + cfg.alpha * _unit(grad.detach()))
            norm = delta.norm(dim=-1, keepdim=True)
            delta = delta * torch.clamp(cfg.epsilon / norm.clamp_min(1e-12), max=1.0)
        hook.delta = None
        return loss.detach() / self.args.gradient_accumulation_steps


class EpochCallback(TrainerCallback):
    """Tells the collator and the dataset which epoch it is (their noise is keyed by it)."""

    def __init__(self, *targets: Any) -> None:
        self.targets = targets

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for target in self.targets:
            if hasattr(target, "epoch"):
                target.epoch = int(state.epoch or 0)


class ProgressCallback(TrainerCallback):
    """Advance the stage's progress per optimiser step (instead of tqdm / printed dicts);
    a resumed run starts at its checkpoint's step; the last logged loss is the note."""

    def __init__(self, advance: Any) -> None:
        self.advance = advance

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step:
            self.advance(state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.advance(1)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if logs and "loss" in logs and hasattr(self.advance, "note"):
            self.advance.note(f"loss {logs['loss']:.4f}")


# Written into every checkpoint folder: what the run did up to that checkpoint, so a resumed
# run reports totals over all its parts (the Trainer's own numbers cover the last part only).
TOTALS_FILE = "synthtune_totals.json"


@dataclass
class RunTotals:
    """Training totals: ``train_seconds`` counts optimizer steps only (never evaluation or
    checkpoint saving); ``loss_sum`` is the sum of the per-step losses the Trainer averages
    into ``train_loss``; ``parts`` counts the runs (1 + resumes) that produced them."""

    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    tokens: int = 0
    loss_sum: float = 0.0
    steps: int = 0
    parts: int = 0
    samples: int = 0

    def report(self) -> dict[str, Any]:
        seconds = self.train_seconds
        return {
            "train_loss": self.loss_sum / self.steps if self.steps else None,
            "seconds": round(self.wall_seconds, 2),
            "train_seconds": round(self.train_seconds, 2),
            "tokens": self.tokens,
            "samples": self.samples,
            "tokens_per_second": round(self.tokens / seconds, 1) if seconds else None,
            "samples_per_second": round(self.samples / seconds, 2) if seconds else None,
            "parts": self.parts,
        }


def examples_in(inputs: dict[str, Any]) -> Any:
    """Examples in a batch: its rows, or for one packed row the sequences in it (each starts
    at position 0)."""
    positions = inputs.get("position_ids")
    ids = inputs.get("input_ids")
    if positions is not None and ids is not None and ids.shape[0] == 1:
        return (positions == 0).sum()
    rows = ids if ids is not None else inputs.get("pixel_values")
    return rows.shape[0] if rows is not None else 0


class TrainMeter(TrainerCallback):
    """Times optimizer steps (``on_step_begin`` to ``on_step_end``: forward, backward and the
    optimizer; evaluation and saving run after ``on_step_end``), counts the real (unpadded)
    tokens and sums the step losses; saves the running totals with each checkpoint."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.prior = RunTotals()
        self.started = clock()
        self.seconds = 0.0
        self._began: float | None = None
        self._tokens: Any = 0
        self._samples: Any = 0
        self._loss: Any = 0.0
        self._reduced_tokens = 0.0  # summed over processes (DDP), see _gather
        self._reduced_samples = 0.0
        self._reduced_loss = 0.0

    def resume_from(self, checkpoint: str | None) -> None:
        """Start from the totals saved with ``checkpoint`` (none: a fresh run)."""
        path = Path(checkpoint) / TOTALS_FILE if checkpoint else None
        if path is not None and path.is_file():
            self.prior = RunTotals(**json.loads(path.read_text(encoding="utf-8")))
        self.started = self.clock()

    def add(self, loss: torch.Tensor, inputs: dict[str, Any]) -> None:
        # kept as tensors: no device sync per step, only when totals are read
        mask = inputs.get("attention_mask")
        ids = inputs.get("input_ids")
        tokens = mask.sum() if mask is not None else ids.numel() if ids is not None else 0
        self._tokens = self._tokens + tokens
        self._samples = self._samples + examples_in(inputs)
        self._loss = self._loss + loss.detach()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._began = self.clock()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._began is not None:
            self.seconds += self.clock() - self._began
            self._began = None
        self._gather()

    def _gather(self) -> None:
        """Under DDP each process counts its own batches: sum the tokens and average the loss
        over the processes once per optimizer step (every process reaches on_step_end), so
        process 0's totals cover the whole run."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        pending = torch.stack(
            [
                torch.as_tensor(value, dtype=torch.float64).reshape(())
                for value in (self._tokens, self._loss, self._samples)
            ]
        )
        dist.all_reduce(pending)
        self._reduced_tokens += float(pending[0])
        self._reduced_loss += float(pending[1]) / dist.get_world_size()
        self._reduced_samples += float(pending[2])
        self._tokens, self._loss, self._samples = 0, 0.0, 0

    def totals(self, global_step: int) -> RunTotals:
        """Totals over every part, up to ``global_step``."""
        return RunTotals(
            train_seconds=self.prior.train_seconds + self.seconds,
            wall_seconds=self.prior.wall_seconds + self.clock() - self.started,
            tokens=self.prior.tokens + int(self._reduced_tokens + float(self._tokens)),
            loss_sum=self.prior.loss_sum + self._reduced_loss + float(self._loss),
            steps=global_step,
            parts=self.prior.parts + 1,
            samples=self.prior.samples + int(self._reduced_samples + float(self._samples)),
        )

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            totals = asdict(self.totals(state.global_step))
            (folder / TOTALS_FILE).write_text(json.dumps(totals), encoding="utf-8")


class AnnouncedEarlyStopping(EarlyStoppingCallback):
    """Early stopping that says so: when it stops training, ``announce`` gets the reason
    (metric, patience, step, the best value and its step) and ``result()`` records it."""

    def __init__(self, patience: int, announce: Callable[[str], None]) -> None:
        super().__init__(early_stopping_patience=patience)
        self.announce = announce
        self.step: int | None = None
        self.reason = ""

    # the parent's signature (``metrics`` positional) already differs from TrainerCallback's
    def on_evaluate(  # type: ignore[override]
        self, args: Any, state: Any, control: Any, metrics: Any, **kwargs: Any
    ) -> None:
        super().on_evaluate(args, state, control, metrics, **kwargs)
        # at the last step the run ends anyway: that is no early stop
        last = state.max_steps and state.global_step >= state.max_steps
        if control.should_training_stop and self.step is None and not last:
            self.step = state.global_step
            best = "none" if state.best_metric is None else f"{state.best_metric:.4g}"
            self.reason = (
                f"early stop at step {state.global_step}: {args.metric_for_best_model} did not "
                f"improve for {self.early_stopping_patience} evaluations (patience); best "
                f"{best} at step {state.best_global_step}, restored"
            )
            self.announce(self.reason)

    def result(self) -> dict[str, Any]:
        return {"stopped": self.step is not None, "step": self.step, "reason": self.reason}
