import json

import pytest

from synthtune.config import GenerateConfig
from synthtune.llm.backends.base import GenerationRequest
from synthtune.llm.engine import GenerationEngine
from synthtune.llm.structured import ask, extract_json, schema_error
from tests.generate.scripted import ScriptedBackend

SCHEMA = {
    "type": "object",
    "required": ["diagnosis", "urgency"],
    "properties": {"diagnosis": {"type": "string"}, "urgency": {"enum": ["low", "high"]}},
}


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '```json\n{"a": 1}\n```',
        'Sure! Here it is:\n{"a": 1}\nHope this helps.',
        'Result: ```\n{"a": 1}```',
    ],
)
def test_extract_json_repairs_fences_and_prose(text: str) -> None:
    assert extract_json(text) == {"a": 1}


@pytest.mark.parametrize("text", ["no json here", '{"a": 1', "[1, 2"])
def test_extract_json_says_why_it_failed(text: str) -> None:
    with pytest.raises(ValueError):
        extract_json(text)


def test_schema_error_names_the_path() -> None:
    assert schema_error({"diagnosis": "flu", "urgency": "high"}, SCHEMA) is None
    assert "urgency" in schema_error({"diagnosis": "flu", "urgency": "soon"}, SCHEMA)


def _engine(backend: ScriptedBackend) -> GenerationEngine:
    cfg = GenerateConfig.model_validate(
        {"templates": [{"id": "t", "prompt": "p", "response": "r"}]}
    )
    engine = GenerationEngine(cfg, lambda n: n, cache=None)
    engine._backend = backend
    return engine


def test_invalid_replies_are_reasked_with_the_error_then_kept_as_failures() -> None:
    def reply(request: GenerationRequest) -> str:
        prompt = request.messages[0]["content"]
        reasked = len(request.messages) > 1
        if prompt == "fixable":
            return '{"diagnosis": "flu", "urgency": "high"}' if reasked else '{"diagnosis": "flu"}'
        if prompt == "hopeless":
            return "I cannot answer in JSON."
        return '```json\n{"diagnosis": "cold", "urgency": "low"}\n```'

    backend = ScriptedBackend(reply)
    requests = [
        GenerationRequest(str(i), [{"role": "user", "content": p}], None, i)
        for i, p in enumerate(["fixable", "hopeless", "fine"])
    ]
    fixable, hopeless, fine = ask(_engine(backend), requests, [SCHEMA] * 3, max_reasks=2)
    assert fixable.value == {"diagnosis": "flu", "urgency": "high"} and fixable.reasks == 1
    assert json.loads(fixable.text) == fixable.value
    assert fine.value["urgency"] == "low" and fine.reasks == 0
    assert hopeless.text is None and hopeless.error.startswith("structured: no JSON")
    assert hopeless.reasks == 2
    reask = next(
        r for r in backend.calls if r.messages[0]["content"] == "fixable" and len(r.messages) > 1
    )
    assert "'urgency' is a required property" in reask.messages[-1]["content"]
    assert len(backend.calls) == 3 + 2 + 1  # first round, hopeless+fixable, hopeless


def test_a_pydantic_model_can_stand_for_the_schema() -> None:
    from typing import Literal

    from pydantic import BaseModel

    from synthtune.config import TemplateConfig

    class Triage(BaseModel):
        diagnosis: str
        urgency: Literal["low", "high"]

    template = TemplateConfig(id="t", prompt="p", schema=Triage)
    assert template.json_schema is not None
    assert schema_error({"diagnosis": "flu", "urgency": "high"}, template.json_schema) is None
    assert "urgency" in schema_error({"diagnosis": "flu", "urgency": "soon"}, template.json_schema)
    with pytest.raises(ValueError, match="invalid JSON Schema"):
        TemplateConfig(id="t", prompt="p", schema={"type": "no-such-type"})
