"""Generation on a loaded model matches the transformers backend, once per variant."""

from pathlib import Path

import torch

from synthtune.config import TransformersBackendConfig, load_recipe
from synthtune.evaluate.generation import generate_replies, measure
from synthtune.evaluate.prompts import EvalPrompt
from synthtune.evaluate.suites import EvalInputs
from synthtune.llm.backends.base import GenerationRequest
from synthtune.llm.backends.transformers import TransformersBackend
from synthtune.models import load_causal_lm
from synthtune.records import Message
from tests.conftest import write_recipe


def _inputs(tmp_path: Path, questions: list[str], references: list[str | None]) -> EvalInputs:
    recipe = load_recipe(
        write_recipe(tmp_path, {"evaluate": {"max_new_tokens": 12, "batch_size": 2}})
    )
    prompts = [
        EvalPrompt(messages=[Message(role="user", content=q)], reference=r)
        for q, r in zip(questions, references, strict=True)
    ]
    return EvalInputs(recipe=recipe, test=[], prompts=prompts, prompt_source="test split")


QUESTIONS = ["Patient 3 has 38.5 °C.", "Patient 12 has 36.5 °C.", "Patient 40 has 39.5 °C."]


def test_replies_match_the_backend_and_are_generated_once(
    chatty_model_dir: Path, tmp_path: Path
) -> None:
    inputs = _inputs(tmp_path, QUESTIONS, [None, None, None])
    model, tokenizer = load_causal_lm(str(chatty_model_dir), device=torch.device("cpu"))
    replies = generate_replies(model, tokenizer, inputs, "base")
    backend = TransformersBackend(
        TransformersBackendConfig(
            type="transformers", max_new_tokens=12, batch_size=1, device="cpu"
        ),
        str(chatty_model_dir),
    )
    one_by_one = backend.generate(
        [GenerationRequest(key=q, messages=[{"role": "user", "content": q}]) for q in QUESTIONS]
    )
    assert replies == [r.text for r in one_by_one]
    assert all(replies) and replies[0].startswith("Rest")  # batched (2) == one by one
    inputs.replies["base"] = ["cached"] * 3
    assert generate_replies(model, tokenizer, inputs, "base") == ["cached"] * 3


def test_scores_compare_replies_with_references_that_exist(
    chatty_model_dir: Path, tmp_path: Path
) -> None:
    inputs = _inputs(tmp_path, QUESTIONS, ["x", None, "y"])
    inputs.replies["tuned"] = ["x", "anything", "z"]  # as if generated
    scores = measure(None, None, inputs, "tuned")
    assert scores["exact_match"] == 0.5  # 2 references, one matched; the None one skipped
