"""The run directory: record shards, manifests, stage status. All I/O of stages goes here.

Layout (``runs/<name>/``)::

    recipe.lock.yaml       resolved recipe + package versions + fingerprint (no secrets)
    state.json             stage -> {status, fingerprint, summary}; written last
    <stage>/shard-*.parquet   append-only record shards
    <stage>/<table>.parquet   named tables (mix/train.parquet ...)
    <stage>/manifest.json  written when the stage completes

Every write goes to a temporary file in the same folder, is fsynced and then renamed over
the target, so a kill -9 at any moment leaves either the old file or the new one, never a
torn one. A stage counts as complete only once its manifest and state entry exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from synthtune.decisions import Decision
from synthtune.errors import StageError
from synthtune.records import Message, Payload, Record
from synthtune.secrets import redact, redact_value, registered

T = TypeVar("T")

_BOX = pa.struct(
    [
        ("label", pa.string()),
        ("x0", pa.int32()),
        ("y0", pa.int32()),
        ("x1", pa.int32()),
        ("y1", pa.int32()),
    ]
)
_MEDIA = pa.struct(
    [
        ("type", pa.string()),
        ("path", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("boxes", pa.list_(_BOX)),
        ("mask", pa.string()),
        ("sample_rate", pa.int32()),  # audio (records.AudioMedia)
        ("seconds", pa.float64()),
    ]
)
_MEDIA_FIELDS = {
    "image": ("type", "path", "width", "height", "boxes", "mask"),
    "audio": ("type", "path", "sample_rate", "seconds"),
}


def _media_rows(rows: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """A media column's structs back to their model's fields: the column holds the union
    of the image and audio fields, each row the ones of its type."""
    if rows is None:
        return None
    fields = _MEDIA_FIELDS
    return [
        {k: row[k] for k in fields[row.get("type") or "image"] if row.get(k) is not None}
        for row in rows
    ]


# ``media`` is last and nullable: shards written before it existed read back with None.
RECORD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("status", pa.string()),
        ("reasons", pa.list_(pa.string())),
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("label", pa.string()),
        ("lineage", pa.string()),
        ("quality", pa.string()),
        ("media", pa.list_(_MEDIA)),
    ]
)

_VERSIONED = ("synthtune", "torch", "transformers", "peft", "accelerate", "tokenizers")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _link_or_copy(source: str, target: str) -> None:
    """A hard link to a file that is only ever replaced whole (every write here is atomic),
    a copy of one written in place (SQLite) or where links are not possible."""
    if ".sqlite" not in Path(source).name:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copy2(source, target)


def atomic_write_text(path: Path, text: str) -> None:
    """Write text atomically, with every registered secret redacted (synthtune.secrets)."""
    atomic_write_bytes(path, redact(text).encode("utf-8"))


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True))


class UnsafeMediaPath(StageError):
    """A media path that is absolute or leaves its folder (``..``, a symlink out)."""


def resolve_inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing anything that would land outside ``root``: media paths
    come from record files, which a user may edit or import, so they are not trusted."""
    candidate = Path(relative)
    if not relative or candidate.is_absolute() or ".." in candidate.parts:
        raise UnsafeMediaPath(f"media path {relative!r} must be relative, without '..'")
    base = root.resolve()
    resolved = (base / candidate).resolve()
    if not resolved.is_relative_to(base):
        raise UnsafeMediaPath(f"media path {relative!r} leaves {base}")
    return resolved


def records_to_table(records: Iterable[Record]) -> pa.Table:
    """Records as an Arrow table; every text in them redacted of registered secrets."""
    rows = [
        {
            "id": r.id,
            "source": r.source,
            "status": r.status,
            "reasons": list(r.reasons),
            "messages": [m.model_dump() for m in r.payload.messages],
            "label": r.payload.label,
            "lineage": json.dumps(r.lineage, ensure_ascii=False, sort_keys=True),
            "quality": json.dumps(r.quality, ensure_ascii=False, sort_keys=True),
            "media": None
            if r.payload.media is None
            else [m.model_dump(mode="json") for m in r.payload.media],
        }
        for r in records
    ]
    if registered():  # a secret may have come back inside a reply or an error body
        rows = [redact_value(row) for row in rows]
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


