"""Render ``report.html`` for a run directory from what the stages wrote."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2

from synthtune.errors import StageError
from synthtune.report import sections
from synthtune.review.stats import review_settings, review_stats
from synthtune.store import RunStore, atomic_write_text, review_decisions

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("synthtune.report", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
)


def _plots() -> Any:
    """The plotting module, imported on the first figure: matplotlib costs 0.4 s, and a run
    without quality, mix or training results (generation only) draws none."""
    from synthtune.report import plots

    return plots


def _rule_failures(records: list[Any]) -> list[dict[str, Any]]:
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for record in records:
        for outcome in record.quality.get("rules", []):
            if not outcome["ok"]:
                counts[outcome["rule"]] += 1
                examples.setdefault(outcome["rule"], outcome["why"])
    return [{"rule": k, "count": v, "example": examples[k]} for k, v in counts.most_common()]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to scalar leaves (lists, e.g. per-cluster shares, are left out)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    if isinstance(value, list):
        return {}
    return {prefix.rstrip("."): round(value, 4) if isinstance(value, float) else value}


def coverage_rows(start: dict[str, Any], final: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(measure, start, final) rows of two coverage reports, for the before/after table."""
    before, after = _flatten(start), _flatten(final)
    return [(key, before.get(key), value) for key, value in after.items()]


def _evaluation(metrics: dict[str, Any], figures: dict[str, str]) -> dict[str, Any]:
    """Template context of ``evaluate/metrics.json``; adds the confusion-matrix _plots()."""
    suites = metrics["suites"]
    cls, found_images = suites.get("classification"), suites.get("images")
    if cls and cls.get("n"):
        # tuned beside the TF-IDF baseline (and the base when scored), colour = row share
        figures["cls_confusion"] = _plots().confusion_matrices(
            cls, ("base", "tuned", "baseline"), normalize=True
        )
        cls["tick_names"] = _plots().tick_labels(list(cls["labels"]))[1]
    if found_images and found_images.get("n"):
        figures["confusion"] = _plots().confusion_matrices(found_images)
    audio = suites.get("audio")
    if audio and audio.get("n"):
        figures["audio_confusion"] = _plots().confusion_matrices(audio, normalize=True)
        heldout = audio.get("heldout") or {}
        if heldout.get("n") and "labels" not in heldout:
            heldout["labels"] = audio.get("labels")
        if heldout.get("n"):
            figures["audio_heldout_confusion"] = _plots().confusion_matrices(
                heldout, normalize=True
            )
    return {
        "audio": audio,
        "evaluate": metrics,
        "ppl": suites.get("perplexity"),
        "cls": cls,
        "images": found_images,
        "forgetting": suites.get("forgetting"),
    }


def _data(
    store: RunStore,
    state: dict[str, Any],
    train: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
) -> dict[str, Any]:
    """Label counts per split and source, sample records per source with their decisions,
    and the run's warnings."""
    tables = {
        split: store.read_table("mix", split)
        for split in sections.SPLITS
        if "mix" in state and store.path("mix", f"{split}.parquet").exists()
    }
    sampled = [r for records in tables.values() for r in records if r.source == "real"]
    if store.path("quality", "dataset.parquet").exists():  # every synthetic record, rejects too
        sampled += store.read_table("quality", "dataset")
    else:
        sampled += [r for records in tables.values() for r in records if r.source != "real"]
    return {
        "label_counts": sections.label_counts(tables),
        "samples": sections.sample_records(sampled, review_decisions(store.root)),
        "warnings": sections.run_warnings(state, train, metrics, tables),
    }


def _review_measures(
    store: RunStore, records: list[Any], decisions: dict[str, Any]
) -> dict[str, Any]:
    """The tiers and rules measured by the reviews (docs/review.md), the refitted perplexity
    threshold at 90 % precision and the rules proposed from the rejections the tiers missed."""
    from synthtune.review.feedback import propose_rules, rule_precision
    from synthtune.review.measure import measure_run, refit_patch

    measured = measure_run(store.root, records, decisions)
    measured["refit"] = refit_patch(records, decisions, 0.9)["fits"]
    measured["rules"] = rule_precision(records, decisions, 0.9)
    measured["proposed_rules"] = propose_rules(records, decisions)
    return measured


def _audio_thumbnails(store: RunStore, records: list[Any]) -> list[tuple[str, Any, int]]:
    """One accepted clip per class (the first, in record order; 12 classes at most) as
    ``(title, wave, sample rate)`` for the spectrogram grid."""
    from synthtune.audio.wav import read_wav

    chosen: dict[str, Any] = {}
    for record in records:
        media = record.payload.media or ()
        if record.status != "accepted" or not media or media[0].type != "audio":
            continue
        chosen.setdefault(str(record.payload.label), record)
        if len(chosen) == 12:
            break
    clips = []
    for label, record in sorted(chosen.items()):
        try:
            wave, rate = read_wav(store.media_path(record.payload.media[0].path))
        except (OSError, ValueError):  # a clip gone missing leaves a gap, not a failed report
            continue
        clips.append((label, wave, rate))
    return clips


