"""The review web app: FastAPI + one plain HTML/JS page.

Binds 127.0.0.1 by default and requires a random token on every request; without it the
answer is 401. The link the CLI prints carries it as ``?token=``, accepted on the page alone,
which then sets it as an HttpOnly, SameSite=Strict cookie and drops it from the address bar;
every other request must carry the cookie or an ``X-Review-Token`` header (a token in a query
string ends up in logs and histories). Bodies over ``MAX_BODY_BYTES`` get 413. Each decision
is committed to SQLite the moment it is made (``store.ReviewStore``).
"""

from __future__ import annotations

import hashlib
import secrets
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, ValidationError

from synthtune.decisions import Decision, Verdict
from synthtune.http_limits import BodyLimit
from synthtune.loopback import ThreadedServer
from synthtune.records import Record, stratum_of, tier_outcome
from synthtune.review.reasons import machine_lines
from synthtune.review.stats import review_stats
from synthtune.store import ReviewStore, RunStore, UnsafeMediaPath

COOKIE = "synthtune_review"
MAX_BODY_BYTES = 256_000  # a decision with an edited reply is a few KB


class DecisionIn(BaseModel):
    record_id: str
    decision: Verdict
    reason: str = ""
    edited_reply: str | None = None


def sampled_records(run_dir: Path) -> list[Record]:
    records = RunStore(run_dir).read_table("quality", "dataset")
    return [r for r in records if r.quality.get("review", {}).get("sampled")]


def assigned(record_id: str, member: int, team: int, overlap: float) -> bool:
    """Whether reviewer ``member`` (0-based) of a ``team`` sharing the sample reviews the
    record: an ``overlap`` share of the records (by a hash of the id) goes to everyone, so
    their agreement can be measured; every other record to exactly one member."""
    if team <= 1:
        return True
    digest = hashlib.sha256(record_id.encode()).digest()
    if int.from_bytes(digest[:8], "big") / 2**64 < overlap:
        return True
    return int.from_bytes(digest[8:16], "big") % team == member


def media_files(records: list[Record]) -> set[str]:
    """Every image, mask and sound path the sampled records name: all the app will ever
    serve."""
    paths: set[str] = set()
    for record in records:
        for item in record.payload.media or ():
            paths.update(p for p in (item.path, getattr(item, "mask", None)) if p)
    return paths


def _item(record: Record, decision: Decision | None, stratify_by: list[str]) -> dict[str, Any]:
    """What the page shows of a record: its texts, and why each tier decided what it did."""
    stratum = stratum_of(record, stratify_by)
    return {
        "id": record.id,
        "status": record.status,
        "reasons": list(record.reasons),
        "outcome": tier_outcome(record),
        "stratum": stratum,
        "machine": machine_lines(record, stratum),
        "edge_case": record.lineage.get("edge_case"),
        "prompt": record.payload.text("prompt"),
        "question": next(
            (m.content for m in reversed(record.payload.messages) if m.role == "user"), ""
        ),
        "reply": record.payload.text("response"),
        "label": record.payload.label,
        "template": record.lineage.get("template"),
        "slots": record.lineage.get("slots", {}),
        "strategy": record.lineage.get("strategy"),
        "perplexity": record.quality.get("perplexity"),
        "rules": [o for o in record.quality.get("rules", []) if o.get("applicable")],
        "judge": record.quality.get("judge"),
        "media": [m.model_dump(mode="json") for m in record.payload.media or ()],
        "decision": decision.model_dump() if decision else None,
    }


def create_app(
    run_dir: Path,
    token: str,
    stratify_by: list[str],
    flag_defect_rate: float,
    reviewer: str = "reviewer",
    team: tuple[int, int, float] | None = None,
) -> FastAPI:
    """The review app; ``reviewer`` names whoever decides through it (their own decisions
    are shown and saved, apart from other reviewers'). ``team`` = (member, size, overlap):
    this reviewer's share of the sample when a team splits it (``assigned``)."""
    run_dir = Path(run_dir)
    store = ReviewStore(run_dir)
    items = sampled_records(run_dir)
    if team is not None:
        items = [r for r in items if assigned(r.id, *team)]
    by_id = {r.id: r for r in items}
    servable = media_files(items)
    app = FastAPI(title="synthtune review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        BodyLimit, max_bytes=MAX_BODY_BYTES, body=lambda n: {"detail": f"body over {n:,} bytes"}
    )

    def _matches(given: str) -> bool:
        return secrets.compare_digest(given.encode(), token.encode())

    def authorised(request: Request) -> None:
        given = request.headers.get("x-review-token") or request.cookies.get(COOKIE) or ""
        if not _matches(given):
            raise HTTPException(status_code=401, detail="missing or wrong review token")

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        linked = request.query_params.get("token", "")
        if not _matches(linked):
            authorised(request)
        html = (resources.files("synthtune.review") / "static" / "index.html").read_text("utf-8")
        response = HTMLResponse(html)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    @app.get("/api/items", dependencies=[Depends(authorised)])
    def list_items() -> list[dict[str, Any]]:
        decisions = store.by_reviewer().get(reviewer, {})
        return [_item(r, decisions.get(r.id), stratify_by) for r in items]

    @app.get("/media/{relative:path}", dependencies=[Depends(authorised)])
    def media(relative: str) -> FileResponse:
        """An image of a sampled record: only names those records carry, and only inside the
        run directory (``store.resolve_inside``): anything else is 404, never read."""
        if relative not in servable:
            raise HTTPException(status_code=404, detail="no such media in the review sample")
        try:
            path = RunStore(run_dir).media_path(relative)
        except UnsafeMediaPath:
            raise HTTPException(status_code=404, detail="no such media") from None
        if not path.is_file():
            raise HTTPException(status_code=404, detail="media file missing")
        return FileResponse(path, media_type="image/png" if path.suffix == ".png" else None)

    @app.post("/api/decisions", dependencies=[Depends(authorised)])
    def decide(body: DecisionIn) -> dict[str, Any]:
        if body.record_id not in by_id:
            raise HTTPException(status_code=404, detail=f"no sampled record {body.record_id}")
        try:
            decision = Decision(**body.model_dump(), reviewer=reviewer)
        except ValidationError as exc:
            raise HTTPException(status_code=422, detail=exc.errors()[0]["msg"]) from None
        store.save(decision)
        return {"saved": decision.model_dump()}

    @app.get("/api/stats", dependencies=[Depends(authorised)])
    def stats() -> dict[str, Any]:
        records = RunStore(run_dir).read_table("quality", "dataset")
        return review_stats(records, store.all(), stratify_by, flag_defect_rate)

    return app


class ReviewServer(ThreadedServer):
    """Run the app with uvicorn on a socket bound before start (no wait for readiness)."""


def new_token() -> str:
    return secrets.token_urlsafe(18)
