"""Report sections built from the run store: label counts per split and source, sample
records per source with their decisions, and the run's warnings.

Everything here reads what the stages wrote (mix tables, quality dataset, review decisions,
state.json, train and evaluate metrics) and tolerates its absence: a run stopped early, or
written by an older version, still gets a report.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from synthtune.decisions import Decision
from synthtune.records import Record

SPLITS = ("train", "val", "test")
# a split whose largest class has at least this many times the rows of its smallest one is
# "heavily skewed": accuracy then mostly measures the majority class (look at macro-F1)
SKEW_RATIO = 10.0
EXCERPT_CHARS = 240
SAMPLES_PER_GROUP = 3


def label_counts(tables: dict[str, list[Record]]) -> dict[str, Any] | None:
    """``{columns: [(split, source)], rows: [{label, counts, total}]}`` over the labelled
    records of the mix tables (columns without records left out); None without labels."""
    counts: Counter[tuple[str, str, str]] = Counter(
        (split, r.source, str(r.payload.label))
        for split, records in tables.items()
        for r in records
        if r.payload.label is not None
    )
    if not counts:
        return None
    columns = [
        (split, source)
        for split in SPLITS
        for source in ("real", "synthetic")
        if any(k[:2] == (split, source) for k in counts)
    ]
    labels = sorted({k[2] for k in counts})
    rows: list[dict[str, Any]] = []
    for label in labels:
        cells = [counts[(split, source, label)] for split, source in columns]
        rows.append({"label": label, "counts": cells, "total": sum(cells)})
    totals = [sum(row["counts"][i] for row in rows) for i in range(len(columns))]
    return {"columns": columns, "rows": rows, "totals": totals}


def skew_warnings(tables: dict[str, list[Record]]) -> list[str]:
    """One class only, or a largest class ``SKEW_RATIO`` times the smallest, per split."""
    out = []
    for split in SPLITS:
        found = Counter(r.payload.label for r in tables.get(split, []) if r.payload.label)
        if not found:
            continue
        if len(found) == 1:
            (label,) = found
            out.append(
                f"labels: the {split} split has one class only ({label!r}, {found[label]} "
                "rows): a classifier cannot learn or be tested on that; add rows of the "
                "other classes"
            )
            continue
        (top, most), (bottom, least) = found.most_common()[0], found.most_common()[-1]
        if most >= SKEW_RATIO * least:
            out.append(
                f"labels: the {split} split is heavily skewed ({top!r} {most} rows, "
                f"{bottom!r} {least}): accuracy mostly measures the majority class; judge "
                "by macro-F1 and the per-class table"
            )
    return out


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def _sample_row(record: Record, decisions: dict[str, Decision]) -> dict[str, Any]:
    decision = decisions.get(record.id)
    return {
        "id": record.id[:10],
        "split": record.lineage.get("split", ""),
        "label": record.payload.label,
        "status": record.status,
        "reasons": "; ".join(record.reasons),
        "review": f"{decision.decision}: {decision.reason}".rstrip(": ") if decision else "",
        "text": _excerpt(record.payload.text("all")),
    }


def sample_records(
    records: list[Record], decisions: dict[str, Decision], per_group: int = SAMPLES_PER_GROUP
) -> dict[str, list[dict[str, Any]]]:
    """``{source: rows}``: up to ``per_group`` records of each (source, status), in id order
    (ids are content hashes, so this is an arbitrary but stable pick)."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for record in sorted(records, key=lambda r: r.id):
        groups.setdefault((record.source, record.status), []).append(record)
    out: dict[str, list[dict[str, Any]]] = {}
    for (source, _), group in sorted(groups.items()):
        out.setdefault(source, []).extend(_sample_row(r, decisions) for r in group[:per_group])
    return out


def run_warnings(
    state: dict[str, Any],
    train: dict[str, Any] | None,
    evaluate: dict[str, Any] | None,
    tables: dict[str, list[Record]],
) -> list[str]:
    """The run's warnings: evaluation caveats (``evaluate/metrics.json``), an early stop,
    real rows dropped or shared between splits, labels without synthetic records, one-class
    or skewed labels."""
    out = list((evaluate or {}).get("warnings", []))
    stop = (train or {}).get("early_stop") or {}
    if stop.get("stopped"):
        out.append(f"training stopped early at step {stop.get('step')}: {stop.get('reason', '')}")
    real = state.get("mix", {}).get("summary", {}).get("real") or {}
    if real.get("duplicates_dropped"):
        out.append(
            f"real data: {real['duplicates_dropped']} of {real.get('rows_read', '?')} real rows "
            f"were dropped as duplicates (mix.real.duplicates: "
            f"{real.get('duplicates_policy', 'drop')})"
        )
    elif real.get("duplicates"):
        out.append(
            f"real data: {real['duplicates']} duplicate real rows were kept (counted, not dropped)"
        )
    overlap = real.get("overlap") or {}
    if real.get("duplicates_policy") != "drop":  # drop removes test rows from train and val
        for key, split in (("train_test", "train"), ("validation_test", "validation")):
            if overlap.get(key):
                out.append(
                    f"real data: {overlap[key]} rows of the test split also occur in the "
                    f"{split} split (mix.real.duplicates: drop removes them)"
                )
    empty = state.get("mix", {}).get("summary", {}).get("labels_without_synthetic")
    if empty:
        out.append(
            f"mix: no synthetic record for the labels {', '.join(map(str, empty))} (none "
            "accepted); generate some, or list them in mix.labels.allow_zero"
        )
    if (train or {}).get("task", "classification") == "classification":
        out.extend(skew_warnings(tables))
    return out
