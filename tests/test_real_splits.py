"""Real data first: JSON arrays and chat files, encodings, duplicates, your own split files,
and recipes without a generate section (validate errors before any work)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.config import RealDataConfig, load_recipe
from synthtune.errors import RecipeError, StageError
from synthtune.realdata import load_real, load_real_splits

CHAT = [
    {
        "messages": [
            {"role": "system", "content": "You triage."},
            {"role": "user", "content": "Fever 39.5 for 3 days"},
            {"role": "assistant", "content": "See a doctor today."},
        ],
        "label": "urgent",
    },
    {
        "messages": [
            {"from": "human", "value": "Mild cough"},
            {"from": "gpt", "value": "Rest and fluids."},
        ],
        "label": "routine",
    },
]


def write_lines(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def topic_rows(prefix: str, count: int, labels: tuple[str, ...] = ("a", "b")) -> list[dict]:
    return [
        {"text": f"{prefix} {i} about {labels[i % len(labels)]}", "label": labels[i % len(labels)]}
        for i in range(count)
    ]


def test_chat_messages_jsonl_is_read_automatically_and_sharegpt_turns_map(tmp_path: Path) -> None:
    records = load_real(RealDataConfig(path=write_lines(tmp_path / "c.jsonl", CHAT)))
    first, second = records
    assert [(m.role, m.content) for m in first.payload.messages] == [
        ("system", "You triage."),
        ("user", "Fever 39.5 for 3 days"),
        ("assistant", "See a doctor today."),
    ]
    assert [m.role for m in second.payload.messages] == ["user", "assistant"]
    labelled = load_real(
        RealDataConfig(path=tmp_path / "c.jsonl", messages_field="messages", label_field="label")
    )
    assert [r.payload.label for r in labelled] == ["urgent", "routine"]


def test_a_bad_chat_turn_names_the_line_and_the_turn(tmp_path: Path) -> None:
    rows = [CHAT[0], {"messages": [{"role": "robot", "content": "hi"}]}]
    with pytest.raises(StageError, match=r"c\.jsonl:2: messages\[1\] has role 'robot'"):
        load_real(RealDataConfig(path=write_lines(tmp_path / "c.jsonl", rows)))


def test_a_json_array_reads_like_jsonl_and_a_wrapped_array_too(tmp_path: Path) -> None:
    rows = topic_rows("note", 4)
    reference = load_real(
        RealDataConfig(path=write_lines(tmp_path / "r.jsonl", rows), label_field="label")
    )
    array = tmp_path / "r.json"
    array.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    wrapped = tmp_path / "w.json"
    wrapped.write_text(json.dumps({"data": rows, "version": 2}), encoding="utf-8")
    for path in (array, wrapped):
        records = load_real(RealDataConfig(path=path, label_field="label"))
        assert [(r.id, r.payload.label) for r in records] == [
            (r.id, r.payload.label) for r in reference
        ]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([rows[0], "just text"]), encoding="utf-8")
    with pytest.raises(StageError, match=r"bad\.json:2: expected a JSON object per array item"):
        load_real(RealDataConfig(path=bad))


def test_a_wrong_encoding_names_file_and_line_and_the_encoding_field_fixes_it(
    tmp_path: Path,
) -> None:
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9 au lait"}\n')
    with pytest.raises(StageError, match=r"latin\.jsonl:2: not valid utf-8 .*mix\.real\.encoding"):
        load_real(RealDataConfig(path=latin))
    records = load_real(RealDataConfig(path=latin, encoding="latin-1"))
    assert records[1].payload.text() == "café au lait"
    csv_path = tmp_path / "latin.csv"
    csv_path.write_bytes(b"text,label\nfine,a\ncaf\xe9,b\n")
    with pytest.raises(StageError, match=r"latin\.csv:3: not valid utf-8"):
        load_real(RealDataConfig(path=csv_path))
    (_, cafe) = load_real(RealDataConfig(path=csv_path, encoding="cp1252"))
    assert cafe.payload.text() == "café"
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes('\ufeff{"text": "starts with a BOM"}\n'.encode())
    assert load_real(RealDataConfig(path=bom))[0].payload.text() == "starts with a BOM"
    with pytest.raises(ValueError, match="not a known codec"):
        RealDataConfig(path=bom, encoding="klingon-8")


def _recipe(folder: Path, real: dict[str, Any], **sections: Any) -> Any:
    body = {"name": "real-only", "seed": 1, "mix": {"real": real}, **sections}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def test_own_train_validation_test_files_are_the_splits(tmp_path: Path) -> None:
    write_lines(tmp_path / "train.jsonl", topic_rows("train", 30))
    write_lines(tmp_path / "val.jsonl", topic_rows("val", 6))
    write_lines(tmp_path / "test.jsonl", topic_rows("test", 8))
    real = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}
    recipe = load_recipe(_recipe(tmp_path, {**real, "label_field": "label"}))
    loaded = load_real_splits(recipe)
    assert {k: len(v) for k, v in loaded.splits.items()} == {"train": 30, "val": 6, "test": 8}
    assert {r.lineage["file"] for r in loaded.splits["test"]} == {"test.jsonl"}
    assert {r.lineage["split"] for r in loaded.splits["val"]} == {"val"}
    assert loaded.stats["files"] == {
        "train": str(tmp_path / "train.jsonl"),
        "validation": str(tmp_path / "val.jsonl"),
        "test": str(tmp_path / "test.jsonl"),
    }
    assert loaded.stats["rows_read"] == 44


def test_a_split_without_its_own_file_is_hash_split_from_train(tmp_path: Path) -> None:
    write_lines(tmp_path / "train.jsonl", topic_rows("train", 200))
    write_lines(tmp_path / "test.jsonl", topic_rows("test", 8))
    recipe = load_recipe(_recipe(tmp_path, {"train": "train.jsonl", "test": "test.jsonl"}))
    splits = load_real_splits(recipe).splits
    assert len(splits["test"]) == 8  # the test file, whole; train gives none to test
    assert 8 <= len(splits["val"]) <= 35  # ~10 % of 200 by hash
    assert len(splits["train"]) + len(splits["val"]) == 200
    assert not {r.id for r in splits["val"]} & {r.id for r in splits["train"]}


def test_duplicates_and_leaks_between_files_are_counted_and_dropped_on_request(
    tmp_path: Path,
) -> None:
    train = topic_rows("train", 20)
    write_lines(tmp_path / "train.jsonl", [*train, train[0], train[1]])
    write_lines(tmp_path / "test.jsonl", [*topic_rows("test", 5), train[2]])
    real = {"train": "train.jsonl", "test": "test.jsonl", "label_field": "label"}
    kept = load_real_splits(load_recipe(_recipe(tmp_path, real)))
    assert kept.stats["duplicates"] == 2 and kept.stats["duplicates_dropped"] == 0
    assert kept.stats["overlap"]["train_test"] == 1
    assert sum(len(v) for v in kept.splits.values()) == 28  # every row read is used
    dropped = load_real_splits(load_recipe(_recipe(tmp_path, {**real, "duplicates": "drop"})))
    assert dropped.stats["duplicates_dropped"] == 3  # two repeats + the leaked test row
    assert sum(len(v) for v in dropped.splits.values()) == 25
    assert len(dropped.splits["test"]) == 6  # the test file is kept whole


def test_config_refuses_path_with_train_and_test_without_train() -> None:
    with pytest.raises(ValueError, match=r"set path .* or train"):
        RealDataConfig.model_validate({"path": "a.jsonl", "train": "b.jsonl"})
    with pytest.raises(ValueError, match=r"set path .* or train"):
        RealDataConfig.model_validate({"test": "b.jsonl"})
    with pytest.raises(ValueError, match="go with train, not with path"):
        RealDataConfig.model_validate({"path": "a.jsonl", "test": "b.jsonl"})


def test_a_recipe_needs_generate_or_real_data(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text("name: empty\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="no data: add a generate section"):
        load_recipe(path)


def test_validate_accepts_a_real_only_recipe_and_names_bad_files(tmp_path: Path) -> None:
    write_lines(tmp_path / "train.jsonl", topic_rows("train", 30))
    real = {"train": "train.jsonl", "label_field": "label"}
    runner = CliRunner()
    ok = runner.invoke(
        app, ["validate", str(_recipe(tmp_path, real, train={"task": "classification"}))]
    )
    assert ok.exit_code == 0, ok.output
    assert "real data only" in ok.output

    (tmp_path / "test.jsonl").write_bytes(b'{"text": "x", "label": "a"}\n{"text": "\xff"}\n')
    bad = _recipe(tmp_path, {**real, "test": "test.jsonl"})
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "test.jsonl:2: not valid utf-8" in " ".join(result.output.split())
    assert not (tmp_path / "runs").exists()


def test_a_one_class_label_set_is_refused_at_validate(tmp_path: Path) -> None:
    write_lines(tmp_path / "train.jsonl", topic_rows("train", 20, labels=("only",)))
    path = _recipe(
        tmp_path,
        {"train": "train.jsonl", "label_field": "label"},
        train={"task": "classification"},
    )
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "has 1 class (only)" in " ".join(result.output.split())
    no_labels = _recipe(tmp_path, {"train": "train.jsonl"}, train={"task": "classification"})
    result = CliRunner().invoke(app, ["validate", str(no_labels)])
    assert result.exit_code == 2
    assert "mix.real.label_field: train.task classification needs a label column" in result.output


def test_validation_or_test_labels_missing_from_train_are_refused_at_validate(
    tmp_path: Path,
) -> None:
    write_lines(tmp_path / "train.jsonl", topic_rows("train", 100))
    write_lines(tmp_path / "val.jsonl", topic_rows("val", 6, labels=("a", "c")))
    write_lines(tmp_path / "test.jsonl", topic_rows("test", 6))
    real = {"train": "train.jsonl", "test": "test.jsonl", "label_field": "label"}
    ok = _recipe(tmp_path, real, train={"task": "classification"})
    assert CliRunner().invoke(app, ["validate", str(ok)]).exit_code == 0
    bad = _recipe(tmp_path, {**real, "validation": "val.jsonl"}, train={"task": "classification"})
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "mix.real.validation: the val split has labels the train split lacks: 'c' (3 rows)" in (
        " ".join(result.output.split())
    )


def test_an_empty_hash_split_is_refused_at_validate_unless_evaluation_is_off(
    tmp_path: Path,
) -> None:
    write_lines(tmp_path / "train.jsonl", topic_rows("train", 3))
    write_lines(tmp_path / "test.jsonl", topic_rows("test", 4))
    real = {"train": "train.jsonl", "test": "test.jsonl", "label_field": "label"}
    runner = CliRunner()
    recipe = _recipe(tmp_path, real, train={"task": "classification"})
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "mix.real.train: the hash split left the val split empty (3 train rows)" in text
    off = _recipe(tmp_path, real, train={"task": "classification", "eval_strategy": "no"})
    assert runner.invoke(app, ["validate", str(off)]).exit_code == 0


def test_one_dataset_dict_folder_gives_each_field_its_own_split(tmp_path: Path) -> None:
    import datasets

    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(topic_rows("train", 20)),
            "validation": datasets.Dataset.from_list(topic_rows("val", 4)),
            "test": datasets.Dataset.from_list(topic_rows("test", 6)),
        }
    ).save_to_disk(str(tmp_path / "saved"))
    real = {"train": "saved", "validation": "saved", "test": "saved", "label_field": "label"}
    loaded = load_real_splits(load_recipe(_recipe(tmp_path, real)))
    assert {k: len(v) for k, v in loaded.splits.items()} == {"train": 20, "val": 4, "test": 6}
    assert loaded.stats["overlap"] == {"train_test": 0, "train_validation": 0, "validation_test": 0}


def test_a_line_separator_inside_a_json_string_does_not_split_the_line(tmp_path: Path) -> None:
    path = tmp_path / "sep.jsonl"
    path.write_text('{"text": "first\u2028second"}\r\n{"text": "third"}\n', encoding="utf-8")
    records = load_real(RealDataConfig(path=path))
    assert [r.payload.text() for r in records] == ["first\u2028second", "third"]