def _audio_checks(records: list[Any]) -> dict[str, Any]:
    """Medians of the audio tier's measures over the checked clips, and its rejections."""
    import numpy as np

    measured = [m for r in records for m in r.quality.get("audio", [])]
    medians = {
        key: round(float(np.median([m[key] for m in measured])), 3)
        for key in ("seconds", "clipped", "silence", "snr_db")
        if measured
    }
    rejected = [x for r in records for x in r.reasons if x.startswith("audio:")]
    return {"clips": len(measured), "medians": medians, "rejected": len(rejected)}


def build_report(run_dir: Path | str) -> Path:
    """Write ``<run_dir>/report.html`` and return its path."""
    store = RunStore(Path(run_dir))
    state = store.state()["stages"]
    federated = store.path("federated", "summary.json")
    if not state and not federated.exists():
        raise StageError(f"no completed stage in {run_dir}: run the recipe first")

    # run order: the runner completes stages in sequence and forgets every later stage when
    # one re-runs; the store numbers completions (``order``; by time for older runs)
    def position(entry: dict[str, Any]) -> tuple[int, str]:
        order = entry.get("order")
        return (order if isinstance(order, int) else 0, str(entry.get("finished_at")))

    stages = [
        {"name": k, "status": v["status"], "summary": v["summary"], "seconds": v.get("seconds")}
        for k, v in sorted(state.items(), key=lambda item: position(item[1]))
    ]
    context: dict[str, Any] = {
        "name": store.root.name,
        "run_dir": str(store.root),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stages": stages,
        "plots": {},
    }
    if "generate" in state:
        context["usage"] = state["generate"]["summary"].get("usage")
    audio_export = store.path("export", "audio.json")
    if "export" in state and audio_export.exists():
        context["audio_export"] = store.read_json("export", "audio.json")
    quantize = store.path("export", "quantize.json")
    if "export" in state and quantize.exists():
        found = store.read_json("export", "quantize.json")
        context["quantize"] = None if "skipped" in found else found
    # a real-data-only run skips quality (no generated records): no funnel, no dataset
    if "quality" in state and store.path("quality", "dataset.parquet").exists():
        records = store.read_table("quality", "dataset")
        summary = state["quality"]["summary"]
        context["funnel"] = summary.get("funnel", [])
        if context["funnel"]:
            context["plots"]["funnel"] = _plots().funnel_chart(summary["funnel"])
        values = [r.quality["perplexity"] for r in records if "perplexity" in r.quality]
        if values:
            threshold = summary.get("ppl_max") or max(values)
            context["plots"]["perplexity"] = _plots().perplexity_histogram(values, threshold)
        context["rule_failures"] = _rule_failures(records)
        clips = _audio_thumbnails(store, records)
        if clips:
            context["plots"]["spectrograms"] = _plots().spectrogram_grid(clips)
            context["audio_checks"] = _audio_checks(records)
        decisions = review_decisions(store.root)
        if decisions:
            review = review_settings(store.root)
            context["review"] = review_stats(records, decisions, *review)
            context["review_measures"] = measures = _review_measures(store, records, decisions)
            fit = measures.get("refit", {}).get("perplexity")
            if fit and len(fit["curve"]) > 1:
                context["plots"]["review_tradeoff"] = _plots().tradeoff_curve(
                    fit["curve"], fit["cut"], "perplexity cut-off vs expert reviews"
                )
    if "mix" in state:
        context["mix"] = mix = state["mix"]["summary"]
        if mix.get("coverage"):
            context["coverage_rows"] = coverage_rows(
                mix["coverage"]["start"], mix["coverage"]["final"]
            )
        if mix.get("rounds"):
            context["plots"]["mix_rounds"] = _plots().distance_rounds(
                mix["rounds"], mix["threshold"], "mix: chosen synthetic vs real train"
            )
    evolve = store.path("evolve", "summary")
    if evolve.exists():
        context["evolve"] = found = store.read_json("evolve", "summary")
        if found["rounds"]:
            context["plots"]["evolve_arms"] = _plots().arm_allocations(found["rounds"])
            context["plots"]["evolve_distance"] = _plots().distance_rounds(
                [{"round": r["number"], **r["measures"]} for r in found["rounds"]],
                found.get("threshold", 0.15),
                "evolve: accepted pool vs real train",
            )
    if "train" in state:
        context["train"] = store.read_json("train", "metrics.json")
        context["plots"]["loss"] = _plots().loss_curves(context["train"]["log_history"])
    if "evaluate" in state:
        context.update(_evaluation(store.read_json("evaluate", "metrics.json"), context["plots"]))
    context.update(_data(store, state, context.get("train"), context.get("evaluate")))
    if federated.exists():  # synthtune federated (docs/federated.md)
        context["federated"] = found = store.read_json("federated", "summary.json")
        if found["rounds"]:
            context["plots"]["federated"] = _plots().federated_rounds(found["rounds"])
    path = store.root / "report.html"
    atomic_write_text(path, _ENV.get_template("report.html").render(**context))
    return path