def table_to_records(table: pa.Table) -> list[Record]:
    return [
        Record(
            id=row["id"],
            source=row["source"],
            status=row["status"],
            reasons=row["reasons"] or [],
            payload=Payload(
                messages=[Message(**m) for m in row["messages"]],
                label=row["label"],
                media=_media_rows(row["media"]),
            ),
            lineage=json.loads(row["lineage"]),
            quality=json.loads(row["quality"]),
        )
        for row in table.to_pylist()
    ]


def write_records(path: Path, records: Iterable[Record]) -> None:
    """Write records as one Parquet file, atomically."""
    sink = pa.BufferOutputStream()
    pq.write_table(records_to_table(records), sink, compression="zstd")
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def read_records(path: Path) -> list[Record]:
    return table_to_records(pq.read_table(path, schema=RECORD_SCHEMA))


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _next_order(state: dict[str, Any], stage: str) -> int:
    """1 + the highest completion order of the other stages: the order stages completed in
    (state.json is written with sorted keys, so the mapping itself does not keep it)."""
    others = [e.get("order", 0) for k, e in state["stages"].items() if k != stage]
    return 1 + max((o for o in others if isinstance(o, int)), default=0)


class RunStore:
    """One run directory. Stages read and write records only through this class."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ---- paths
    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def path(self, stage: str, name: str) -> Path:
        return self.stage_dir(stage) / name

    # ---- shards (append-only)
    def shard_paths(self, stage: str) -> list[Path]:
        return sorted(self.stage_dir(stage).glob("shard-*.parquet"))

    def append_shard(self, stage: str, records: list[Record]) -> Path:
        """Write ``records`` as the next shard of ``stage``; never overwrites a shard. Its
        SHA-256 goes beside it (``.sha256``), for :meth:`shard_intact` on resume."""
        existing = self.shard_paths(stage)
        index = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        path = self.stage_dir(stage) / f"shard-{index:05d}.parquet"
        write_records(path, records)
        atomic_write_text(path.with_suffix(".sha256"), _sha256(path))
        return path

    def shard_intact(self, path: Path) -> bool | None:
        """True when the shard holds the bytes it was written with, False when not, None
        when it has no digest (written before digests existed, or a crash came between the
        shard and its digest: the caller checks record ids instead)."""
        digest = path.with_suffix(".sha256")
        if not digest.exists():
            return None
        return digest.read_text(encoding="utf-8").strip() == _sha256(path)

    def read_shards(self, stage: str) -> list[Record]:
        out: list[Record] = []
        for path in self.shard_paths(stage):
            out.extend(read_records(path))
        return out

    # ---- media files (content-addressed, relative to the run directory)
    def media_path(self, relative: str) -> Path:
        """The file a record's media path names (see :func:`resolve_inside`)."""
        return resolve_inside(self.root, relative)

    def write_media(self, relative: str, data: bytes) -> Path:
        """Write a media file atomically, before any record that names it is flushed; a
        name that exists already holds the same bytes (names are content hashes)."""
        path = self.media_path(relative)
        if not path.exists():
            atomic_write_bytes(path, data)
        return path

    # ---- named tables
    def write_table(self, stage: str, name: str, records: list[Record]) -> Path:
        path = self.path(stage, f"{name}.parquet")
        write_records(path, records)
        return path

    def read_table(self, stage: str, name: str) -> list[Record]:
        return read_records(self.path(stage, f"{name}.parquet"))

    def write_json(self, stage: str, name: str, value: Any) -> Path:
        path = self.path(stage, name)
        atomic_write_json(path, value)
        return path

    def read_json(self, stage: str, name: str) -> Any:
        return json.loads(self.path(stage, name).read_text(encoding="utf-8"))

    # ---- stage state
    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    def state(self) -> dict[str, Any]:
        """``{"stages": {name: entry}}``. An unreadable state.json (truncated, not JSON, not
        the right shape) is rebuilt from the stages' manifests, which hold the same
        fingerprints: the damaged file is kept beside it as ``state.json.corrupt`` and the
        run resumes from the complete stages instead of failing."""
        if not self.state_path.exists():
            return {"stages": {}}
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            state = None
        stages = state.get("stages") if isinstance(state, dict) else None
        if isinstance(stages, dict) and all(isinstance(v, dict) for v in stages.values()):
            return state
        return self._rebuild_state()

    def _rebuild_state(self) -> dict[str, Any]:
        stages: dict[str, Any] = {}
        for manifest_path in sorted(self.root.glob("*/manifest.json")):
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError, OSError):
                continue  # that stage runs again
            if not isinstance(manifest, dict) or not isinstance(manifest.get("fingerprint"), str):
                continue
            name = manifest_path.parent.name
            summary = {
                k: v
                for k, v in manifest.items()
                if k not in ("stage", "fingerprint", "finished_at", "outputs")
            }
            stages[name] = {
                "status": "complete",
                "fingerprint": manifest["fingerprint"],
                "finished_at": manifest.get("finished_at"),
                "summary": summary,
            }
            if isinstance(manifest.get("outputs"), dict):
                stages[name]["outputs"] = manifest["outputs"]
        state = {"stages": stages, "rebuilt_from_manifests": True}
        shutil.copyfile(self.state_path, self.state_path.with_name("state.json.corrupt"))
        atomic_write_json(self.state_path, state)
        return state

    def stage_state(self, stage: str) -> dict[str, Any] | None:
        return self.state()["stages"].get(stage)

    def is_complete(self, stage: str, fingerprint: str, verify_outputs: bool = True) -> bool:
        """Complete for ``fingerprint``, its manifest present and (``verify_outputs``; off
        for a caller that has just run :meth:`damaged_outputs` itself) its files intact."""
        entry = self.stage_state(stage)
        return (
            entry is not None
            and entry.get("status") == "complete"
            and entry.get("fingerprint") == fingerprint
            and (self.stage_dir(stage) / "manifest.json").exists()
            and not (verify_outputs and self.damaged_outputs(stage))
        )

    def output_digests(self, stage: str) -> dict[str, str]:
        """SHA-256 of the stage's tables and JSON files (its folder's top level, the manifest
        aside): what the next run checks before trusting the stage as complete."""
        folder = self.stage_dir(stage)
        files = [*folder.glob("*.parquet"), *folder.glob("*.json")]
        return {f.name: _sha256(f) for f in sorted(files) if f.name != "manifest.json"}

    def damaged_outputs(self, stage: str) -> list[str]:
        """Files of a complete stage that are missing or no longer hold the bytes it wrote
        (truncated, garbled, edited): the runner then runs the stage again instead of
        reading them. Entries written before digests existed are trusted."""
        entry = self.stage_state(stage) or {}
        expected = entry.get("outputs")
        if not isinstance(expected, dict):
            return []
        found = self.output_digests(stage)
        return sorted(name for name, digest in expected.items() if found.get(name) != digest)

    def quarantine(self, path: Path) -> Path:
        """Move a damaged file aside (``<name>.corrupt-N``), kept for inspection; the
        caller redoes what it held."""
        n = 0
        while (target := path.with_name(f"{path.name}.corrupt-{n}")).exists():
            n += 1
        os.replace(path, target)
        sidecar = path.with_suffix(".sha256")
        if sidecar.exists():
            os.replace(sidecar, target.with_name(f"{sidecar.name}.corrupt-{n}"))
        return target

    def mark_complete(
        self,
        stage: str,
        fingerprint: str,
        summary: dict[str, Any],
        seconds: float | None = None,
    ) -> None:
        """Record a finished stage; ``seconds``, its wall time, goes into state.json (the
        report's seconds per stage)."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        outputs = self.output_digests(stage)
        manifest = {"stage": stage, "fingerprint": fingerprint, "finished_at": now, **summary}
        self.write_json(stage, "manifest.json", {**manifest, "outputs": outputs})
        state = self.state()
        state["stages"][stage] = {
            "status": "complete",
            "fingerprint": fingerprint,
            "finished_at": now,
            "summary": summary,
            "outputs": outputs,
            "order": _next_order(state, stage),
        }
        if seconds is not None:
            state["stages"][stage]["seconds"] = round(seconds, 2)
        atomic_write_json(self.state_path, state)

    def invalidate(self, stage: str) -> None:
        """Forget a stage's results: its folder and its state entry."""
        state = self.state()
        if state["stages"].pop(stage, None) is not None:
            atomic_write_json(self.state_path, state)
        shutil.rmtree(self.stage_dir(stage), ignore_errors=True)

    def reuse_stage(self, stage: str, sibling: RunStore) -> dict[str, Any]:
        """Take over ``sibling``'s complete ``stage`` (same fingerprint, checked by the
        caller): its folder is linked file by file into a hidden temporary folder, renamed
        into place, then marked complete here; returns the sibling's state entry.

        Files are hard links where the file system allows (copies otherwise), except SQLite
        files, which are written in place and so always copied. A crash before the state
        entry is written leaves the stage incomplete here: the next run redoes the reuse.
        """
        entry = sibling.stage_state(stage)
        if entry is None:
            raise StageError(f"{stage}: not complete in {sibling.root}, nothing to reuse")
        self.invalidate(stage)
        tmp = self.root / f".{stage}.reuse"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(sibling.stage_dir(stage), tmp, copy_function=_link_or_copy)
        os.replace(tmp, self.stage_dir(stage))
        state = self.state()
        order = _next_order(state, stage)
        state["stages"][stage] = {**entry, "reused_from": str(sibling.root), "order": order}
        atomic_write_json(self.state_path, state)
        return entry

    # ---- lock file
    def write_lock(self, recipe_dump: dict[str, Any], fingerprint: str) -> None:
        lock = {
            "fingerprint": fingerprint,
            "versions": package_versions(),
            "recipe": recipe_dump,
        }
        text = yaml.safe_dump(lock, allow_unicode=True, sort_keys=False)
        atomic_write_text(self.root / "recipe.lock.yaml", text)


