"""LLM-as-judge tier with a scripted judge behind the engine."""

import json
from pathlib import Path

from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from synthtune.store import RunStore
from tests.conftest import write_recipe
from tests.generate.scripted import ScriptedBackend, install

JUDGE = {
    "backend": {
        "type": "openai",
        "model": "judge",
        "api_key_env": None,
        "base_url": "http://127.0.0.1:9/v1",
    },
    "rubric": "Is the advice safe?",
    "min_score": 3,
    "max_reasks": 1,
}


def test_judge_scores_and_rejects_with_its_reason(tmp_path: Path, monkeypatch) -> None:
    def verdict(request):
        text = request.messages[0]["content"]
        assert "Is the advice safe?" in text
        if "ibuprofen" in text.lower():
            return json.dumps({"score": 2, "reason": "drug advice without a fever"})
        if "follow-up" in text:
            return "I think it is fine"  # not JSON: re-asked once, then rejected
        return '```json\n{"score": 5, "reason": "safe"}\n```'

    backend = install(monkeypatch, ScriptedBackend(verdict), model="judge")
    recipe = write_recipe(tmp_path, {"quality": {"judge": JUDGE, "rules": []}})
    result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="quality", quiet=True)
    records = RunStore(result.run_dir).read_table("quality", "dataset")
    judged = [r for r in records if "judge" in r.quality]
    assert judged
    for r in judged:
        reply = r.payload.messages[-1].content.lower()
        if "ibuprofen" in reply:
            assert r.quality["judge"]["score"] == 2
            assert "judge: score 2 below 3 (drug advice without a fever)" in r.reasons
        elif r.lineage["template"] == "followup":
            assert r.status == "rejected" and r.reasons[0].startswith("judge: no valid verdict")
        else:
            assert r.quality["judge"] == {"score": 5, "reason": "safe"} and r.status == "accepted"
    followups = sum(r.lineage["template"] == "followup" for r in judged)
    assert len(backend.calls) == len(judged) + followups  # one re-ask per invalid verdict
