"""Import human-written data into records (``source: real``) with a field mapping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthtune.config import RealDataConfig
from synthtune.errors import StageError
from synthtune.records import Message, Payload, Record, split_of


def _payload(row: dict[str, object], cfg: RealDataConfig, where: str) -> Payload:
    def field(name: str) -> str:
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            raise StageError(f"{where}: field {name!r} is missing or not a non-empty string")
        return value.strip()

    if cfg.prompt_field and cfg.response_field:
        messages = [
            Message(role="user", content=field(cfg.prompt_field)),
            Message(role="assistant", content=field(cfg.response_field)),
        ]
    else:
        assert cfg.text_field is not None
        messages = [Message(role="assistant", content=field(cfg.text_field))]
    return Payload(messages=messages)


def load_real(cfg: RealDataConfig) -> list[Record]:
    """Read a JSONL file into records; exact duplicates (same payload id) are kept once."""
    path = Path(cfg.path)
    if not path.exists():
        raise StageError(f"real data file not found: {path} (mix.real.path)")
    records: dict[str, Record] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StageError(f"{where}: not valid JSON ({exc.msg})") from None
            record = Record.create(
                "real", _payload(row, cfg, where), lineage={"file": path.name, "line": lineno}
            )
            records.setdefault(record.id, record)
    if not records:
        raise StageError(f"real data file is empty: {path}")
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
