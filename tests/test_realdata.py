"""Real data in: every format maps to the same records as JSONL; mapping, errors, digests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from synthtune.config import RealDataConfig
from synthtune.errors import StageError
from synthtune.realdata import detect_format, load_real, real_texts

ROWS: list[dict[str, Any]] = [
    {"text": "Fever for two days.", "q": "Is 38.9 a fever?", "a": "Yes.", "label": "ill",
     "age": 34, "gender": "female"},
    {"text": "Mild cough at night.", "q": "Cough at night?", "a": "Often asthma.",
     "label": "ill", "age": 71, "gender": "male"},
    {"text": "  Feeling fine today. ", "q": "Checkup?", "a": "Once a year.", "label": "well",
     "age": 52, "gender": "female"},
]  # fmt: skip
MAPPING: dict[str, Any] = {
    "prompt_field": "q",
    "response_field": "a",
    "label_field": "label",
    "slots": {"age": "age", "gender": "sex"},
}


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_dataset caches the prepared Arrow files; keep them in the test's folder.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def write_jsonl(folder: Path, rows: list[dict[str, Any]]) -> Path:
    path = folder / "real.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(folder: Path, rows: list[dict[str, Any]]) -> Path:
    path = folder / "real.csv"
    pa_csv.write_csv(pa.Table.from_pylist(rows), path)
    return path


def write_tsv(folder: Path, rows: list[dict[str, Any]]) -> Path:
    path = folder / "real.tsv"
    pa_csv.write_csv(
        pa.Table.from_pylist(rows), path, write_options=pa_csv.WriteOptions(delimiter="\t")
    )
    return path


def write_parquet(folder: Path, rows: list[dict[str, Any]]) -> Path:
    path = folder / "real.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_hf_disk(folder: Path, rows: list[dict[str, Any]]) -> Path:
    path = folder / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


def write_hf_folder(folder: Path, rows: list[dict[str, Any]]) -> Path:
    path = folder / "hf"
    path.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), path / "train.parquet")
    return path


WRITERS: dict[str, Callable[[Path, list[dict[str, Any]]], Path]] = {
    "csv": write_csv,
    "tsv": write_tsv,
    "parquet": write_parquet,
    "hf-disk": write_hf_disk,
    "hf": write_hf_folder,
}


def summary(records: list) -> list[tuple]:
    return [(r.id, r.payload, r.lineage.get("slots"), r.lineage["row"]) for r in records]


@pytest.mark.parametrize("mapping", [{}, MAPPING], ids=["text", "qa-label-slots"])
@pytest.mark.parametrize("kind", list(WRITERS))
def test_every_format_reads_the_same_records_as_jsonl(
    tmp_path: Path, kind: str, mapping: dict[str, Any]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    reference = load_real(RealDataConfig(path=write_jsonl(tmp_path / "a", ROWS), **mapping))
    path = WRITERS[kind](tmp_path / "b", ROWS)
    assert detect_format(path) == ("csv" if kind == "tsv" else kind)
    records = load_real(RealDataConfig(path=path, **mapping))
    assert summary(records) == summary(reference)
    assert {r.source for r in records} == {"real"}
    assert records[0].lineage["file"] == path.name


def test_the_mapping_builds_messages_label_and_slots(tmp_path: Path) -> None:
    rows = [{**ROWS[0], "label": 1}, {**ROWS[1], "gender": None}]
    records = load_real(RealDataConfig(path=write_jsonl(tmp_path, rows), **MAPPING))
    first, second = records
    assert [(m.role, m.content) for m in first.payload.messages] == [
        ("user", "Is 38.9 a fever?"),
        ("assistant", "Yes."),
    ]
    assert first.payload.label == "1"  # an integer class id is a label too
    assert first.lineage == {"file": "real.jsonl", "row": 1, "slots": {"age": 34, "sex": "female"}}
    assert second.lineage["slots"] == {"age": 71}  # an empty cell leaves the slot unset

    plain = load_real(RealDataConfig(path=tmp_path / "real.jsonl", slots=["age"]))
    assert [m.role for m in plain[0].payload.messages] == ["assistant"]
    assert plain[0].payload.label is None
    assert plain[0].lineage["slots"] == {"age": 34}


def test_csv_keeps_numeric_looking_text_as_text_and_infers_slot_types(tmp_path: Path) -> None:
    path = tmp_path / "real.csv"
    path.write_text("text,label,age\n42,0,34\n", encoding="utf-8")
    (record,) = load_real(RealDataConfig(path=path, label_field="label", slots=["age"]))
    assert record.payload.messages[0].content == "42"
    assert record.payload.label == "0"
    assert record.lineage["slots"] == {"age": 34}


def test_exact_duplicates_are_kept_by_default_and_dropped_on_request(tmp_path: Path) -> None:
    rows = [ROWS[0], ROWS[1], {**ROWS[0], "age": 99}]
    path = write_parquet(tmp_path, rows)
    kept = load_real(RealDataConfig(path=path, slots=["age"]))
    assert [r.lineage["row"] for r in kept] == [1, 2, 3]  # never dropped silently
    assert kept[0].id == kept[2].id  # same content, same id: always the same split
    dropped = load_real(RealDataConfig(path=path, slots=["age"], duplicates="drop"))
    assert [r.lineage["row"] for r in dropped] == [1, 2]
    assert dropped[0].lineage["slots"] == {"age": 34}


@pytest.mark.parametrize("kind", ["csv", "parquet", "hf-disk"])
def test_a_missing_column_names_it_the_field_and_the_available_columns(
    tmp_path: Path, kind: str
) -> None:
    path = WRITERS[kind](tmp_path, ROWS)
    with pytest.raises(StageError) as err:
        load_real(RealDataConfig(path=path, text_field="body"))
    message = str(err.value)
    assert "'body'" in message and "mix.real.text_field" in message
    assert "available columns: text, q, a, label, age, gender" in message

    with pytest.raises(StageError, match=r"'weight' \(mix\.real\.slots\)"):
        load_real(RealDataConfig(path=path, slots=["age", "weight"]))


def test_a_missing_key_in_jsonl_names_the_line_and_the_row_keys(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [ROWS[0], {"q": "no text here"}])
    with pytest.raises(StageError) as err:
        load_real(RealDataConfig(path=path))
    assert f"{path}:2: column 'text' (mix.real.text_field) not found" in str(err.value)
    assert "available columns: q." in str(err.value)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_bad_row_names_the_file_and_the_row(tmp_path: Path, kind: str) -> None:
    path = WRITERS[kind](tmp_path, [ROWS[0], {**ROWS[1], "text": ""}])
    with pytest.raises(StageError, match=rf"{path} row 2: column 'text' .* empty or not text"):
        load_real(RealDataConfig(path=path))


def test_a_malformed_csv_or_jsonl_row_is_named(tmp_path: Path) -> None:
    csv_path = tmp_path / "real.csv"
    csv_path.write_text("text,age\nfine,1\nbroken,2,extra\n", encoding="utf-8")
    with pytest.raises(StageError, match=r"real\.csv: cannot read as CSV: .*Row #3"):
        load_real(RealDataConfig(path=csv_path))
    jsonl = tmp_path / "real.jsonl"
    jsonl.write_text('{"text": "ok"}\n\n{"text": \n', encoding="utf-8")
    with pytest.raises(StageError, match=r"real\.jsonl:3: not valid JSON"):
        load_real(RealDataConfig(path=jsonl))


def test_a_missing_file_and_an_unknown_format_are_clear(tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"not found: .*nope\.csv \(mix\.real\.path"):
        load_real(RealDataConfig(path=tmp_path / "nope.csv"))
    sheet = tmp_path / "real.xlsx"
    sheet.write_bytes(b"PK")
    with pytest.raises(StageError, match=r"mix\.real\.path: cannot tell .*'\.xlsx'"):
        load_real(RealDataConfig(path=sheet))
    with pytest.raises(ValidationError, match="format"):
        RealDataConfig.model_validate({"path": "real.xlsx", "format": "excel"})
    with pytest.raises(StageError, match="format hf reads a folder"):
        load_real(RealDataConfig(path=write_csv(tmp_path, ROWS), format="hf"))


def test_config_checks_the_mapping() -> None:
    with pytest.raises(ValidationError, match="data_files is read only with format: hf"):
        RealDataConfig.model_validate({"path": "d", "data_files": "*.csv"})
    with pytest.raises(ValidationError, match="same slot name"):
        RealDataConfig.model_validate({"path": "d", "slots": {"age": "x", "years": "x"}})
    with pytest.raises(ValidationError, match="set text_field, messages_field, or prompt_field"):
        RealDataConfig.model_validate({"path": "d", "text_field": None})
    cfg = RealDataConfig.model_validate({"path": "d", "slots": ["age"]})
    assert cfg.format == "auto" and cfg.split == "train" and cfg.slot_names() == {"age": "age"}


def test_a_dataset_dict_reads_the_chosen_split(tmp_path: Path) -> None:
    path = tmp_path / "saved"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(ROWS[:2]),
            "test": datasets.Dataset.from_list(ROWS[2:]),
        }
    ).save_to_disk(str(path))
    assert detect_format(path) == "hf-disk"
    train = load_real(RealDataConfig(path=path))
    test = load_real(RealDataConfig(path=path, split="test"))
    assert [r.payload.text() for r in train] == ["Fever for two days.", "Mild cough at night."]
    assert [r.payload.text() for r in test] == ["Feeling fine today."]
    with pytest.raises(
        StageError, match=r"mix\.real\.split: .* no split 'validation'.*train, test"
    ):
        load_real(RealDataConfig(path=path, split="validation"))


def test_load_dataset_folder_with_data_files_per_split(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    write_csv(folder, ROWS[:1]).rename(folder / "a.csv")
    write_csv(folder, ROWS[1:]).rename(folder / "b.csv")
    cfg = {"path": folder, "format": "hf", "data_files": {"train": "a.csv", "dev": "b.csv"}}
    (dev_first, _) = load_real(RealDataConfig(**cfg, split="dev"))
    assert dev_first.payload.text() == "Mild cough at night."
    assert dev_first.lineage == {"file": "hf", "row": 1}
    with pytest.raises(StageError, match=r"load_dataset failed: .*mix\.real\.data_files"):
        load_real(RealDataConfig(path=folder, format="hf", data_files="nothing-*.csv"))


def test_class_labels_become_their_names(tmp_path: Path) -> None:
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["well", "ill"])}
    )
    rows = [{"text": "Fever.", "label": 1}, {"text": "Fine.", "label": 0}]
    datasets.Dataset.from_list(rows, features=features).save_to_disk(str(tmp_path / "saved"))
    records = load_real(RealDataConfig(path=tmp_path / "saved", label_field="label"))
    assert [r.payload.label for r in records] == ["ill", "well"]


def test_real_texts_splits_csv_data_like_the_mix_stage(tmp_path: Path) -> None:
    rows = [{"text": f"note number {i}"} for i in range(40)]
    mix = SimpleNamespace(
        real=RealDataConfig(path=write_csv(tmp_path, rows)), val_fraction=0.1, test_fraction=0.2
    )
    recipe = SimpleNamespace(mix=mix, seed=7)
    test, rest = real_texts(recipe, test=True), real_texts(recipe, test=False)
    assert test and rest and not set(test) & set(rest)
    assert sorted(test + rest) == sorted(r["text"] for r in rows)


def test_folder_digest_is_stable_and_changes_when_a_file_changes(tmp_path: Path) -> None:
    from synthtune.pipeline import _file_digest

    folder = write_hf_disk(tmp_path, ROWS)
    first = _file_digest(folder)
    assert first is not None and first == _file_digest(folder)
    (folder / ".cache").mkdir()
    (folder / ".cache" / "lock").write_text("x", encoding="utf-8")
    assert _file_digest(folder) == first  # hidden files (caches, .DS_Store) do not count
    state = folder / "state.json"
    state.write_text(state.read_text(encoding="utf-8") + " ", encoding="utf-8")
    assert _file_digest(folder) != first
    assert _file_digest(tmp_path / "absent") is None


def test_the_run_fingerprint_follows_the_real_data_and_its_mapping(tmp_path: Path) -> None:
    from synthtune.config import load_recipe
    from synthtune.pipeline import _inputs
    from tests.conftest import write_recipe

    recipe = load_recipe(write_recipe(tmp_path))
    assert recipe.mix.real is not None
    before = _inputs(recipe)["real"]
    assert _inputs(recipe)["real"] == before
    recipe.mix.real = recipe.mix.real.model_copy(update={"split": "test"})
    assert _inputs(recipe)["real"] != before
    with recipe.mix.real.path.open("a", encoding="utf-8") as fh:
        fh.write('{"text": "one more line"}\n')
    recipe.mix.real = recipe.mix.real.model_copy(update={"split": "train"})
    assert _inputs(recipe)["real"] not in (None, before)
