"""Human review decisions and how they flow into the dataset.

A decision is accept, reject (with a reason) or edit (a corrected reply, with a reason). The
review app and the Label Studio importer write them through ``store.ReviewStore``; the mix
stage applies them with :func:`apply_decisions`, so a reviewer's rejection or correction reaches
training without anyone editing Parquet files.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthtune.records import Message, Record

Verdict = Literal["accept", "reject", "edit"]


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    record_id: str
    decision: Verdict
    reason: str = ""
    edited_reply: str | None = None
    reviewer: str = "reviewer"
    decided_at: str = Field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )

    @model_validator(mode="after")
    def _consistent(self) -> Decision:
        if self.decision == "reject" and not self.reason.strip():
            raise ValueError("a rejection needs a reason")
        if self.decision == "edit" and not (self.edited_reply or "").strip():
            raise ValueError("an edit needs the corrected reply")
        return self


def apply_decisions(records: list[Record], decisions: dict[str, Decision]) -> list[Record]:
    """Records with reviews applied: rejects rejected, edits replace the reply (an image
    record's caption; new id, the original id kept in lineage), accepts marked. Records
    without a decision are unchanged."""
    out = []
    for record in records:
        decision = decisions.get(record.id)
        if decision is None:
            out.append(record)
            continue
        review = decision.model_dump(exclude={"record_id"})
        if decision.decision == "reject":
            record.quality["review"] = {**record.quality.get("review", {}), **review}
            record.reject(f"review: {decision.reason}")
            out.append(record)
        elif decision.decision == "edit":
            assert decision.edited_reply is not None
            text = decision.edited_reply.strip()
            payload = record.payload
            if payload.media and not any(m.role == "assistant" for m in payload.messages):
                # an image record's text is its caption (the user turn the review page shows
                # as the reply): the edit corrects the caption
                messages = [m for m in payload.messages if m.role != "user"]
                messages.append(Message(role="user", content=text))
            else:
                messages = [m for m in payload.messages if m.role != "assistant"]
                messages.append(Message(role="assistant", content=text))
            edited = Record.create(
                record.source,
                record.payload.model_copy(update={"messages": messages}),  # label, media kept
                lineage={**record.lineage, "edited_from": record.id},
                quality={**record.quality, "review": review},
                status="accepted",
            )
            out.append(edited)
        else:
            record.quality["review"] = {**record.quality.get("review", {}), **review}
            out.append(record)
    return out
