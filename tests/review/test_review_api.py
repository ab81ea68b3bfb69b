"""The review app's HTTP API on loopback, review statistics, Label Studio, and the flow of
decisions into the mix."""

import json
from pathlib import Path

import httpx
import pytest

from synthtune.config import load_recipe
from synthtune.decisions import Decision
from synthtune.pipeline import run_recipe
from synthtune.review.app import ReviewServer, create_app, sampled_records
from synthtune.review.labelstudio import export_tasks, import_annotations
from synthtune.review.stats import review_stats, wilson
from synthtune.store import ReviewStore, RunStore, review_decisions

TOKEN = "test-token-123"


def _server(run_dir: Path) -> ReviewServer:
    return ReviewServer(create_app(run_dir, TOKEN, ["template"], 0.2))


def test_token_is_required(run_copy: Path) -> None:
    with _server(run_copy) as server:
        assert httpx.get(f"{server.url}/").status_code == 401
        assert httpx.get(f"{server.url}/?token=wrong").status_code == 401
        assert httpx.get(f"{server.url}/api/items").status_code == 401
        bad = httpx.post(f"{server.url}/api/decisions", json={}, headers={"X-Review-Token": "x"})
        assert bad.status_code == 401
        page = httpx.get(f"{server.url}/?token={TOKEN}")
        assert page.status_code == 200
        # the link's token becomes an HttpOnly, SameSite=Strict cookie ...
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        jar = {"synthtune_review": TOKEN}
        assert httpx.get(f"{server.url}/api/items", cookies=jar).status_code == 200
        # ... and a token in a query string is refused everywhere but on the page
        assert httpx.get(f"{server.url}/api/items?token={TOKEN}").status_code == 401
        post = httpx.post(f"{server.url}/api/decisions?token={TOKEN}", json={})
        assert post.status_code == 401


def test_a_body_over_the_limit_is_413(run_copy: Path) -> None:
    from synthtune.review.app import MAX_BODY_BYTES

    with _server(run_copy) as server:
        huge = {"record_id": "x", "decision": "edit", "edited_reply": "z" * MAX_BODY_BYTES}
        answer = httpx.post(
            f"{server.url}/api/decisions", json=huge, headers={"X-Review-Token": TOKEN}
        )
        assert answer.status_code == 413 and "bytes" in answer.json()["detail"]


def test_decisions_are_saved_validated_and_survive_a_restart(run_copy: Path) -> None:
    headers = {"X-Review-Token": TOKEN}
    with _server(run_copy) as server:
        items = httpx.get(f"{server.url}/api/items", headers=headers).json()
        assert len(items) >= 3 and all(i["decision"] is None for i in items)
        post = lambda body: httpx.post(f"{server.url}/api/decisions", json=body, headers=headers)  # noqa: E731
        assert post({"record_id": items[0]["id"], "decision": "accept"}).status_code == 200
        no_reason = post({"record_id": items[1]["id"], "decision": "reject"})
        assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"]
        assert (
            post(
                {"record_id": items[1]["id"], "decision": "reject", "reason": "wrong advice"}
            ).status_code
            == 200
        )
        assert (
            post(
                {
                    "record_id": items[2]["id"],
                    "decision": "edit",
                    "reason": "tone",
                    "edited_reply": "See a doctor today.",
                }
            ).status_code
            == 200
        )
        assert post({"record_id": "nope", "decision": "accept"}).status_code == 404
    with _server(run_copy) as server:  # a new process would see the same database
        again = httpx.get(f"{server.url}/api/items", headers=headers).json()
        decided = {i["id"]: i["decision"]["decision"] for i in again if i["decision"]}
        assert decided == {
            items[0]["id"]: "accept",
            items[1]["id"]: "reject",
            items[2]["id"]: "edit",
        }
        stats = httpx.get(f"{server.url}/api/stats", headers=headers).json()
        assert stats["reviewed"] == 3 and stats["accepted"] == 1


