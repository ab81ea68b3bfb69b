"""Argilla interchange: export the review sample as an Argilla dataset folder, import the
annotated records back as review decisions.

The folder has the layout ``argilla.Dataset.to_disk`` writes (argilla 2.x,
``datasets/_io/_disk.py``): ``.argilla/dataset.json`` (the dataset model),
``.argilla/settings.json`` (``Settings.to_json``) and ``records.json`` (``JsonIO.to_json``).
A user loads it into their server with ``rg.Dataset.from_disk(path, client=client)``.

Why not build it with ``rg.TextField`` / ``rg.LabelQuestion`` / ``rg.Settings``: their
constructors fetch a client (``FieldBase.__init__`` -> ``Argilla._get_default()``) and creating
one checks the connection (``APIClient._validate_connection`` -> ``GET /api/v1/me``), so they
need a running server. The settings are therefore built from the pydantic models those classes
serialise (``argilla._models``: ``FieldModel``, ``QuestionModel``, ``MetadataFieldModel``,
``DatasetModel``), composed the way ``Settings.serialize`` composes them; the records are real
``rg.Record`` objects written by argilla's own ``JsonIO.to_json``, which needs no server. The
tests read the folder back with ``Settings.from_json`` and ``Dataset.from_disk``.

Import reads what the installed client writes: a ``to_disk`` folder or its ``records.json``
(``records.to_json`` / ``to_list(flatten=False)``: responses without their status), and the
JSON or JSONL list of ``records.to_list(flatten=True)`` (responses with their status).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from synthtune.decisions import Decision
from synthtune.errors import SynthtuneError
from synthtune.records import Record, stratum_of, tier_outcome
from synthtune.review.reasons import machine_lines

INSTALL_HINT = "pip install 'synthtune[argilla]'"
VERDICTS = ("accept", "reject", "edit")
QUESTIONS = ("decision", "reason", "edited_reply")
METADATA = {
    "record_id": "Record id",
    "template": "Template",
    "stratum": "Stratum",
    "outcome": "Tier outcome",
}
GUIDELINES = """Review each reply written for the prompt.

* **accept** - the reply is correct, safe and in the right tone.
* **reject** - it is wrong or unusable; write the **reason** (required to reject).
* **edit** - it is fixable; write the corrected reply in **edited_reply** and the **reason**.

