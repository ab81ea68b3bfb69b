"""Label Studio interchange: export review tasks, import the annotations as decisions.

Export writes Label Studio's task JSON (``[{"id", "data": {...}}]``) and a labelling config
with an accept/reject choice, a reason text area and a corrected-reply text area. Import reads
Label Studio's JSON export (tasks with ``annotations[].result``) back into decisions.
"""

from __future__ import annotations

from typing import Any

from synthtune.decisions import Decision
from synthtune.records import Record

LABEL_CONFIG = """<View>
  <Header value="Prompt"/><Text name="prompt" value="$prompt"/>
  <Header value="Reply"/><Text name="reply" value="$reply"/>
  <Header value="Automatic decisions"/><Text name="automatic" value="$automatic"/>
  <Choices name="decision" toName="reply" choice="single" required="true">
    <Choice value="accept"/><Choice value="reject"/><Choice value="edit"/>
  </Choices>
  <TextArea name="reason" toName="reply" placeholder="Reason (required to reject or edit)"/>
  <TextArea name="edited_reply" toName="reply" placeholder="Corrected reply (for edit)"/>
</View>"""


def export_tasks(records: list[Record]) -> list[dict[str, Any]]:
    tasks = []
    for n, record in enumerate(records, start=1):
        automatic = "; ".join(record.reasons) or "accepted by every tier"
        tasks.append(
            {
                "id": n,
                "data": {
                    "record_id": record.id,
                    "prompt": record.payload.text("prompt"),
                    "reply": record.payload.text("response"),
                    "automatic": automatic,
                    "template": record.lineage.get("template"),
                },
            }
        )
    return tasks


def _result_value(results: list[dict[str, Any]], name: str) -> Any:
    for item in results:
        if item.get("from_name") == name:
            value = item.get("value", {})
            if "choices" in value:
                return value["choices"][0]
            if "text" in value:
                text = value["text"]
                return text[0] if isinstance(text, list) else text
    return None


def import_annotations(tasks: list[dict[str, Any]]) -> list[Decision]:
    """Decisions from a Label Studio JSON export; the latest annotation of a task wins."""
    decisions = []
    for task in tasks:
        annotations = task.get("annotations") or []
        if not annotations:
            continue
        latest = annotations[-1]
        results = latest.get("result", [])
        verdict = _result_value(results, "decision")
        if verdict is None:
            continue
        decisions.append(
            Decision(
                record_id=task["data"]["record_id"],
                decision=verdict,
                reason=_result_value(results, "reason") or "",
                edited_reply=_result_value(results, "edited_reply"),
                reviewer=str(latest.get("completed_by", "label-studio")),
            )
        )
    return decisions
