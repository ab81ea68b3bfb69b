"""Import human-written data into records (``source: real``) with a column mapping.

One reader per format (JSONL, CSV/TSV, Parquet, a ``save_to_disk`` folder, a folder for
``datasets.load_dataset``) turns the source into numbered rows; one mapping turns a row into
a record, so every format yields the same records for the same rows. CSV and Parquet are read
with pyarrow (already a core dependency), Hugging Face folders with ``datasets``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from synthtune.config import RealDataConfig
from synthtune.errors import StageError
from synthtune.records import Media, Message, Payload, Record, Role, payload_id, split_of

_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Files `Dataset.save_to_disk` / `DatasetDict.save_to_disk` write (datasets.config names).
_SAVED_MARKERS = ("state.json", "dataset_dict.json")


@dataclass(frozen=True)
class RealRows:
    """What a reader yields: ``source`` names the data in messages (path, and split if any);
    ``columns`` are known up front for tabular data and ``None`` where rows may differ
    (JSONL); ``rows`` are ``(row number, row)`` pairs, numbered from 1 (JSONL: the line)."""

    source: str
    columns: list[str] | None
    rows: Iterable[tuple[int, dict[str, Any]]]


Reader = Callable[[Path, RealDataConfig], RealRows]


def detect_format(path: Path) -> str:
    """``auto`` resolved: a folder written by ``save_to_disk`` is ``hf-disk``, any other
    folder ``hf``, a file is known by its suffix."""
    if path.is_dir():
        return "hf-disk" if any((path / m).exists() for m in _SAVED_MARKERS) else "hf"
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise StageError(
            f"mix.real.format: cannot tell the format of {path} from its suffix "
            f"{path.suffix!r} (known: {', '.join(_SUFFIXES)}); set mix.real.format to one "
            f"of {', '.join(_READERS)}"
        )
    return fmt


# --------------------------------------------------------------------------- readers
def _read_jsonl(path: Path, cfg: RealDataConfig) -> RealRows:
    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise StageError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise StageError(f"{path}:{lineno}: expected a JSON object per line")
                yield lineno, row

    return RealRows(str(path), None, rows())


def _table_rows(source: str, table: pa.Table) -> RealRows:
    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        number = 0
        for batch in table.to_batches():
            for row in batch.to_pylist():
                number += 1
                yield number, row

    return RealRows(source, list(table.column_names), rows())


def _read_csv(path: Path, cfg: RealDataConfig) -> RealRows:
    # Mapped text columns are read as strings so "0"/"1" labels or numeric-looking answers
    # stay text; other columns (slots) keep pyarrow's inferred types, like JSON numbers.
    text_columns = [column for _, column in _text_columns(cfg)]
    try:
        table = pa_csv.read_csv(
            path,
            # single-threaded parsing makes pyarrow name the bad row ("Row #N")
            read_options=pa_csv.ReadOptions(use_threads=False),
            parse_options=pa_csv.ParseOptions(delimiter="\t" if path.suffix == ".tsv" else ","),
            convert_options=pa_csv.ConvertOptions(
                column_types={column: pa.string() for column in text_columns}
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise StageError(
            f"{path}: cannot read as CSV: {exc} (the header is row 1; mix.real.path)"
        ) from None
    return _table_rows(str(path), table)


def _read_parquet(path: Path, cfg: RealDataConfig) -> RealRows:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise StageError(f"{path}: cannot read as Parquet: {exc} (mix.real.path)") from None
    return _table_rows(str(path), table)


def _read_hf_disk(path: Path, cfg: RealDataConfig) -> RealRows:
    import datasets  # imported here: heavy, and only these two formats need it

    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as exc:
        raise StageError(f"{path}: not a save_to_disk folder: {exc} (mix.real.path)") from None
    return _dataset_rows(path, loaded, cfg)


def _read_hf(path: Path, cfg: RealDataConfig) -> RealRows:
    import datasets
    from datasets.exceptions import DatasetsError

    if not path.is_dir():
        raise StageError(
            f"mix.real.path: format hf reads a folder (with mix.real.data_files inside it), "
            f"got the file {path}; set mix.real.format to jsonl, csv or parquet"
        )
    try:
        loaded = datasets.load_dataset(str(path), data_files=cfg.data_files)
    except (OSError, ValueError, DatasetsError) as exc:
        raise StageError(
            f"{path}: datasets.load_dataset failed: {exc} (mix.real.path, mix.real.data_files)"
        ) from None
    return _dataset_rows(path, loaded, cfg)


def _dataset_rows(path: Path, loaded: Any, cfg: RealDataConfig) -> RealRows:
    """Rows of a ``datasets.Dataset``, or of ``cfg.split`` of a ``DatasetDict``; class
    labels (``ClassLabel`` columns) become their names, as a text label would be."""
    from datasets import ClassLabel, DatasetDict

    source = str(path)
    if isinstance(loaded, DatasetDict):
        if cfg.split not in loaded:
            raise StageError(
                f"mix.real.split: {path} has no split {cfg.split!r}; available splits: "
                f"{', '.join(loaded)}"
            )
        loaded, source = loaded[cfg.split], f"{path} [{cfg.split}]"
    names = {c: f for c, f in loaded.features.items() if isinstance(f, ClassLabel)}

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        for number, row in enumerate(loaded, start=1):
            for column, feature in names.items():
                if isinstance(row[column], int) and row[column] >= 0:
                    row[column] = feature.int2str(row[column])
            yield number, row

    return RealRows(source, list(loaded.column_names), rows())


_READERS: dict[str, Reader] = {
    "jsonl": _read_jsonl,
    "csv": _read_csv,
    "parquet": _read_parquet,
    "hf-disk": _read_hf_disk,
    "hf": _read_hf,
}


# --------------------------------------------------------------------------- mapping
def _text_columns(cfg: RealDataConfig) -> list[tuple[str, str]]:
    """(recipe field, column) pairs of the text the payload is built from, and the label."""
    if cfg.prompt_field and cfg.response_field:
        pairs = [("prompt_field", cfg.prompt_field), ("response_field", cfg.response_field)]
    else:
        assert cfg.text_field is not None  # RealDataConfig requires one mapping
        pairs = [("text_field", cfg.text_field)]
    if cfg.label_field:
        pairs.append(("label_field", cfg.label_field))
    return pairs


def _mapped_columns(cfg: RealDataConfig) -> list[tuple[str, str]]:
    image = [("image_field", cfg.image_field)] if cfg.image_field else []
    return _text_columns(cfg) + image + [("slots", column) for column in cfg.slot_names()]


def _missing(where: str, column: str, field: str, available: Iterable[str]) -> StageError:
    return StageError(
        f"{where}: column {column!r} (mix.real.{field}) not found; available columns: "
        f"{', '.join(available) or '(none)'}. Set mix.real.{field} to one of them."
    )


def _check_columns(rows: RealRows, cfg: RealDataConfig) -> None:
    if rows.columns is None:
        return
    for field, column in _mapped_columns(cfg):
        if column not in rows.columns:
            raise _missing(rows.source, column, field, rows.columns)


def _text(row: dict[str, Any], field: str, column: str, where: str) -> str:
    if column not in row:
        raise _missing(where, column, field, row)
    value = row[column]
    if isinstance(value, int) and not isinstance(value, bool) and field == "label_field":
        value = str(value)  # integer class ids are labels too
    if not isinstance(value, str) or not value.strip():
        raise StageError(
            f"{where}: column {column!r} (mix.real.{field}) is empty or not text: {value!r}"
        )
    return value.strip()


def _jsonable(value: Any) -> Any:
    # Slot values go to lineage, which the store writes as JSON: dates, decimals and the
    # like become their text, as they would in a JSON export of the same table.
    return json.loads(json.dumps(value, default=str))


def _media(row: dict[str, Any], cfg: RealDataConfig, where: str) -> tuple[Media, ...] | None:
    """The row's image (``mix.real.image_field``) as media with an absolute path: real images
    stay where the recipe points (relative names resolve against the data file's folder)."""
    if cfg.image_field is None:
        return None
    from PIL import Image, UnidentifiedImageError

    name = _text(row, "image_field", cfg.image_field, where)
    data = Path(cfg.path)
    path = ((data if data.is_dir() else data.parent) / name).resolve()
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise StageError(f"{where}: image {name!r} (mix.real.image_field): {exc}") from None
    return (Media(path=str(path), width=width, height=height),)


def _record(row: dict[str, Any], cfg: RealDataConfig, where: str, lineage: dict) -> Record:
    text = {field: _text(row, field, column, where) for field, column in _text_columns(cfg)}
    media = _media(row, cfg, where)
    if "text_field" in text:
        # plain text is a reply; beside an image it is the caption, the user turn (as the
        # image strategy writes it), so real and generated image records compare alike
        role: Role = "user" if media else "assistant"
        messages = [Message(role=role, content=text["text_field"])]
    else:
        messages = [
            Message(role="user", content=text["prompt_field"]),
            Message(role="assistant", content=text["response_field"]),
        ]
    slots: dict[str, Any] = {}
    for column, slot in cfg.slot_names().items():
        if column not in row:
            raise _missing(where, column, "slots", row)
        if row[column] is not None:  # an empty cell leaves the slot unset
            slots[slot] = _jsonable(row[column])
    if cfg.slots:
        lineage = {**lineage, "slots": slots}
    payload = Payload(messages=messages, label=text.get("label_field"), media=media)
    if not media:
        return Record.create("real", payload, lineage=lineage)
    # the id (hence the held-out split) must not depend on where the data folder sits: hash
    # the payload with the image named as the data file names it
    named = payload.model_copy(
        update={"media": (media[0].model_copy(update={"path": _image_name(row, cfg)}),)}
    )
    return Record(id=payload_id(named), source="real", payload=payload, lineage=lineage)


def _image_name(row: dict[str, Any], cfg: RealDataConfig) -> str:
    return str(row[cfg.image_field]).strip() if cfg.image_field else ""


def load_real(cfg: RealDataConfig) -> list[Record]:
    """Read ``cfg.path`` in ``cfg.format`` into records with ``cfg``'s column mapping.

    Exact duplicates (same payload id) are kept once, the first one. Lineage keeps ``file``
    (the file or folder name), ``row`` (from 1; the line number in JSONL) and, with
    ``cfg.slots``, ``slots``. Raises ``StageError`` naming the file, row and recipe field.
    """
    path = Path(cfg.path)
    if not path.exists():
        raise StageError(
            f"real data file not found: {path} (mix.real.path, relative to the recipe)"
        )
    fmt = detect_format(path) if cfg.format == "auto" else cfg.format
    rows = _READERS[fmt](path, cfg)
    _check_columns(rows, cfg)
    records: dict[str, Record] = {}
    for number, row in rows.rows:
        where = f"{rows.source}:{number}" if fmt == "jsonl" else f"{rows.source} row {number}"
        record = _record(row, cfg, where, {"file": path.name, "row": number})
        records.setdefault(record.id, record)
    if not records:
        raise StageError(f"real data file is empty: {rows.source} (mix.real.path)")
    return list(records.values())


def real_texts(recipe: Any, test: bool) -> list[str]:
    """Texts of the real records in the test split (``test=True``) or outside it; empty
    without real data. The split is ``records.split_of``, the one the mix stage uses."""
    mix = recipe.mix
    if mix.real is None:
        return []
    return [
        r.payload.text("all")
        for r in load_real(mix.real)
        if (split_of(r.id, recipe.seed, mix.val_fraction, mix.test_fraction) == "test") == test
    ]
