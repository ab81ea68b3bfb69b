"""Why the automatic tiers decided what they did, as lines a reviewer reads: the review page
shows them (coloured by ``ok``) and the Argilla export puts them in its ``machine`` field, so
both come from this one list."""

from __future__ import annotations

import json
from typing import Any

from synthtune.records import Record, tier_outcome


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def machine_lines(record: Record, stratum: str | None = None) -> list[dict[str, Any]]:
    """``[{text, ok}]``: ``ok`` True for a check passed, False for one failed, None for
    context (stratum, scores without a verdict, slots)."""
    quality = record.quality
    lines: list[dict[str, Any]] = []

    def line(text: str, ok: bool | None = None) -> None:
        lines.append({"text": text, "ok": ok})

    if record.status == "accepted":
        line("accepted by every tier", True)
    else:
        line(f"rejected by {tier_outcome(record)}: {'; '.join(record.reasons)}", False)
    if stratum is not None:
        edge = record.lineage.get("edge_case")
        line(f"stratum: {stratum}" + (f" · edge case: {_dump(edge)}" if edge else ""))
    if quality.get("heuristics"):
        line(f"heuristics: {'; '.join(map(str, quality['heuristics']))}", False)
    if quality.get("dedup"):
        kept = ", ".join(f"{v} ({k})" for k, v in quality["dedup"].items())
        line(f"dedup: duplicate of {kept}", False)
    if quality.get("decontam"):
        line(f"decontamination: {_dump(quality['decontam'])}", False)
    if quality.get("ngram_perplexity") is not None:
        line(f"n-gram perplexity: {quality['ngram_perplexity']}")
    if quality.get("perplexity") is not None:
        limit = next((r for r in record.reasons if r.startswith("fluency:")), None)
        shown = f" ({limit})" if limit else " (within the threshold)"
        line(f"perplexity: {quality['perplexity']}{shown}", limit is None)
    for outcome in quality.get("rules", []):
        if outcome.get("applicable"):
            verdict = "pass" if outcome["ok"] else "FAIL"
            line(
                f"rule {outcome['rule']}: {verdict} ({outcome['severity']}) {outcome['why']}",
                bool(outcome["ok"]),
            )
    judge = quality.get("judge")
    if judge:
        if judge.get("score") is not None:
            line(f"judge: score {judge['score']}, {judge.get('reason', '')}")
        else:
            line(f"judge: {_dump(judge)}")
    if quality.get("image"):
        line(f"image: {_dump(quality['image'])}")
    line(f"slots: {_dump(record.lineage.get('slots', {}))}")
    return lines
