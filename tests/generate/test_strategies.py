"""Strategies end to end through the generate stage, with a scripted backend."""

import json
import re
from pathlib import Path

from synthtune.config import load_recipe
from synthtune.generate.strategies.evol_instruct import eliminated
from synthtune.pipeline import run_recipe
from synthtune.store import RunStore
from synthtune.textsim import rouge_l
from tests.conftest import write_recipe
from tests.generate.scripted import ScriptedBackend, install

# Never contacted: the engine's backend is replaced by a scripted one in each test.
OFFLINE = {
    "type": "openai",
    "model": "scripted",
    "api_key_env": None,
    "base_url": "http://127.0.0.1:9/v1",
}


def _dataset(recipe: Path, tmp_path: Path):
    result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="generate", quiet=True)
    return RunStore(result.run_dir).read_table("generate", "dataset")


def _template(prompt: str, **extra) -> dict:
    return {
        "id": "t",
        "prompt": prompt,
        "slots": {"topic": {"choice": ["fever", "cough"]}},
        **extra,
    }


def test_template_fill_with_schema_keeps_valid_json_and_rejects_the_rest(tmp_path, monkeypatch):
    schema = {
        "type": "object",
        "required": ["advice"],
        "properties": {"advice": {"type": "string"}},
    }
    recipe = write_recipe(
        tmp_path,
        {
            "generate": {
                "backend": OFFLINE,
                "n": 12,
                "templates": [_template("Advice on {{ topic }}", schema=schema, max_reasks=1)],
            }
        },
    )

    def reply(request):
        topic = "fever" if "fever" in request.messages[0]["content"] else "cough"
        return f'{{"advice": "rest for {topic}"}}' if topic == "fever" else "no idea"

    install(monkeypatch, ScriptedBackend(reply))
    records = _dataset(recipe, tmp_path)
    assert len(records) == 12
    for r in records:
        if r.lineage["slots"]["topic"] == "fever":
            assert r.status == "accepted"
            assert json.loads(r.payload.messages[-1].content) == {"advice": "rest for fever"}
        else:
            assert r.status == "rejected" and r.reasons[0].startswith("structured:")
            assert r.lineage["reasks"] == 1


def test_self_instruct_rejects_near_duplicates_and_answers_novel_tasks(tmp_path, monkeypatch):
    seeds = ["Give three tips for staying healthy.", "Explain what a fever is."]
    recipe = write_recipe(
        tmp_path,
        {
            "generate": {
                "backend": OFFLINE,
                "n": 6,
                "flush_every": 3,
                "strategy": {
                    "type": "self-instruct",
                    "seed_tasks": seeds,
                    "examples_per_prompt": 2,
                },
                "templates": [
                    _template("Tasks:\n{{ examples }}\nWrite a new task about {{ topic }}.")
                ],
            }
        },
    )
    novel = iter(
        [
            "Describe how to treat a mild burn at home.",
            "List warning signs of dehydration in children.",
            "Compare a cold and the flu in a short table.",
            "Write a checklist for a first-aid kit.",
        ]
    )

    def reply(request):
        text = request.messages[-1]["content"]
        if text.startswith("Tasks:"):
            n = int(request.sample)
            if n % 3 == 2:
                return "1. Give three tips for staying healthy!"  # a copy of a seed task
            return next(novel)
        return f"Answer to: {text}"

    install(monkeypatch, ScriptedBackend(reply))
    records = _dataset(recipe, tmp_path)
    accepted = [r for r in records if r.status == "accepted"]
    rejected = [r for r in records if r.status == "rejected"]
    assert len(accepted) == 4 and len(rejected) == 2
    assert all("too similar" in r.reasons[0] for r in rejected)
    for r in accepted:
        user = r.payload.messages[-2].content
        assert r.payload.messages[-1].content == f"Answer to: {user}"
        assert r.lineage["novelty_rouge_l"] <= 0.7


