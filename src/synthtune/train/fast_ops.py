"""Two CPU training-step savings the libraries do not make (measured in bench/peers/sft.py).

**Dropout masks from numpy.** ``torch.nn.functional.dropout`` on the CPU draws its mask with
a scalar Mersenne Twister: 4.7 ms for the [8, 120, 384] input of one LoRA layer on 2 cores,
which made LoRA dropout (peft: one mask per adapted module, 18 per step here) 10 % of a LoRA
step (torch.profiler, the peers' workload). numpy's PCG64 fills the same mask in 0.25 ms and
the whole dropout, forward and backward, takes 1.3 ms. The mask keeps each value with
probability ``1 - p`` (quantised to 1/65,536) and scales kept values by ``1 / (1 - p)``, as
``nn.Dropout`` does; its seed is drawn from torch's generator, so a seeded run draws the
same masks again. Only peft's LoRA dropout is swapped (``use_fast_dropout``), and only on
the CPU.

**Logits only where a label is learned.** A causal LM computes the LM head (hidden x vocab)
and its log-softmax at every position, but the loss reads only the positions whose next
token is learned: prompt tokens (completion-only loss) and padding are dropped by
``ignore_index`` after the work is done. ``learned_positions_loss`` hands the LM head only
those positions' hidden states (a forward pre-hook on the output embeddings, so any
transformers causal LM, wrapped by peft or not) and takes the cross-entropy there: the same
loss value, computed on 26 % fewer rows on the medical SFT workload (replies are 74 % of the
tokens). Liger-Kernel's fused linear cross-entropy does this and more on GPUs; it has no CPU
path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class FastDropout(torch.nn.Module):
    """``nn.Dropout(p)`` with the mask drawn by numpy (module docstring)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.threshold = int(-32768 + round(p * 65536))  # keep int16 values >= threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return torch.nn.functional.dropout(x, self.p, self.training)
        seed = int(torch.randint(0, 2**62, (1,)).item())
        n = x.numel()
        # raw PCG64 words read as uniform int16s: 0.25 ms for this mask, where
        # Generator.integers (range checks) takes 0.45 ms
        words = np.random.PCG64(seed).random_raw((n + 3) // 4)
        values = torch.from_numpy(words.view(np.int16)[:n]).view(x.shape)
        # one float mask holding 0 or 1/(1-p): forward and backward are one multiply each,
        # 1.3 ms against 2.3 ms for where(keep, x * scale, 0) (bench: fwd+bwd, [8, 105, 384])
        mask = values.ge(self.threshold).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_dropout(model: Any) -> int:
    """Swap peft LoRA dropout modules for ``FastDropout`` when the model is on the CPU;
    returns how many were swapped."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in list(dropouts.items()):
            if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                weight = getattr(module, "weight", None)
                if weight is not None and weight.device.type != "cpu":
                    continue
                dropouts[name] = FastDropout(dropout.p)
                swapped += 1
    return swapped


def learned_positions_loss(
    model: Any, head: Any, inputs: dict[str, Any], num_items_in_batch: Any, scaled: bool
) -> tuple[torch.Tensor, Any]:
    """``(loss, outputs)`` of a causal LM whose LM head ``head`` (its output embeddings) runs
    only at the positions whose next token is learned. A head that does not see [batch,
    sequence, hidden] states is left alone and the loss is taken over the full logits.

    The loss equals transformers' ``ForCausalLMLoss``: the sum of token cross-entropies over
    ``num_items_in_batch`` when ``scaled`` (the Trainer's loss normalised over the whole
    accumulated step), else their mean over this batch's learned tokens."""
    labels = inputs["labels"]
    learned = torch.zeros_like(labels, dtype=torch.bool)
    learned[:, :-1] = labels[:, 1:] != -100
    selected = False

    def keep_learned(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        nonlocal selected
        hidden = args[0]
        if hidden.dim() != 3 or hidden.shape[:2] != learned.shape:
            return None
        selected = True
        return (hidden[learned.to(hidden.device)].unsqueeze(0), *args[1:])

    handle = head.register_forward_pre_hook(keep_learned)
    try:
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
    finally:
        handle.remove()
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    if selected:
        logits, targets = logits[0], labels[:, 1:][learned[:, :-1]]
    else:  # the full logits, shifted as the model's own loss does
        logits, targets = logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)
    total = torch.nn.functional.cross_entropy(
        logits.float(), targets.to(logits.device), ignore_index=-100, reduction="sum"
    )
    if scaled and num_items_in_batch is not None:
        divisor = num_items_in_batch
        if isinstance(divisor, torch.Tensor):
            divisor = divisor.to(total.device)
        return total / divisor, outputs
    return total / max(1, int((targets != -100).sum())), outputs
