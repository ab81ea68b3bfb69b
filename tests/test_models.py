from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from synthtune.config import LocalTinyConfig
from synthtune.models import build_local_tiny
from synthtune.perplexity import PerplexityScorer


def test_local_tiny_is_a_normal_hugging_face_folder(tiny_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "llama"
    ids = tokenizer("Patient reports a cough.", return_tensors="pt")
    assert ids["input_ids"][0, 0].item() == tokenizer.bos_token_id
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape[-1] == len(tokenizer)
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat.endswith("<|assistant|>\n")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] <= ids["input_ids"].shape[1] + 3


def test_local_tiny_is_deterministic(tmp_path: Path) -> None:
    texts = [f"line {i} about fever and cough" for i in range(40)]
    cfg = LocalTinyConfig(vocab_size=300, hidden_size=32, layers=1, heads=2, pretrain_epochs=0.5)
    build_local_tiny(tmp_path / "a", texts, texts, cfg, seed=1)
    build_local_tiny(tmp_path / "b", texts, texts, cfg, seed=1)
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "a").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "b").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_batched_perplexity_equals_one_at_a_time(tiny_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["a cough", "Patient 3 reports a temperature of 38.5 °C and a cough.", "fever"]
    batched = PerplexityScorer(model, tokenizer, batch_size=8).score(texts)
    single = [PerplexityScorer(model, tokenizer, batch_size=1).score([t])[0] for t in texts]
    assert batched == [pytest_approx(s) for s in single]
    # in-domain text is more likely than shuffled characters under a trained model
    assert batched[1] < PerplexityScorer(model, tokenizer).score(["zq xv 9k@ !!pp"])[0]


def pytest_approx(value: float):
    import pytest

    return pytest.approx(value, rel=1e-4)
