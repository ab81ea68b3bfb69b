"""Argilla export/import of the review sample, checked with the argilla client's own code:
``Settings.from_json``, ``Dataset.from_disk`` and ``dataset.to_disk`` run against an in-memory
stand-in for the server's HTTP API (no server, no network)."""

import json
import shutil
import sqlite3
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from synthtune.review.app import sampled_records
from synthtune.review.argilla_io import (
    ArgillaExchangeError,
    argilla_settings,
    decisions_from_argilla,
    looks_like_argilla,
    read_argilla_export,
    require_argilla,
)
from synthtune.store import review_decisions
from tests.conftest import write_recipe
from tests.review.fake_argilla_api import FakeArgillaAPI

ALICE = "00000000-0000-0000-0000-0000000000a1"
BOB = "00000000-0000-0000-0000-0000000000b2"


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run through the quality stage with a review sample (only quality is needed here, so
    no mix settings, unlike the shared ``filtered_run``)."""
    folder = tmp_path_factory.mktemp("argilla")
    recipe = write_recipe(folder, {"quality": {"review": {"fraction": 0.25}}})
    return run_recipe(load_recipe(recipe), folder / "runs", until="quality", quiet=True).run_dir


@pytest.fixture
def run_copy(sampled_run: Path, tmp_path: Path) -> Path:
    """A private copy, so decisions written by one test are not seen by another."""
    target = tmp_path / sampled_run.name
    shutil.copytree(sampled_run, target)
    return target


@pytest.fixture
def rg(monkeypatch: pytest.MonkeyPatch) -> Any:
    rg = pytest.importorskip("argilla")
    warnings.filterwarnings("ignore", message="Workspace not provided")
    # rg.Argilla() makes itself the process-wide default client; undo that after each test
    monkeypatch.setattr(rg.Argilla, "_default_client", None)
    return rg


def _cli(*args: str | Path) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def _export(run_dir: Path, folder: Path) -> None:
    result = _cli("review-export", run_dir, folder, "--format", "argilla")
    assert result.exit_code == 0, result.output


def _to_disk(dataset: Any, folder: Path) -> None:
    folder.mkdir()  # to_disk wants an existing folder
    dataset.to_disk(str(folder))


def _history(run_dir: Path) -> int:
    with sqlite3.connect(run_dir / "review" / "decisions.sqlite") as db:
        return int(db.execute("SELECT COUNT(*) FROM history").fetchone()[0])


def _annotated(rg: Any, run_dir: Path, tmp_path: Path) -> tuple[FakeArgillaAPI, Any, list[str]]:
    """The export loaded by rg.Dataset.from_disk, then annotated on the fake server."""
    _export(run_dir, tmp_path / "export")
    api = FakeArgillaAPI()
    dataset = rg.Dataset.from_disk(str(tmp_path / "export"), client=api.client())
    ids = [r["external_id"] for r in api.records]
    api.annotate(ids[0], ALICE, "submitted", decision="accept")
    api.annotate(ids[1], ALICE, "submitted", decision="reject", reason="wrong dose")
    api.annotate(ids[2], BOB, "submitted", decision="edit", reason="tone", edited_reply="Rest.")
    api.annotate(ids[3], BOB, "draft", decision="accept")
    return api, dataset, ids


def test_export_folder_has_argillas_layout_and_loads_with_its_readers(
    rg: Any, run_copy: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    _export(run_copy, folder)
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*.json")} == {
        ".argilla/dataset.json",
        ".argilla/settings.json",
        "records.json",
    }
    api = FakeArgillaAPI()
    client = api.client()
    settings = rg.Settings.from_json(folder / ".argilla" / "settings.json")
    assert [f.name for f in settings.fields] == ["system", "prompt", "response", "machine"]
    assert [q.name for q in settings.questions] == ["decision", "reason", "edited_reply"]
    assert settings.questions["decision"].labels == ["accept", "reject", "edit"]
    assert [m.name for m in settings.metadata] == ["record_id", "template", "stratum", "outcome"]
    assert settings.distribution.min_submitted == 1
    # what argilla's own classes serialise for the same dataset design
    official = rg.Settings(
        fields=[
            rg.TextField("system", title="System prompt", required=False, client=client),
            rg.TextField("prompt", title="Prompt", client=client),
            rg.TextField("response", title="Reply", client=client),
            rg.TextField("machine", title="Why the machine decided", required=False, client=client),
        ],
        questions=[
            rg.LabelQuestion(
                "decision", title="Decision", labels=["accept", "reject", "edit"], client=client
            ),
            rg.TextQuestion(
                "reason", title="Reason (required to reject or edit)", required=False, client=client
            ),
            rg.TextQuestion(
                "edited_reply", title="Corrected reply (for edit)", required=False, client=client
            ),
        ],
        metadata=[
            rg.TermsMetadataProperty("record_id", title="Record id", client=client),
            rg.TermsMetadataProperty("template", title="Template", client=client),
            rg.TermsMetadataProperty("stratum", title="Stratum", client=client),
            rg.TermsMetadataProperty("outcome", title="Tier outcome", client=client),
        ],
        guidelines=argilla_settings()["guidelines"],
        distribution=rg.TaskDistribution(min_submitted=1),
    )
    assert official.serialize() == argilla_settings()

    again = _cli("review-export", run_copy, folder, "--format", "argilla")
    assert again.exit_code == 2 and "not an empty folder" in again.output

    sample = {r.id: r for r in sampled_records(run_copy)}
    dataset = rg.Dataset.from_disk(str(folder), client=client)
    assert dataset.name == f"synthtune-review-{run_copy.name}"
    assert {r["external_id"] for r in api.records} == set(sample) and len(api.records) >= 4
    for uploaded in api.records:
        record = sample[uploaded["external_id"]]
        assert uploaded["fields"]["response"] == record.payload.text("response")
        assert uploaded["metadata"]["record_id"] == record.id
        assert uploaded["metadata"]["template"] == record.lineage["template"]
        assert uploaded["metadata"]["stratum"].startswith(f"template={record.lineage['template']}")
        outcome = record.reasons[0].split(":")[0] if record.reasons else "accepted"
        assert uploaded["metadata"]["outcome"] == outcome
        first = "accepted by every tier" if outcome == "accepted" else f"rejected by {outcome}"
        assert uploaded["fields"]["machine"].startswith(first)


def test_annotated_to_disk_folder_imports_once(rg: Any, run_copy: Path, tmp_path: Path) -> None:
    _, dataset, ids = _annotated(rg, run_copy, tmp_path)
    _to_disk(dataset, tmp_path / "annotated")

    first = _cli("review-import", run_copy, tmp_path / "annotated")
    assert first.exit_code == 0, first.output
    assert "imported 3 decisions" in first.output
    assert f"{len(ids) - 3} records have no submitted response" in first.output
    decisions = review_decisions(run_copy)
    assert set(decisions) == set(ids[:3])
    assert (decisions[ids[0]].decision, decisions[ids[0]].reviewer) == ("accept", ALICE)
    assert (decisions[ids[1]].decision, decisions[ids[1]].reason) == ("reject", "wrong dose")
    assert (decisions[ids[2]].edited_reply, decisions[ids[2]].reviewer) == ("Rest.", BOB)

    history = _history(run_copy)
    again = _cli("review-import", run_copy, tmp_path / "annotated", "--format", "argilla")
    assert "imported 0 decisions" in again.output and "(3 unchanged)" in again.output
    assert _history(run_copy) == history and review_decisions(run_copy).keys() == decisions.keys()


def test_flattened_list_keeps_response_status_so_drafts_never_count(
    rg: Any, run_copy: Path, tmp_path: Path
) -> None:
    api, dataset, ids = _annotated(rg, run_copy, tmp_path)
    api.annotate(ids[1], BOB, "draft", decision="accept")  # a draft disagreeing with ALICE
    flat = tmp_path / "flat.jsonl"
    flat.write_text("\n".join(json.dumps(r) for r in dataset.records.to_list(flatten=True)))
    known = {r.id for r in sampled_records(run_copy)}

    result = decisions_from_argilla(read_argilla_export(flat), known)
    assert {d.record_id: d.decision for d in result.decisions} == {
        ids[0]: "accept",
        ids[1]: "reject",
        ids[2]: "edit",
    }
    assert ids[3] in result.not_submitted and len(result.not_submitted) == len(ids) - 3
    assert not result.problems

    # records.json drops response status: the draft is indistinguishable, so it is a reported
    # conflict, not a silent pick
    _to_disk(dataset, tmp_path / "annotated")
    nested = decisions_from_argilla(read_argilla_export(tmp_path / "annotated"), known)
    assert ids[1] not in {d.record_id for d in nested.decisions}
    assert any(ids[1] in p and "flatten=True" in p for p in nested.problems)


def test_unknown_ids_and_invalid_answers_are_reported_not_saved(
    rg: Any, run_copy: Path, tmp_path: Path
) -> None:
    api, dataset, ids = _annotated(rg, run_copy, tmp_path)
    api.annotate(ids[4], ALICE, "submitted", decision="reject")  # no reason
    _to_disk(dataset, tmp_path / "annotated")
    records = json.loads((tmp_path / "annotated" / "records.json").read_text())
    records[0]["id"] = records[0]["metadata"]["record_id"] = "not-in-this-run"
    (tmp_path / "other.json").write_text(json.dumps(records))

    result = _cli("review-import", run_copy, tmp_path / "other.json")
    assert result.exit_code == 0, result.output
    assert "not-in-this-run" in result.output and "1 record ids are not records" in result.output
    assert f"record {ids[4]}" in result.output and "a rejection needs a reason" in result.output
    assert set(review_decisions(run_copy)) == {ids[1], ids[2]}


def test_format_detection_keeps_label_studio_files_on_their_reader(
    rg: Any, run_copy: Path, tmp_path: Path
) -> None:
    studio = tmp_path / "tasks.json"
    assert _cli("review-export", run_copy, studio).exit_code == 0  # Label Studio by default
    assert studio.with_suffix(".config.xml").exists()
    tasks = json.loads(studio.read_text())
    tasks[0]["annotations"] = [
        {"completed_by": 7, "result": [{"from_name": "decision", "value": {"choices": ["accept"]}}]}
    ]
    studio.write_text(json.dumps(tasks))
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps([{"id": "x", "decision.responses": ["accept"]}]))
    assert not looks_like_argilla(studio)
    assert looks_like_argilla(flat) and looks_like_argilla(tmp_path)
    with pytest.raises(ArgillaExchangeError, match=r"no records\.json"):
        read_argilla_export(tmp_path)

    imported = _cli("review-import", run_copy, studio)
    assert imported.exit_code == 0 and "imported 1 decisions" in imported.output
    assert review_decisions(run_copy)[tasks[0]["data"]["record_id"]].reviewer == "7"


def test_missing_client_names_the_extra(
    run_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "argilla", None)  # makes `import argilla` fail
    with pytest.raises(ArgillaExchangeError, match=r"pip install 'synthtune\[argilla\]'"):
        require_argilla()
    result = _cli("review-export", run_copy, tmp_path / "export", "--format", "argilla")
    assert result.exit_code == 2 and "synthtune[argilla]" in result.output
    assert not (tmp_path / "export").exists()
    (tmp_path / "annotated").mkdir()
    (tmp_path / "annotated" / "records.json").write_text("[]")
    imported = _cli("review-import", run_copy, tmp_path / "annotated")
    assert imported.exit_code == 2 and "synthtune[argilla]" in imported.output