def test_wilson_intervals_and_remainder_estimate(run_copy: Path) -> None:
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    records = RunStore(run_copy).read_table("quality", "dataset")
    sample = sampled_records(run_copy)
    decisions = {
        r.id: Decision(record_id=r.id, decision="reject", reason="bad")
        for r in sample
        if r.lineage["template"] == "followup"
    }
    decisions |= {
        r.id: Decision(record_id=r.id, decision="accept")
        for r in sample
        if r.lineage["template"] == "consult"
    }
    stats = review_stats(records, decisions, ["template"], flag_defect_rate=0.2)
    rows = {row["stratum"]: row for row in stats["strata"]}
    assert rows["template=followup"]["acceptance"] == 0 and rows["template=followup"]["flagged"]
    assert rows["template=consult"]["acceptance"] == 1 and not rows["template=consult"]["flagged"]
    follow_left = rows["template=followup"]["records"] - rows["template=followup"]["reviewed"]
    consult_left = rows["template=consult"]["records"] - rows["template=consult"]["reviewed"]
    expected = follow_left / (follow_left + consult_left)
    assert stats["remainder_defect_rate"] == pytest.approx(expected, abs=1e-4)
    assert stats["flagged"] == ["template=followup"]


def test_label_studio_round_trip(run_copy: Path) -> None:
    sample = sampled_records(run_copy)
    tasks = export_tasks(sample)
    assert len(tasks) == len(sample) and tasks[0]["data"]["record_id"] == sample[0].id
    tasks[0]["annotations"] = [
        {
            "completed_by": 7,
            "result": [
                {"from_name": "decision", "value": {"choices": ["reject"]}},
                {"from_name": "reason", "value": {"text": ["unsafe"]}},
            ],
        }
    ]
    tasks[1]["annotations"] = [
        {
            "result": [
                {"from_name": "decision", "value": {"choices": ["edit"]}},
                {"from_name": "reason", "value": {"text": ["clearer"]}},
                {"from_name": "edited_reply", "value": {"text": ["Drink water and rest."]}},
            ]
        }
    ]
    decisions = import_annotations(json.loads(json.dumps(tasks)))
    assert [(d.decision, d.reason) for d in decisions] == [
        ("reject", "unsafe"),
        ("edit", "clearer"),
    ]
    assert decisions[1].edited_reply == "Drink water and rest." and decisions[0].reviewer == "7"


def test_reviewed_rejects_and_edits_flow_into_the_mix(run_copy: Path, filtered_run: Path) -> None:
    sample = sampled_records(run_copy)
    store = ReviewStore(run_copy)
    store.save(Decision(record_id=sample[0].id, decision="reject", reason="unsafe advice"))
    store.save(
        Decision(
            record_id=sample[1].id,
            decision="edit",
            reason="tone",
            edited_reply="Please see a doctor today.",
        )
    )
    store.close()
    assert set(review_decisions(run_copy)) == {sample[0].id, sample[1].id}
    recipe = load_recipe(filtered_run.parent.parent / "recipe.yaml")
    result = run_recipe(recipe, run_copy.parent, until="mix", quiet=True)
    assert [o.status for o in result.outcomes] == ["skipped", "skipped", "ran"]
    train = RunStore(run_copy).read_table("mix", "train")
    ids = {r.id for r in train}
    assert sample[0].id not in ids and sample[1].id not in ids
    [edited] = [r for r in train if r.lineage.get("edited_from") == sample[1].id]
    assert edited.payload.messages[-1].content == "Please see a doctor today."
    assert edited.quality["review"]["decision"] == "edit"
    assert not any(r.lineage.get("edited_from") == sample[0].id for r in train)


def test_report_shows_review_statistics(run_copy: Path) -> None:
    from synthtune.report.html import build_report

    sample = sampled_records(run_copy)
    store = ReviewStore(run_copy)
    store.save(Decision(record_id=sample[0].id, decision="reject", reason="unsafe"))
    store.save(Decision(record_id=sample[1].id, decision="accept"))
    store.close()
    html = build_report(run_copy).read_text()
    assert "Human review" in html and "2 reviewed, 1 accepted" in html
    assert "Wilson 95 % CI" in html


def test_page_and_argilla_export_read_one_list_of_machine_reasons(run_copy) -> None:  # type: ignore[no-untyped-def]
    from synthtune.review.app import _item
    from synthtune.review.argilla_io import machine_reasons
    from synthtune.store import RunStore

    records = RunStore(run_copy).read_table("quality", "dataset")
    rejected = next(r for r in records if r.status != "accepted")
    item = _item(rejected, None, ["template"])
    texts = [line["text"] for line in item["machine"]]
    assert texts[0] == f"rejected by rules: {rejected.reasons[0]}"
    assert item["machine"][0]["ok"] is False
    failed = [line for line in item["machine"] if line["text"].startswith("rule ")]
    assert failed and all(line["ok"] is (" pass " in line["text"]) for line in failed)
    # the export has the same lines, without the stratum (Argilla keeps it as metadata)
    assert machine_reasons(rejected) == [t for t in texts if not t.startswith("stratum:")]
