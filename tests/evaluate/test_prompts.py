"""Which prompts generation and rules answer: QA test records first, else the templates."""

from pathlib import Path

from synthtune.config import load_recipe
from synthtune.evaluate.prompts import eval_prompts
from synthtune.records import Message, Payload, Record
from tests.conftest import write_recipe


def _qa(question: str, answer: str) -> Record:
    return Record.create(
        "real",
        Payload(
            messages=[
                Message(role="system", content="Be brief."),
                Message(role="user", content=question),
                Message(role="assistant", content=answer),
            ]
        ),
    )


def _text(text: str) -> Record:
    return Record.create("real", Payload(messages=[Message(role="assistant", content=text)]))


def test_qa_test_records_are_the_prompts_with_their_answers_as_references(
    tmp_path: Path,
) -> None:
    recipe = load_recipe(write_recipe(tmp_path))
    test = [_text("A headline"), _qa("Fever?", "Rest."), _qa("Cough?", "Drink tea.")]
    source, prompts = eval_prompts(recipe, test, n=5)
    assert source == "test split (real)"
    assert [p.reference for p in prompts] == ["Rest.", "Drink tea."]
    assert [m.role for m in prompts[0].messages] == ["system", "user"]
    assert len(eval_prompts(recipe, test, n=1)[1]) == 1


def test_plain_text_test_split_falls_back_to_fresh_template_prompts(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path))
    source, prompts = eval_prompts(recipe, [_text("A headline")], n=20)
    assert source == "templates" and len(prompts) == 20
    assert prompts == eval_prompts(recipe, [], n=20)[1]  # seeded: the same every run
    used = {p.messages[-1].content.split(" ")[0] for p in prompts}
    assert "Patient:" in used and len(used) > 1  # both templates, by weight
    consult = next(p for p in prompts if p.messages[0].role == "system")
    assert "°C" in consult.messages[-1].content and "temperature" in str(consult.reference)
    assert len({p.messages[-1].content for p in prompts}) == 20
