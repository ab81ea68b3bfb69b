"""Few-shot examples (reviewers' corrections): shown to the model before the prompt, never
stored in the records, chosen per template from (seed, index), and checked before any work."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.config import load_recipe
from synthtune.errors import RecipeError
from synthtune.generate.strategies.base import load_few_shot, plan_template_items
from synthtune.pipeline import run_recipe
from synthtune.store import RunStore
from tests.conftest import write_recipe
from tests.generate.scripted import ScriptedBackend, install
from tests.generate.test_strategies import OFFLINE


def _templates() -> list[dict]:
    slots = {"topic": {"choice": ["fever", "cough"]}}
    return [
        {"id": "a", "prompt": "Advice on {{ topic }}", "system": "Be brief.", "slots": slots},
        {"id": "b", "prompt": "Note on {{ topic }}", "slots": slots},
    ]


def _write_shots(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_examples_reach_the_request_but_not_the_record(tmp_path, monkeypatch) -> None:
    _write_shots(
        tmp_path / "shots.jsonl",
        [
            {"template": "a", "user": "Advice on sprain", "assistant": "Ice it.", "id": "e1"},
            {"template": "a", "user": "Advice on burns", "assistant": "Cool water.", "id": "e2"},
            {"user": "Any note", "assistant": "Shared example.", "id": "e3"},
        ],
    )
    generate = {"backend": OFFLINE, "n": 16, "templates": _templates()}
    recipe = write_recipe(
        tmp_path, {"generate": generate | {"few_shot": {"file": "shots.jsonl", "per_prompt": 2}}}
    )
    backend = install(monkeypatch, ScriptedBackend(lambda request: "Rest."))
    result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="generate", quiet=True)
    records = RunStore(result.run_dir).read_table("generate", "dataset")
    assert len(backend.calls) == 16
    for call in backend.calls:
        roles = [m["role"] for m in call.messages]
        if call.messages[-1]["content"].startswith("Advice"):  # template a: its own two
            assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
            shown = {call.messages[2]["content"], call.messages[4]["content"]}
            assert shown == {"Ice it.", "Cool water."}
        else:  # template b: only the shared example exists for it
            assert roles == ["user", "assistant", "user"]
            assert call.messages[1]["content"] == "Shared example."
    for record in records:  # the stored conversation is the plain prompt and the reply
        roles = [m.role for m in record.payload.messages]
        assert roles in (["system", "user", "assistant"], ["user", "assistant"])
        expected = ["e1", "e2"] if record.lineage["template"] == "a" else ["e3"]
        assert sorted(record.lineage["few_shot"]) == expected


def test_examples_change_only_the_keys_of_the_items_they_reach(tmp_path) -> None:
    generate = {"n": 12, "templates": [{**t, "response": "r"} for t in _templates()]}
    plain = load_recipe(write_recipe(tmp_path, {"generate": generate}))
    shots = _write_shots(tmp_path / "s.jsonl", [{"template": "b", "user": "u", "assistant": "x"}])
    shot = load_recipe(
        write_recipe(tmp_path, {"generate": generate | {"few_shot": {"file": str(shots)}}})
    )
    before, after = plan_template_items(plain, 12), plan_template_items(shot, 12)
    for old, new in zip(before, after, strict=True):
        reached = new.template.config.id == "b"
        assert (old.key != new.key) == reached
        assert len(new.few_shot) == int(reached)


def test_a_bad_few_shot_file_names_its_line_and_exits_2(tmp_path) -> None:
    path = tmp_path / "shots.jsonl"
    path.write_text(
        '{"user": "u", "assistant": "a"}\n\nnot json\n{"user": "u"}\n[1]\n'
        '{"user": "u", "assistant": "a", "extra": 1}\n',
        encoding="utf-8",
    )
    with pytest.raises(RecipeError) as caught:
        load_few_shot(path)
    assert caught.value.problems == [
        "line 3: not JSON (Expecting value)",
        "line 4: needs assistant (non-empty text)",
        "line 5: must be an object {user, assistant, template?}",
        "line 6: unknown field(s) extra",
    ]
    generate = {"templates": _templates(), "backend": OFFLINE, "few_shot": {"file": str(path)}}
    recipe = write_recipe(tmp_path, {"generate": generate})
    result = CliRunner().invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2 and "line 3: not JSON" in result.output


def test_few_shot_needs_template_fill(tmp_path) -> None:
    shots = _write_shots(tmp_path / "s.jsonl", [{"user": "u", "assistant": "a"}])
    generate = {
        "templates": _templates(),
        "backend": OFFLINE,
        "strategy": {"type": "self-instruct", "seed_tasks": ["Explain a fever."]},
        "few_shot": {"file": str(shots)},
    }
    recipe = write_recipe(tmp_path, {"generate": generate})
    result = CliRunner().invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2
    assert "few-shot examples go with template-fill" in " ".join(result.output.split())
