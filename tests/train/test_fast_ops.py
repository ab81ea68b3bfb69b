"""The CPU step savings keep the step's maths: dropout statistics, the loss and its gradients."""

from pathlib import Path

import pytest
import torch

from synthtune.models import load_causal_lm
from synthtune.train.fast_ops import FastDropout, learned_positions_loss, use_fast_dropout


def test_fast_dropout_keeps_1_minus_p_scales_and_is_seeded() -> None:
    x = torch.ones(200_000, requires_grad=True)
    drop = FastDropout(0.1).train()
    torch.manual_seed(0)
    out = drop(x)
    kept = out != 0
    assert kept.float().mean().item() == pytest.approx(0.9, abs=0.003)
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.9))
    out.sum().backward()  # the gradient is the mask over (1 - p), as nn.Dropout's
    assert x.grad is not None and torch.equal(x.grad, out.detach())
    torch.manual_seed(0)
    assert torch.equal(drop(x), out)  # torch's seed fixes the mask
    assert not torch.equal(drop(x), out)  # and each call draws a new one
    assert torch.equal(drop.eval()(x), x)
    # masks are not correlated with position: neighbours drop independently
    mask = (FastDropout(0.5).train()(torch.ones(100_000)) != 0).float()
    both = (mask[1:] * mask[:-1]).mean().item()
    assert both == pytest.approx(0.25, abs=0.01)
    odd = FastDropout(0.5).train()(torch.ones(3, 7, 5))  # 105 values: not a whole PCG64 word
    assert odd.shape == (3, 7, 5) and set(odd.unique().tolist()) <= {0.0, 2.0}


def _lora(model_dir: Path, dropout: float) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    model, _ = load_causal_lm(str(model_dir), dtype="float32")
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q_proj", "v_proj"]
    )
    return get_peft_model(model, config)


def test_use_fast_dropout_swaps_peft_lora_dropout(tiny_model_dir: Path) -> None:
    model = _lora(tiny_model_dir, 0.1)
    assert use_fast_dropout(model) == 2  # q and v of the one layer
    swapped = [m for m in model.modules() if isinstance(m, FastDropout)]
    assert len(swapped) == 2 and all(m.p == 0.1 for m in swapped)
    assert use_fast_dropout(_lora(tiny_model_dir, 0.0)) == 0  # p 0 is an identity already


def _batch() -> dict[str, torch.Tensor]:
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 0, 0], [11, 12, 13, 14, 15, 16, 17, 18]])
    labels = torch.tensor(
        [[-100, -100, 7, 8, 9, 10, -100, -100], [-100, -100, -100, -100, 15, 16, 17, 18]]
    )
    mask = (torch.arange(8) < torch.tensor([[6], [8]])).long()
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@pytest.mark.parametrize("num_items", [None, 9])
def test_learned_positions_loss_equals_the_models_loss_and_gradients(
    tiny_model_dir: Path, num_items: int | None
) -> None:
    model = _lora(tiny_model_dir, 0.0).train()
    batch = _batch()
    kwargs = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    reference = model(**batch, **kwargs).loss
    reference.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    head = model.get_output_embeddings()
    calls: list[tuple[int, ...]] = []
    handle = head.register_forward_hook(lambda m, a, out: calls.append(tuple(out.shape)))
    items = None if num_items is None else torch.tensor(num_items)
    loss, outputs = learned_positions_loss(model, head, batch, items, scaled=num_items is not None)
    handle.remove()
    # 8 learned next tokens (of 16 positions): the head ran on those rows only
    assert calls == [(1, 8, head.out_features)] and outputs.logits.shape[1] == 8
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    loss.backward()
    for name, grad in expected.items():
        got = dict(model.named_parameters())[name].grad
        assert got is not None and torch.allclose(got, grad, rtol=1e-4, atol=1e-6), name


def test_a_head_that_sees_other_shapes_gets_the_full_loss(tiny_model_dir: Path) -> None:
    model = _lora(tiny_model_dir, 0.0).train()
    batch = _batch()
    reference = model(**batch).loss.item()
    flat = torch.nn.Identity()  # a stand-in head the model never calls: nothing is selected
    loss, outputs = learned_positions_loss(model, flat, batch, None, scaled=False)
    assert outputs.logits.shape[:2] == (2, 8)
    assert loss.item() == pytest.approx(reference, rel=1e-5)
