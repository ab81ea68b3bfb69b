"""Generation suite: each model answers the evaluation prompts (greedy, batched, with the
transformers backend's batching and EOS handling) and the replies are scored against the
references: exact match, ROUGE-L F1 (``rouge-score``), chrF and BLEU (``sacrebleu``).

Scales: exact match and ROUGE-L are fractions in [0, 1]; chrF and BLEU are sacrebleu's
corpus scores in [0, 100].
"""

from __future__ import annotations

import re
from typing import Any

from synthtune import plugins
from synthtune.config import TransformersBackendConfig
from synthtune.evaluate.suites import Columns, EvalInputs, Suite
from synthtune.llm.backends.base import GenerationRequest
from synthtune.llm.backends.transformers import TransformersBackend

SHOWN_SAMPLES = 5


class LoadedModelBackend(TransformersBackend):
    """The transformers backend around a model already in memory (base, base + adapter,
    quantized), so evaluation generates exactly the way the generate stage does."""

    def __init__(self, lm: Any, tokenizer: Any, config: TransformersBackendConfig) -> None:
        self._attach(config, lm, tokenizer, next(lm.parameters()).device)


def generate_replies(model: Any, tokenizer: Any, inputs: EvalInputs, variant: str) -> list[str]:
    """Greedy replies of ``variant`` to ``inputs.prompts``, generated once and cached."""
    if variant not in inputs.replies:
        cfg = inputs.recipe.evaluate
        backend = LoadedModelBackend(
            model,
            tokenizer,
            TransformersBackendConfig(
                type="transformers",
                model=variant,
                max_new_tokens=cfg.max_new_tokens,
                temperature=0.0,
                batch_size=cfg.batch_size,
            ),
        )
        requests = [
            GenerationRequest(key=str(i), messages=[m.model_dump() for m in p.messages])
            for i, p in enumerate(inputs.prompts)
        ]
        inputs.replies[variant] = [r.text or "" for r in backend.generate(requests)]
    return inputs.replies[variant]


def normalize(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation: the exact-match comparison."""
    return re.sub(r"\s+", " ", text.lower()).strip(" .!?,;:")


def text_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Exact match and mean ROUGE-L F1 in [0, 1]; corpus chrF and BLEU in [0, 100]."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if not predictions:
        return {"exact_match": 0.0, "rouge_l": 0.0, "chrf": 0.0, "bleu": 0.0}
    pairs = list(zip(predictions, references, strict=True))
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in pairs]
    return {
        "exact_match": round(sum(normalize(p) == normalize(r) for p, r in pairs) / len(pairs), 4),
        "rouge_l": round(sum(rouge) / len(rouge), 4),
        "chrf": round(sacrebleu.corpus_chrf(predictions, [references]).score, 2),
        "bleu": round(sacrebleu.corpus_bleu(predictions, [references]).score, 2),
    }


def measure(model: Any, tokenizer: Any, inputs: EvalInputs, variant: str) -> dict[str, Any]:
    replies = generate_replies(model, tokenizer, inputs, variant)
    scored = [(r, p.reference) for r, p in zip(replies, inputs.prompts, strict=True)]
    with_ref = [(r, ref) for r, ref in scored if ref is not None]
    return text_metrics([r for r, _ in with_ref], [ref for _, ref in with_ref])


def summarize(columns: Columns, inputs: EvalInputs) -> dict[str, Any]:
    samples = [
        {
            "prompt": p.messages[-1].content,
            "reference": p.reference,
            **{name: inputs.replies[name][i] for name in columns},
        }
        for i, p in enumerate(inputs.prompts[:SHOWN_SAMPLES])
    ]
    return {
        "n": sum(p.reference is not None for p in inputs.prompts),
        "prompts": inputs.prompt_source,
        **columns,
        "samples": samples,
    }


plugins.register_suite("generation", Suite(task="causal", measure=measure, summarize=summarize))
