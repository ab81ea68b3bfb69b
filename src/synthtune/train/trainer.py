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

from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from synthtune.config import AdversarialConfig
from synthtune.train.data import EDGE_FLAG


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


class SynthtuneTrainer(Trainer):
    """Trainer with a clean-eval noisy collator and optional FGM/PGD adversarial steps."""

    def __init__(self, *args: Any, adversarial: AdversarialConfig | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.adversarial = adversarial

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

    def training_step(
        self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        edge = inputs.pop(EDGE_FLAG, None)  # a flag for the trainer, never a model input
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
    """Advance a rich progress bar per optimiser step (instead of tqdm / printed dicts)."""

    def __init__(self, advance: Any) -> None:
        self.advance = advance

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.advance(1)
