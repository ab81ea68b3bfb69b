"""Import human-written data into records (``source: real``) with a column mapping.

One reader per format (JSONL, a JSON array, CSV/TSV, Parquet, a ``save_to_disk`` folder, a
folder for ``datasets.load_dataset``) turns the source into numbered rows; one mapping turns a
row into a record (plain text, prompt/response, or chat ``messages``), so every format yields
the same records for the same rows. CSV and Parquet are read with pyarrow (already a core
dependency), Hugging Face folders with ``datasets``.

Splits (``load_real_splits``): one ``path`` is split by a hash of each record's id; with your
own ``train`` / ``validation`` / ``test`` files each file is its split, and a split without a
file is hash-split from ``train``. Rows are never dropped silently: duplicates within a file
and overlaps between splits are counted (``RealSplits.stats``), and dropped only with
``mix.real.duplicates: drop``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from synthtune.config import RealDataConfig
from synthtune.errors import StageError
from synthtune.records import (
    AudioMedia,
    Media,
    Message,
    Payload,
    Record,
    Role,
    payload_id,
    split_of,
)

_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
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


def detect_format(path: Path, field: str = "path") -> str:
    """``auto`` resolved: a folder written by ``save_to_disk`` is ``hf-disk``, any other
    folder ``hf``, a file is known by its suffix."""
    if path.is_dir():
        return "hf-disk" if any((path / m).exists() for m in _SAVED_MARKERS) else "hf"
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise StageError(
            f"mix.real.{field}: cannot tell the format of {path} from its suffix "
            f"{path.suffix!r} (known: {', '.join(_SUFFIXES)}); set mix.real.format to one "
            f"of {', '.join(_READERS)}"
        )
    return fmt


# --------------------------------------------------------------------------- readers
def _decode(path: Path, encoding: str) -> str:
    """The file's text; a byte the encoding cannot read is an error naming the line."""
    data = path.read_bytes()
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise StageError(
            f"{path}:{line}: not valid {encoding} text (byte 0x{data[exc.start]:02x} at "
            f"offset {exc.start}); set mix.real.encoding to the file's encoding (e.g. "
            "latin-1, cp1252, utf-16, gb18030)"
        ) from None


def _object_rows(path: Path, items: Iterable[tuple[int, Any]], unit: str) -> RealRows:
    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        for number, row in items:
            if not isinstance(row, dict):
                raise StageError(
                    f"{path}:{number}: expected a JSON object per {unit}, got {type(row).__name__}"
                )
            yield number, row

    return RealRows(str(path), None, rows())