class ReviewStore:
    """Review decisions in ``review/decisions.sqlite``: each one committed as it is made.

    SQLite in WAL mode makes every decision durable and atomic on its own, so closing the
    browser or killing the server loses nothing; a later decision on the same record replaces
    the earlier one in ``decisions`` (what the mix applies) and each reviewer's latest one is
    kept in ``reviews`` (agreement between reviewers); the full history is in ``history``.
    """

    def __init__(self, run_dir: Path) -> None:
        path = Path(run_dir) / "review" / "decisions.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS decisions (record_id TEXT PRIMARY KEY, body TEXT NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS history (body TEXT NOT NULL)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS reviews (record_id TEXT NOT NULL, reviewer TEXT NOT NULL,"
            " body TEXT NOT NULL, PRIMARY KEY (record_id, reviewer))"
        )
        with self._db:  # a database from before per-reviewer decisions: carry them over
            self._db.execute("BEGIN IMMEDIATE")
            for (body,) in self._db.execute("SELECT body FROM decisions").fetchall():
                decision = Decision.model_validate_json(body)
                self._db.execute(
                    "INSERT OR IGNORE INTO reviews VALUES (?, ?, ?)",
                    (decision.record_id, decision.reviewer, body),
                )

    def save(self, decision: Decision) -> None:
        body = decision.model_dump_json()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO decisions VALUES (?, ?)", (decision.record_id, body)
            )
            self._db.execute(
                "INSERT OR REPLACE INTO reviews VALUES (?, ?, ?)",
                (decision.record_id, decision.reviewer, body),
            )
            self._db.execute("INSERT INTO history VALUES (?)", (body,))

    def all(self) -> dict[str, Decision]:
        rows = self._db.execute("SELECT body FROM decisions ORDER BY record_id")
        return {d.record_id: d for d in (Decision.model_validate_json(b) for (b,) in rows)}

    def by_reviewer(self) -> dict[str, dict[str, Decision]]:
        """Each reviewer's latest decision per record: reviewer -> record id -> decision."""
        out: dict[str, dict[str, Decision]] = {}
        rows = self._db.execute("SELECT body FROM reviews ORDER BY reviewer, record_id")
        for (body,) in rows:
            decision = Decision.model_validate_json(body)
            out.setdefault(decision.reviewer, {})[decision.record_id] = decision
        return out

    def close(self) -> None:
        self._db.close()


def reviewer_decisions(run_dir: Path) -> dict[str, dict[str, Decision]]:
    """Each reviewer's decisions (``ReviewStore.by_reviewer``); empty when nobody reviewed."""
    return _read_reviews(run_dir, ReviewStore.by_reviewer, {})


def review_decisions(run_dir: Path) -> dict[str, Decision]:
    """Decisions of a run (empty when nobody reviewed yet); never creates the database."""
    return _read_reviews(run_dir, ReviewStore.all, {})


def _read_reviews(run_dir: Path, read: Callable[[ReviewStore], T], empty: T) -> T:
    """``read`` on the run's review store, or ``empty`` without creating it when there is
    none."""
    if not (Path(run_dir) / "review" / "decisions.sqlite").exists():
        return empty
    store = ReviewStore(run_dir)
    try:
        return read(store)
    finally:
        store.close()