def test_evol_instruct_evolves_and_eliminates(tmp_path, monkeypatch):
    recipe = write_recipe(
        tmp_path,
        {
            "generate": {
                "backend": OFFLINE,
                "n": 8,
                "strategy": {"type": "evol-instruct", "rounds": 2, "operations": ["constraints"]},
                "templates": [_template("How do I treat a {{ topic }}?")],
            }
        },
    )

    def reply(request):
        text = request.messages[-1]["content"]
        match = re.search(r"#Given Prompt#:\n(.*)\n#Rewritten", text, re.DOTALL)
        if match is None:
            return "An answer."
        parent = match.group(1)
        if "cough" in parent:
            return parent  # no information gained: eliminated
        return parent + " Answer in under 50 words for a child aged 6."

    install(monkeypatch, ScriptedBackend(reply))
    records = _dataset(recipe, tmp_path)
    for r in records:
        if r.lineage["slots"]["topic"] == "cough":
            assert r.status == "rejected" and "round 1 (constraints) eliminated" in r.reasons[0]
        else:
            assert r.status == "accepted"
            assert len(r.lineage["evolution"]) == 2
            assert r.payload.messages[-2].content.count("Answer in under 50 words") == 2
            assert r.payload.messages[-1].content == "An answer."


def test_elimination_rules() -> None:
    assert eliminated("a b c", "", 0.9) == "empty evolution"
    assert "scaffold" in eliminated("a", "#Rewritten Prompt#: x", 0.9)
    assert eliminated("a", "Sorry, I cannot do that.", 0.9) == "refusal"
    assert eliminated("how to treat a fever", "How to treat a fever?", 0.9).startswith("no info")
    assert (
        eliminated("how to treat a fever", "How to treat a fever in infants safely?", 0.9) is None
    )


def test_rouge_l_handles_chinese() -> None:
    assert rouge_l("持续发热三天", "持续发热三天") == 1.0
    assert 0 < rouge_l("持续发热三天", "发热两天") < 1


def test_doc_qa_keeps_source_spans_and_rejects_ungrounded_pairs(tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    text = (
        "Paracetamol lowers fever. Adults may take 500 mg every six hours.\n\n"
        "Ibuprofen is an anti-inflammatory drug. Do not exceed 1200 mg a day without a "
        "doctor.\n\n"
    ) * 3
    (docs / "leaflet.md").write_text(text, encoding="utf-8")
    recipe = write_recipe(
        tmp_path,
        {
            "generate": {
                "backend": OFFLINE,
                "n": 50,
                "edge_cases": None,  # doc-qa plans chunks, not slots: no edge cases
                "strategy": {
                    "type": "doc-qa",
                    "documents": ["docs"],
                    "chunk_chars": 200,
                    "overlap_chars": 20,
                    "questions_per_chunk": 2,
                },
                "templates": [
                    {
                        "id": "qa",
                        "prompt": "From {{ document }}:\n{{ chunk }}\n"
                        "Write {{ questions }} QA pairs as JSON.",
                    }
                ],
            }
        },
    )

    def reply(request):
        chunk = request.messages[-1]["content"].split(":\n", 1)[1].rsplit("\nWrite", 1)[0]
        sentence = chunk.strip().split(". ")[0]
        return json.dumps(
            {
                "pairs": [
                    {
                        "question": "What does the leaflet say?",
                        "answer": sentence,
                        "evidence": sentence,
                    },
                    {
                        "question": "Made up?",
                        "answer": "Yes.",
                        "evidence": "Aspirin cures everything",
                    },
                ]
            }
        )

    install(monkeypatch, ScriptedBackend(reply))
    records = _dataset(recipe, tmp_path)
    chunks = {r.lineage["chunk_id"] for r in records}
    assert len(chunks) >= 3 and len(records) == 2 * len(chunks)
    for r in records:
        start, end = r.lineage["span"]
        assert end > start
        if r.status == "accepted":
            s, e = r.lineage["evidence_span"]
            assert text[s:e] == r.lineage["evidence"]
        else:
            assert r.reasons == ["doc-qa: evidence not found in the source chunk"]
    assert sum(r.status == "accepted" for r in records) == len(chunks)