Submit each record (drafts and discarded records are not imported)."""


class ArgillaExchangeError(SynthtuneError):
    """The argilla client is missing, or a file is not an Argilla export we can read."""

    exit_code = 2


def require_argilla() -> ModuleType:
    """The ``argilla`` module, or an error that names the extra to install."""
    try:
        import argilla
    except ImportError as exc:
        raise ArgillaExchangeError(
            f"the Argilla format needs the argilla client ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return argilla


def argilla_settings(guidelines: str = GUIDELINES) -> dict[str, Any]:
    """The dataset settings as ``Settings.serialize()`` produces them (what ``settings.json``
    holds): fields system/prompt/response/machine (the tiers' reasons), questions
    decision/reason/edited_reply, terms metadata record_id/template/stratum/outcome, one
    submitted response completes a record."""
    require_argilla()
    from argilla._models import (
        FieldModel,
        LabelQuestionSettings,
        MetadataFieldModel,
        QuestionModel,
        TermsMetadataPropertySettings,
        TextFieldSettings,
        TextQuestionSettings,
    )

    def typed(model: FieldModel | QuestionModel) -> dict[str, Any]:
        # SettingsPropertyBase.serialize adds the settings type next to the model dump
        return {**model.model_dump(), "type": model.settings.type}

    fields = [
        FieldModel(name=name, title=title, required=required, settings=TextFieldSettings())
        for name, title, required in (
            ("system", "System prompt", False),
            ("prompt", "Prompt", True),
            ("response", "Reply", True),
            ("machine", "Why the machine decided", False),
        )
    ]
    options = [{"text": verdict, "value": verdict} for verdict in VERDICTS]
    questions = [
        QuestionModel(
            name="decision", title="Decision", settings=LabelQuestionSettings(options=options)
        ),
        QuestionModel(
            name="reason",
            title="Reason (required to reject or edit)",
            required=False,
            settings=TextQuestionSettings(),
        ),
        QuestionModel(
            name="edited_reply",
            title="Corrected reply (for edit)",
            required=False,
            settings=TextQuestionSettings(),
        ),
    ]
    metadata = [
        MetadataFieldModel(name=name, title=title, settings=TermsMetadataPropertySettings())
        for name, title in METADATA.items()
    ]
    return {
        "guidelines": guidelines,
        "questions": [typed(q) for q in questions],
        "fields": [typed(f) for f in fields],
        "vectors": [],
        "metadata": [m.model_dump() for m in metadata],
        "allow_extra_metadata": False,
        "distribution": {"strategy": "overlap", "min_submitted": 1},
        "mapping": None,
    }


def machine_reasons(record: Record) -> list[str]:
    """Why the tiers decided what they did, one line each (the review page's lines)."""
    return [line["text"] for line in machine_lines(record)]


def argilla_record(record: Record, stratify_by: list[str]) -> Any:
    """One review item as an ``rg.Record``: its id is our record id (Argilla keeps it as the
    external id, so annotations come back under it)."""
    rg = require_argilla()
    messages = record.payload.messages
    system = "\n".join(m.content for m in messages if m.role == "system")
    prompt = "\n".join(m.content for m in messages if m.role not in ("system", "assistant"))
    fields = {
        "prompt": prompt,
        "response": record.payload.text("response"),
        "machine": "\n".join(machine_reasons(record)),
    }
    if system:
        fields["system"] = system
    metadata = {
        "record_id": record.id,
        "template": str(record.lineage.get("template")),
        "stratum": stratum_of(record, stratify_by),
        "outcome": tier_outcome(record),
    }
    return rg.Record(id=record.id, fields=fields, metadata=metadata)


def export_dataset(records: list[Record], stratify_by: list[str], folder: Path, name: str) -> Path:
    """Write FOLDER in ``Dataset.to_disk`` layout. FOLDER must be new or empty, like
    ``to_disk`` requires, so an annotated export is never overwritten by mistake."""
    require_argilla()
    from argilla._models import DatasetModel
    from argilla._models._settings._task_distribution import OverlapTaskDistributionModel
    from argilla.records._io import JsonIO

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ArgillaExchangeError(f"{folder}: exists and is not an empty folder; pick a new path")
    (folder / ".argilla").mkdir(parents=True, exist_ok=True)
    settings = argilla_settings()
    dataset = DatasetModel(
        name=name,
        guidelines=settings["guidelines"],
        allow_extra_metadata=False,
        distribution=OverlapTaskDistributionModel(strategy="overlap", min_submitted=1),
    )
    # the same json.dump calls as _persist_dataset_model and Settings.to_json
    (folder / ".argilla" / "dataset.json").write_text(
        json.dumps(dataset.model_dump()), encoding="utf-8"
    )
    (folder / ".argilla" / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    JsonIO.to_json([argilla_record(r, stratify_by) for r in records], folder / "records.json")
    return folder


def read_argilla_export(path: Path) -> list[dict[str, Any]]:
    """Record dicts from a ``to_disk`` folder, or a JSON / JSONL list of records
    (``records.to_json``, ``records.to_list(flatten=False|True)``)."""
    path = Path(path)
    source = path / "records.json" if path.is_dir() else path
    if not source.is_file():
        raise ArgillaExchangeError(
            f"{path}: no records.json; give a folder written by rg.Dataset.to_disk, or the "
            "JSON/JSONL file of dataset.records.to_list(...)"
        )
    text = source.read_text(encoding="utf-8")
    try:
        if source.suffix == ".jsonl":
            rows: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArgillaExchangeError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ArgillaExchangeError(
            f"{source}: expected a list of Argilla records (records.to_list / to_json)"
        )
    return rows


def looks_like_argilla(path: Path) -> bool:
    """True for a folder, a JSONL file, or a JSON list of Argilla records (they carry
    ``fields`` or ``<question>.responses``; Label Studio tasks carry ``data``). Needs no
    client, so Label Studio imports work without argilla installed."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".jsonl":
        return True
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # the Label Studio reader reports the error
    first = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
    return "data" not in first and (
        "fields" in first or any(k.endswith(".responses") for k in first)
    )


@dataclass
class Answer:
    """One annotator's responses to one record; status None when the export dropped it."""

    user_id: str
    status: str | None
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class ArgillaImport:
    """What an import found: decisions to save and everything it could not use, by record."""

    decisions: list[Decision] = field(default_factory=list)
    unknown_ids: list[str] = field(default_factory=list)
    not_submitted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _nested_answers(row: dict[str, Any]) -> tuple[str | None, list[Answer]]:
    """Record id and answers of a nested record dict, parsed by ``rg.Record.from_dict``."""
    rg = require_argilla()
    record = rg.Record.from_dict(row)
    answers: dict[str, Answer] = {}
    for response in record.responses:
        user = str(response.user_id)
        status = response.status.value if response.status else None
        answers.setdefault(user, Answer(user, status)).values[response.question_name] = (
            response.value
        )
    record_id = row.get("id") or record.metadata.get("record_id")
    return record_id, list(answers.values())


def _flat_answers(row: dict[str, Any]) -> tuple[str | None, list[Answer]]:
    """Record id and answers of a ``to_list(flatten=True)`` dict: per question, parallel lists
    ``q.responses``, ``q.responses.users``, ``q.responses.status``. Hand-written: argilla
    writes this shape (``GenericIO._record_to_dict``) but has no reader for it."""
    answers: dict[str, Answer] = {}
    for question in QUESTIONS:
        values = row.get(f"{question}.responses") or []
        users = row.get(f"{question}.responses.users") or []
        statuses = row.get(f"{question}.responses.status") or [None] * len(values)
        for value, user, status in zip(values, users, statuses, strict=True):
            answers.setdefault(user, Answer(user, status)).values[question] = value
    return row.get("id") or row.get("record_id"), list(answers.values())


def _is_submitted(answer: Answer, record_status: Any) -> bool:
    # records.json (to_disk, to_json, to_list(flatten=False)) drops each response's status
    # (RecordResponses.to_dict keeps value and user_id only); the record's status survives,
    # and with min_submitted=1 "completed" means at least one response was submitted.
    if answer.status is None:
        return record_status == "completed"
    return answer.status == "submitted"


def _decision(record_id: str, answers: list[Answer]) -> Decision:
    """One decision from the submitted answers of a record; ValueError when they disagree."""
    verdicts = {(a.values.get("decision"), a.values.get("edited_reply") or None) for a in answers}
    if len(verdicts) > 1:
        message = f"annotators disagree ({', '.join(sorted(str(v[0]) for v in verdicts))})"
        if any(a.status is None for a in answers):
            message += (
                "; records.json does not keep response status, so drafts count too: export "
                "dataset.records.to_list(flatten=True) to a JSON file and import that"
            )
        raise ValueError(message)
    verdict, edited_reply = verdicts.pop()
    if verdict not in VERDICTS:
        raise ValueError(f"decision {verdict!r} is not one of {', '.join(VERDICTS)}")
    reasons = dict.fromkeys((a.values.get("reason") or "").strip() for a in answers)
    return Decision(
        record_id=record_id,
        decision=verdict,
        reason="; ".join(r for r in reasons if r),
        edited_reply=edited_reply,
        reviewer=",".join(sorted(a.user_id for a in answers)),
    )


def decisions_from_argilla(rows: list[dict[str, Any]], known_ids: set[str]) -> ArgillaImport:
    """Decisions from Argilla record dicts (nested or flattened). Only submitted responses
    count; records of other runs, unsubmitted records and invalid or conflicting answers are
    listed in the result, never silently dropped."""
    require_argilla()
    result = ArgillaImport()
    for n, row in enumerate(rows, start=1):
        nested = isinstance(row.get("responses"), dict) or "fields" in row
        try:
            record_id, answers = _nested_answers(row) if nested else _flat_answers(row)
        except (ValueError, TypeError) as exc:
            result.problems.append(f"record #{n}: not an Argilla record ({exc})")
            continue
        if not record_id:
            result.problems.append(f"record #{n}: no id and no record_id metadata")
            continue
        if record_id not in known_ids:
            result.unknown_ids.append(record_id)
            continue
        submitted = [a for a in answers if _is_submitted(a, row.get("status"))]
        if not submitted:
            result.not_submitted.append(record_id)
            continue
        try:
            result.decisions.append(_decision(record_id, submitted))
        except (ValueError, ValidationError) as exc:
            message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            result.problems.append(f"record {record_id}: {message}")
    return result


def save_changed(run_dir: Path, decisions: list[Decision]) -> tuple[int, int]:
    """Save decisions that differ from the stored ones; (saved, unchanged). Re-importing the
    same export therefore adds nothing, not even to the decision history."""
    from synthtune.store import ReviewStore

    store = ReviewStore(run_dir)
    try:
        stored = store.all()
        saved = 0
        for decision in decisions:
            before = stored.get(decision.record_id)
            if before and before.model_dump(exclude={"decided_at"}) == decision.model_dump(
                exclude={"decided_at"}
            ):
                continue
            store.save(decision)
            saved += 1
    finally:
        store.close()
    return saved, len(decisions) - saved
