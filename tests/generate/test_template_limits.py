"""Hostile templates stop at validate (exit 2, the template and field named, no run folder):
nested loops, huge powers and repetitions, division by zero, sandbox escapes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.errors import RecipeError
from synthtune.templates import _compile, render


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "loops ran over 100,000 range() steps",
        ),
        ("{{ 9 ** 999999 }}", "exponent 999999 is over 256"),
        ("{{ ((10 ** 200) ** 200) ** 200 }}", "a power of over 4,300 digits"),
        ("{{ 'x' * 10 ** 9 }}", "repetition of over 100,000 items"),
        ("{% for i in range(2000) %}{{ 'y' * 99 }}{% endfor %}", "output over 100,000 characters"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ ''.__class__.__mro__ }}", "SecurityError"),
    ],
)
def test_render_limits(source: str, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(RecipeError) as err:
        render(_compile(source), {}, "generate.templates[t].prompt")
    assert time.perf_counter() - started < 3
    assert err.value.path == "generate.templates[t].prompt"
    assert message in err.value.problems[0]


def test_an_ordinary_template_renders() -> None:
    assert render(_compile("{% for i in range(3) %}{{ i ** 2 }} {% endfor %}"), {}, "w") == (
        "0 1 4"
    )


def test_validate_refuses_a_hanging_template_before_any_work(tmp_path: Path) -> None:
    recipe = {
        "name": "hostile",
        "generate": {
            "n": 5,
            "templates": [
                {
                    "id": "t",
                    "prompt": "{% for i in range(99999) %}{% for j in range(99999) %}"
                    "{% endfor %}{% endfor %}hi",
                    "response": "ok",
                }
            ],
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "runs")])
    assert time.perf_counter() - started < 30
    assert result.exit_code == 2, result.output
    assert "generate.templates[t].prompt" in result.output and "range() steps" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_a_template_failing_on_some_slot_values_rejects_those_records_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import synthtune.generate.stage as stage
    from synthtune.config import Recipe
    from synthtune.pipeline import run_recipe
    from synthtune.store import RunStore

    monkeypatch.setattr(stage, "CHECK_REQUESTS", 0)  # as if the failures came after those
    recipe = Recipe.model_validate(
        {
            "name": "some-fail",
            "generate": {
                "n": 60,
                "templates": [
                    {
                        "id": "t",
                        "prompt": "Dose {{ 60 // (i - 6) }} for {{ j }}",
                        "response": "ok {{ j }}",
                        "slots": {"i": {"randint": [1, 6]}, "j": {"randint": [0, 10**6]}},
                    }
                ],
            },
            "quality": {"perplexity": {"enabled": False}},
        }
    )
    run_recipe(recipe, tmp_path / "runs", until="quality", quiet=True)
    records = RunStore(tmp_path / "runs" / "some-fail").read_table("quality", "dataset")
    failed = [r for r in records if r.lineage["slots"]["i"] == 6]
    assert len(records) == 60 and 0 < len(failed) < 60
    for record in records:
        if record.lineage["slots"]["i"] == 6:
            assert record.status == "rejected"
            assert record.reasons[0] == (
                "template: generate.templates[t].prompt: cannot render: ZeroDivisionError: "
                "integer division or modulo by zero"
            )
        else:
            assert record.status == "accepted", record.reasons
    assert len({r.id for r in records}) == 60  # every failed item is its own record
