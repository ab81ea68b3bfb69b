import random

from synthtune.records import Message, Payload, Record
from synthtune.train.augment import PromptNoiseDataset, perturb_text


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