def _jsonl_items(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    # split on "\n" only: str.splitlines also breaks at U+2028 and other separators that
    # JSON allows unescaped inside strings (tweets carry them)
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise StageError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None


def _read_jsonl(path: Path, cfg: RealDataConfig) -> RealRows:
    return _object_rows(path, _jsonl_items(path, _decode(path, cfg.encoding)), "line")


def _read_json(path: Path, cfg: RealDataConfig) -> RealRows:
    """A JSON array of objects (numbered by position; messages name the item); a ``.json``
    file holding one object per line is read as JSONL."""
    text = _decode(path, cfg.encoding)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several top-level values: JSON Lines named .json
            return _object_rows(path, _jsonl_items(path, text), "line")
        raise StageError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(value, dict):
        lists = [k for k, v in value.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise StageError(
                f"{path}: expected a JSON array of records (or an object holding exactly "
                f"one array), got an object with keys {', '.join(map(str, value)) or '(none)'}"
            )
        value = value[lists[0]]
    if not isinstance(value, list):
        raise StageError(f"{path}: expected a JSON array of records, got {type(value).__name__}")
    return _object_rows(path, enumerate(value, start=1), "array item")


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
    text_columns = [column for _, column in _text_columns(cfg) if column]
    utf8 = cfg.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    if utf8:
        _decode(path, cfg.encoding)  # pyarrow names no line for bad UTF-8; this does
    try:
        table = pa_csv.read_csv(
            path,
            # single-threaded parsing makes pyarrow name the bad row ("Row #N")
            read_options=pa_csv.ReadOptions(
                use_threads=False, encoding="utf8" if utf8 else cfg.encoding
            ),
            parse_options=pa_csv.ParseOptions(
                delimiter="\t" if path.suffix.lower() == ".tsv" else ","
            ),
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
    "json": _read_json,
    "csv": _read_csv,
    "parquet": _read_parquet,
    "hf-disk": _read_hf_disk,
    "hf": _read_hf,
}


# --------------------------------------------------------------------------- mapping
_ROLES: dict[str, Role] = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
}


def _text_columns(cfg: RealDataConfig) -> list[tuple[str, str]]:
    """(recipe field, column) pairs of the text the payload is built from, and the label."""
    if cfg.messages_field:
        pairs = [("messages_field", cfg.messages_field)]
    elif cfg.prompt_field and cfg.response_field:
        pairs = [("prompt_field", cfg.prompt_field), ("response_field", cfg.response_field)]
    else:
        assert cfg.text_field is not None  # RealDataConfig requires one mapping
        pairs = [("text_field", cfg.text_field)]
    if cfg.label_field:
        pairs.append(("label_field", cfg.label_field))
    return pairs


def _mapped_columns(cfg: RealDataConfig) -> list[tuple[str, str]]:
    image = [("image_field", cfg.image_field)] if cfg.image_field else []
    audio = [("audio_field", cfg.audio_field)] if cfg.audio_field else []
    slots = [("slots", column) for column in cfg.slot_names()]
    return _text_columns(cfg) + image + audio + slots


def _with_messages(cfg: RealDataConfig, columns: Iterable[str]) -> RealDataConfig:
    """Chat data without a text column reads its ``messages`` column (auto-detection)."""
    columns = set(columns)
    if (
        cfg.messages_field is None
        and cfg.prompt_field is None
        and cfg.text_field not in columns
        and "messages" in columns
    ):
        return cfg.model_copy(update={"messages_field": "messages"})
    return cfg


def _missing(where: str, column: str, field: str, available: Iterable[str]) -> StageError:
    return StageError(
        f"{where}: column {column!r} (mix.real.{field}) not found; available columns: "
        f"{', '.join(available) or '(none)'}. Set mix.real.{field} to one of them."
    )


def _check_columns(source: str, columns: list[str], cfg: RealDataConfig) -> None:
    for field_name, column in _mapped_columns(cfg):
        if column not in columns:
            raise _missing(source, column, field_name, columns)


def _text(row: dict[str, Any], field: str, column: str, where: str) -> str:
    if column not in row:
        raise _missing(where, column, field, row)
    value = row[column]
    if field == "label_field" and isinstance(value, bool | int | float):
        # class ids are labels too; a float column of whole numbers (Parquet, pandas with
        # missing values) gives 1.0 for 1: the same label as the integer
        whole = isinstance(value, float) and value.is_integer()
        value = str(int(value)) if whole else str(value)
    if not isinstance(value, str) or not value.strip():
        raise StageError(
            f"{where}: column {column!r} (mix.real.{field}) is empty or not text: {value!r}"
        )
    return value.strip()


def _messages(row: dict[str, Any], column: str, where: str) -> list[Message]:
    """Chat turns from ``[{role, content}, ...]`` (or ShareGPT's ``{from, value}``); a CSV
    or Parquet cell may hold them as JSON text."""
    if column not in row:
        raise _missing(where, column, "messages_field", row)
    turns = row[column]
    if isinstance(turns, str):
        try:
            turns = json.loads(turns)
        except json.JSONDecodeError:
            turns = None
    if not isinstance(turns, list) or not turns:
        raise StageError(
            f"{where}: column {column!r} (mix.real.messages_field) must be a non-empty list "
            f"of {{role, content}} turns, got {row[column]!r:.80}"
        )
    messages = []
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise StageError(f"{where}: {column}[{number}] is not an object: {turn!r:.80}")
        role = _ROLES.get(str(turn.get("role", turn.get("from", ""))).lower())
        content = turn.get("content", turn.get("value"))
        if role is None:
            raise StageError(
                f"{where}: {column}[{number}] has role {turn.get('role', turn.get('from'))!r}; "
                f"expected one of {', '.join(sorted(_ROLES))}"
            )
        if not isinstance(content, str) or not content.strip():
            raise StageError(f"{where}: {column}[{number}] has empty or non-text content")
        messages.append(Message(role=role, content=content.strip()))
    return messages


def _jsonable(value: Any) -> Any:
    # Slot values go to lineage, which the store writes as JSON: dates, decimals and the
    # like become their text, as they would in a JSON export of the same table.
    return json.loads(json.dumps(value, default=str))


def _audio(row: dict[str, Any], cfg: RealDataConfig, where: str, data: Path) -> AudioMedia:
    """The row's clip (``mix.real.audio_field``) with an absolute path, its rate and length
    read from the WAV header (scipy reads the header without the samples: mmap)."""
    from scipy.io import wavfile

    assert cfg.audio_field is not None
    name = _text(row, "audio_field", cfg.audio_field, where)
    path = ((data if data.is_dir() else data.parent) / name).resolve()
    try:
        rate, samples = wavfile.read(str(path), mmap=True)
        frames = len(samples)
    except (OSError, ValueError) as exc:
        raise StageError(f"{where}: clip {name!r} (mix.real.audio_field): {exc}") from None
    if not frames:
        raise StageError(f"{where}: clip {name!r} (mix.real.audio_field) holds no samples")
    return AudioMedia(type="audio", path=str(path), sample_rate=rate, seconds=frames / rate)


def _media(
    row: dict[str, Any], cfg: RealDataConfig, where: str, data: Path
) -> tuple[Media | AudioMedia, ...] | None:
    """The row's image (``mix.real.image_field``) or clip (``audio_field``) as media with an
    absolute path: real files stay where the recipe points (relative names resolve against
    the data file's folder)."""
    if cfg.audio_field is not None:
        return (_audio(row, cfg, where, data),)
    if cfg.image_field is None:
        return None
    from PIL import Image, UnidentifiedImageError

    name = _text(row, "image_field", cfg.image_field, where)
    path = ((data if data.is_dir() else data.parent) / name).resolve()
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise StageError(f"{where}: image {name!r} (mix.real.image_field): {exc}") from None
    return (Media(path=str(path), width=width, height=height),)


def _record(
    row: dict[str, Any], cfg: RealDataConfig, where: str, lineage: dict, data: Path
) -> Record:
    text = {
        field: _text(row, field, column, where)
        for field, column in _text_columns(cfg)
        if field != "messages_field"
    }
    media = _media(row, cfg, where, data)
    if cfg.messages_field:
        messages = _messages(row, cfg.messages_field, where)
    elif "text_field" in text:
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
    column = cfg.image_field or cfg.audio_field
    return str(row[column]).strip() if column else ""


# --------------------------------------------------------------------------- files and splits
@dataclass
class FileRead:
    """One data file's records (duplicates included unless dropped) and its counts."""

    records: list[Record]
    rows: int
    duplicates: int  # rows whose content appeared earlier in the same file
    dropped: int


# A DatasetDict named by mix.real.validation / test (often the same folder as train) is read
# at the split of that name, unless mix.real.split is set explicitly.
_FIELD_SPLITS = {"validation": ("validation", "val", "dev"), "test": ("test",)}


def _read_rows(path: Path, fmt: str, cfg: RealDataConfig, field: str) -> RealRows:
    reader = _READERS[fmt]
    if fmt in ("hf-disk", "hf") and "split" not in cfg.model_fields_set:
        for name in _FIELD_SPLITS.get(field, ()):
            try:
                return reader(path, cfg.model_copy(update={"split": name}))
            except StageError as exc:
                if "has no split" not in str(exc):
                    raise
    return reader(path, cfg)


def read_real_file(cfg: RealDataConfig, path: Path, field: str = "path") -> FileRead:
    """Read one data file (``field`` names the recipe field that points at it) with ``cfg``'s
    mapping. Lineage keeps ``file`` (the file or folder name), ``row`` (from 1; the line in
    JSONL) and, with ``cfg.slots``, ``slots``. Raises ``StageError`` naming the file, row
    and recipe field."""
    path = Path(path)
    if not path.exists():
        raise StageError(
            f"real data file not found: {path} (mix.real.{field}, relative to the recipe)"
        )
    fmt = detect_format(path, field) if cfg.format == "auto" else cfg.format
    rows = _read_rows(path, fmt, cfg, field)
    listed = list(rows.rows)
    columns = rows.columns if rows.columns is not None else (listed[0][1] if listed else [])
    cfg = _with_messages(cfg, columns)
    if rows.columns is not None:
        _check_columns(rows.source, rows.columns, cfg)
    records: list[Record] = []
    seen: set[str] = set()
    duplicates = 0
    for number, row in listed:
        where = (
            f"{rows.source}:{number}" if fmt in ("jsonl", "json") else f"{rows.source} row {number}"
        )
        record = _record(row, cfg, where, {"file": path.name, "row": number}, path)
        if record.id in seen:
            duplicates += 1
            if cfg.duplicates == "drop":
                continue
        seen.add(record.id)
        records.append(record)
    if not records:
        raise StageError(f"mix.real.{field}: real data file is empty: {rows.source}")
    return FileRead(records, len(listed), duplicates, len(listed) - len(records))


def load_real(cfg: RealDataConfig) -> list[Record]:
    """The records of ``mix.real.path`` (or of the ``train`` file), in file order;
    duplicates are kept unless ``cfg.duplicates`` is ``drop``."""
    field_name = "path" if cfg.path is not None else "train"
    return read_real_file(cfg, cfg.source_path(), field_name).records


SPLIT_FIELDS = {"train": "train", "val": "validation", "test": "test"}


@dataclass
class RealSplits:
    """Real records per split (``train``, ``val``, ``test``) and what reading them found."""

    splits: dict[str, list[Record]]
    stats: dict[str, Any] = field(default_factory=dict)


def _overlap(a: list[Record], b: list[Record]) -> int:
    ids = {r.id for r in b}
    return sum(r.id in ids for r in a)


def load_real_splits(recipe: Any) -> RealSplits:
    """The real train/val/test records the run uses (see the module docstring).

    With your own files, a test row that also appears in train or validation is leakage: it
    is counted in ``stats["overlap"]`` and, with ``duplicates: drop``, removed from train and
    validation (the test file is kept whole)."""
    cfg: RealDataConfig = recipe.mix.real
    mix = recipe.mix
    if cfg.path is not None:
        read = read_real_file(cfg, cfg.path, "path")
        reads = {"path": read}
        pool = read.records
        own: dict[str, list[Record]] = {}
    else:
        reads = {
            split: read_real_file(cfg, path, SPLIT_FIELDS[split])
            for split, path in (("train", cfg.train), ("val", cfg.validation), ("test", cfg.test))
            if path is not None
        }
        pool = reads["train"].records
        own = {split: read.records for split, read in reads.items() if split != "train"}
    # a split with a file of its own takes no share of the hash split
    val_fraction = 0.0 if "val" in own else mix.val_fraction
    test_fraction = 0.0 if "test" in own else mix.test_fraction
    splits: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for record in pool:
        splits[split_of(record.id, recipe.seed, val_fraction, test_fraction)].append(record)
    splits.update(own)
    for name, records in splits.items():
        for record in records:
            record.lineage["split"] = name
    overlap = {
        "train_test": _overlap(splits["train"], splits["test"]),
        "train_validation": _overlap(splits["train"], splits["val"]),
        "validation_test": _overlap(splits["val"], splits["test"]),
    }
    leaked = 0
    if cfg.duplicates == "drop" and own:
        test_ids = {r.id for r in splits["test"]}
        for split in ("train", "val"):
            kept = [r for r in splits[split] if r.id not in test_ids]
            leaked += len(splits[split]) - len(kept)
            splits[split] = kept
    stats = {
        "files": {
            ("path" if name == "path" else SPLIT_FIELDS[name]): str(
                cfg.path if name == "path" else getattr(cfg, SPLIT_FIELDS[name])
            )
            for name in reads
        },
        "rows_read": sum(read.rows for read in reads.values()),
        "duplicates": sum(read.duplicates for read in reads.values()),
        "duplicates_dropped": sum(read.dropped for read in reads.values()) + leaked,
        "overlap": overlap,
        "rows": {split: len(records) for split, records in splits.items()},
        "duplicates_policy": cfg.duplicates,
    }
    return RealSplits(splits, stats)


def real_texts(recipe: Any, test: bool) -> list[str]:
    """Texts of the real records in the test split (``test=True``) or outside it; empty
    without real data. The splits are ``load_real_splits``', the ones the mix stage uses."""
    if recipe.mix.real is None:
        return []
    splits = load_real_splits(recipe).splits
    chosen = ["test"] if test else ["train", "val"]
    return [r.payload.text("all") for name in chosen for r in splits[name]]
