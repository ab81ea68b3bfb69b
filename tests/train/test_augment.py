import random

import pytest
import torch
from pydantic import ValidationError

from synthtune import synonyms
from synthtune.config import format_validation_error
from synthtune.config.training import AugmentConfig
from synthtune.records import Message, Payload, Record
from synthtune.train import augment
from synthtune.train.augment import PromptNoiseDataset, match_case, perturb_text


def test_perturbation_is_cjk_aware_and_keeps_numbers() -> None:
    rng = random.Random(0)
    zh = "患者主诉持续发热三天伴有咳嗽"
    noisy = perturb_text(zh, rng, 0.3)
    assert noisy != zh and len(noisy) >= len(zh) - 5
    assert all("\u4e00" <= c <= "\u9fff" for c in noisy)  # whole characters, never byte pieces
    en = "Patient: 45-year-old male with a cough. Temperature 37.8 °C. What should he do?"
    for seed in range(20):
        out = perturb_text(en, random.Random(seed), 0.3)
        assert "37.8" in out and "45" in out  # facts the reply depends on are untouched


def _record(prompt: str, reply: str) -> Record:
    return Record.create(
        "synthetic",
        Payload(
            messages=[
                Message(role="system", content="Be brief."),
                Message(role="user", content=prompt),
                Message(role="assistant", content=reply),
            ]
        ),
    )


def test_dataset_noise_is_keyed_by_epoch_and_never_touches_replies() -> None:
    records = [
        _record(f"patient {i} has a long dry cough and feels tired", "Rest.") for i in range(20)
    ]
    seen: list[Record] = []

    def encode(record: Record) -> dict:
        seen.append(record)
        return {
            "prompt": record.payload.messages[1].content,
            "reply": record.payload.messages[-1].content,
            "system": record.payload.messages[0].content,
        }

    data = PromptNoiseDataset(records, encode, noise_prob=0.5, rate=0.3, seed=1)
    first = [data[i] for i in range(20)]
    assert all(x["reply"] == "Rest." and x["system"] == "Be brief." for x in first)
    changed = sum(
        x["prompt"] != r.payload.messages[1].content for x, r in zip(first, records, strict=True)
    )
    assert 4 <= changed <= 16  # about half the examples
    assert [data[i] for i in range(20)] == first  # same epoch: same noise (resume-safe)
    data.epoch = 1
    assert [data[i] for i in range(20)] != first  # a new epoch draws new noise


def test_lengths_are_the_clean_encodings_and_grouped_batching_reads_them() -> None:
    from transformers import TrainingArguments
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from synthtune.train.trainer import SynthtuneTrainer

    records = [_record("word " * (i % 7 + 1), "Rest.") for i in range(30)]
    noisy_reads = 0

    def encode(record: Record) -> dict:
        nonlocal noisy_reads
        prompt = record.payload.messages[1].content
        noisy_reads += prompt not in {r.payload.messages[1].content for r in records}
        return {"input_ids": prompt.split()}

    data = PromptNoiseDataset(records, encode, noise_prob=1.0, rate=0.5, seed=1)
    assert data.lengths() == [i % 7 + 1 for i in range(30)]
    trainer = SynthtuneTrainer(
        model=torch.nn.Linear(2, 2),
        args=TrainingArguments(
            "unused",
            per_device_train_batch_size=4,
            train_sampling_strategy="group_by_length",
            report_to=[],
            use_cpu=True,
        ),
        train_dataset=data,
    )
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    assert sampler.lengths == data.lengths() and noisy_reads == 0  # no noisy prompt tokenised
    assert sorted(sampler) == list(range(30))


# ---------------------------------------------------------------- synonym replacement

needs_wordnet = pytest.mark.skipif(
    not synonyms.synonyms_available(), reason="synthtune[augment] (WordNet) not installed"
)
SYNONYM_ONLY = {"synonym": 1.0}


@needs_wordnet
def test_synonyms_come_from_the_lexicon_and_keep_case() -> None:
    lexicon = synonyms.load_synonyms()
    assert lexicon is synonyms.load_synonyms()  # loaded once per process
    assert "large" in lexicon.synonyms("big")  # WordNet 3.0's first sense of "big": {large, big}
    assert lexicon.synonyms("patient") == ()
    for word in ["big", "Big", "BIG"]:
        # rate 1: both units drawn; "patient" has no synonym and nothing to fall back to
        out = perturb_text(f"{word} patient", random.Random(0), 1.0, SYNONYM_ONLY)
        replaced = out.removesuffix(" patient")
        assert replaced.lower() in lexicon.synonyms("big")
        assert replaced == match_case(word, replaced.lower())
    assert match_case("Big", "large") == "Large" and match_case("BIG", "large") == "LARGE"
    assert "synonym" in AugmentConfig().weights()  # default: every available operation


@needs_wordnet
def test_synonym_noise_keeps_numbers_and_is_deterministic() -> None:
    text = "The big child has a severe cough for 3 days and 38.5 fever, should I buy medicine?"
    words = [w.strip("?,") for w in text.split()]
    lexicon = synonyms.load_synonyms()
    allowed = {p.lower() for w in words for s in (w, *lexicon.synonyms(w)) for p in s.split()}
    outs = {perturb_text(text, random.Random(seed), 0.5, SYNONYM_ONLY) for seed in range(10)}
    assert len(outs) > 1
    for out in outs:
        assert " 3 " in out and "38.5" in out
        assert {w.strip("?,").lower() for w in out.split()} <= allowed  # only lexicon words
    again = perturb_text(text, random.Random(3), 0.5, SYNONYM_ONLY)
    assert again == perturb_text(text, random.Random(3), 0.5, SYNONYM_ONLY)


def test_synonym_falls_back_to_the_other_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoSynonyms:
        def synonyms(self, word: str) -> tuple[str, ...]:
            return ()

    monkeypatch.setattr(augment, "load_synonyms", NoSynonyms)
    text = "alpha beta gamma delta epsilon zeta"
    assert perturb_text(text, random.Random(0), 1.0, SYNONYM_ONLY) == text  # nothing else
    out = perturb_text(text, random.Random(0), 1.0, {"synonym": 1.0, "drop": 1e-9})
    assert out == ""  # every unit fell back to the only other operation, drop


def test_recipe_error_names_the_field_when_wordnet_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(synonyms, "wordnet_dir", lambda: None)
    with pytest.raises(ValidationError) as err:
        AugmentConfig(operations=["swap", "synonym"])
    problems = format_validation_error(err.value, AugmentConfig)
    assert problems[0].startswith("operations:") and "synthtune[augment]" in problems[0]
    assert AugmentConfig().weights() == dict.fromkeys(["swap", "drop", "insert", "replace"], 1.0)
    synonyms.load_synonyms.cache_clear()
    with pytest.raises(synonyms.SynonymsUnavailable, match=r"synthtune\[augment\]"):
        synonyms.load_synonyms()
    synonyms.load_synonyms.cache_clear()


def test_operations_accept_a_list_or_weights() -> None:
    assert AugmentConfig(operations=["drop"]).weights() == {"drop": 1.0}
    assert AugmentConfig(operations={"swap": 2, "drop": 0}).weights() == {"swap": 2, "drop": 0}
    with pytest.raises(ValidationError, match="at least one"):
        AugmentConfig(operations={"swap": 0})
    with pytest.raises(ValidationError):
        AugmentConfig(operations=["shuffle"])
