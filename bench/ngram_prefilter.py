"""First-pass n-gram fluency scorer vs the transformer scorer: speed and agreement.

Both are trained on the same in-domain text (the medical-qa example's real headlines, minus a
held-out set): local-tiny pre-trained for a few epochs, and a trigram model. They score the
held-out headlines plus degraded copies (words shuffled or dropped), measured side by side.
Reports texts/s of each, the speed ratio, and Spearman's rank correlation of the scores.

    python bench/ngram_prefilter.py
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path

from scipy.stats import spearmanr

from synthtune.config import LocalTinyConfig
from synthtune.models import build_local_tiny, load_causal_lm
from synthtune.ngram import NGramLM
from synthtune.perplexity import PerplexityScorer

DATA = Path(__file__).resolve().parents[1] / "examples" / "medical-qa" / "data" / "real.jsonl"


def degrade(text: str, rng: random.Random) -> str:
    words = text.split()
    if rng.random() < 0.5:
        rng.shuffle(words)
    else:
        words = [w for w in words if rng.random() > 0.4] or words
    return " ".join(words)


def main() -> None:
    rng = random.Random(0)
    texts = [json.loads(line)["text"] for line in DATA.read_text(encoding="utf-8").splitlines()]
    train, held = texts[:700], texts[700:]
    probe = held + [degrade(t, rng) for t in held]
    folder = Path(tempfile.mkdtemp()) / "tiny"
    cfg = LocalTinyConfig(vocab_size=2048, hidden_size=128, layers=2, heads=4, pretrain_epochs=4)
    build_local_tiny(folder, train, train, cfg, seed=0)
    model, tokenizer = load_causal_lm(str(folder), dtype="float32")
    scorer = PerplexityScorer(model, tokenizer, batch_size=16)
    started = time.perf_counter()
    neural = scorer.score(probe)
    t_neural = time.perf_counter() - started
    started = time.perf_counter()
    lm = NGramLM(order=3).fit(train)
    t_fit = time.perf_counter() - started
    started = time.perf_counter()
    ngram = lm.score(probe)
    t_ngram = time.perf_counter() - started
    rho = spearmanr(neural, ngram).statistic
    n = len(probe)
    print(f"{n} texts ({len(held)} held-out headlines + degraded copies)")
    print(f"transformer (local-tiny, 2 layers): {n / t_neural:,.0f} texts/s")
    print(
        f"trigram: {n / t_ngram:,.0f} texts/s ({t_fit:.2f} s to fit), "
        f"{t_neural / t_ngram:.1f}x faster; Spearman rho with the transformer {rho:.2f}"
    )


if __name__ == "__main__":
    main()
