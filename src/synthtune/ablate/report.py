"""The ablation's files in ``<runs>/<name>/ablate/``: ``results.json`` (every run's metrics
and the statistics), ``ablation.md`` (the tables and the verdict) and ``ablation.png`` (per
variant and metric the mean with its interval, the TF-IDF baseline as a line)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthtune.ablate.stats import METRICS, percent
from synthtune.store import atomic_write_bytes, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from synthtune.ablate.runner import AblationResult


def interval_text(cell: dict[str, Any] | None, digits: int = 4) -> str:
    """``mean ± half-width`` (``mean (1 seed)`` without an interval); ``-`` when absent."""
    if not cell:
        return "-"
    if cell["low"] is None:
        return f"{cell['mean']:.{digits}f} (1 seed)"
    return f"{cell['mean']:.{digits}f} ± {(cell['high'] - cell['low']) / 2:.{digits}f}"


def difference_text(cell: dict[str, Any] | None, digits: int = 4) -> str:
    if not cell:
        return "-"
    if cell["low"] is None:
        return f"{cell['mean']:+.{digits}f} (1 seed)"
    return f"{cell['mean']:+.{digits}f} [{cell['low']:+.{digits}f}, {cell['high']:+.{digits}f}]"


def summary_rows(stats: dict[str, Any]) -> list[list[str]]:
    """``[variant, metric cells..., paired difference cells...]`` per variant."""
    rows = []
    for variant, cells in stats["summary"].items():
        paired = stats["paired"].get(variant, {})
        rows.append(
            [variant]
            + [interval_text(cells.get(m)) for m in stats["metrics"]]
            + [
                "reference" if variant == stats["reference"] else difference_text(paired.get(m))
                for m in stats["metrics"]
            ]
        )
    return rows


def summary_header(stats: dict[str, Any]) -> list[str]:
    """Metric columns hold mean ± the interval's half-width, Δ columns the paired
    difference to the reference with its interval."""
    return ["variant", *stats["metrics"], *(f"Δ {m}" for m in stats["metrics"])]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _per_class_table(stats: dict[str, Any]) -> list[str]:
    per_class = stats["per_class"]
    variants = list(per_class["mean_f1"])
    labels = sorted({label for means in per_class["mean_f1"].values() for label in means})
    if not labels:
        return []
    others = [v for v in variants if v != stats["reference"]]
    header = (
        ["class"]
        + [f"F1 {v}" for v in variants]
        + [f"Δ {v} vs {stats['reference']}" for v in others]
    )
    rows = [
        [label]
        + [f"{per_class['mean_f1'][v].get(label, float('nan')):.3f}" for v in variants]
        + [difference_text(per_class["difference"].get(v, {}).get(label), 3) for v in others]
        for label in labels
    ]
    return ["", "## Per-class F1 (mean over seeds)", "", *_table(header, rows)]


def contamination_lines(contamination: dict[str, Any]) -> list[str]:
    rows = [
        [
            variant,
            str(c["synthetic_rows"]),
            f"{c['ngram_rows']} / {c['test_rows']} ({percent(c['ngram_fraction'])})",
            str(c["exact_duplicates"]),
        ]
        for variant, c in contamination.items()
    ]
    rule = next(iter(contamination.values()))["rule"] if contamination else ""
    return [
        "",
        "## Contamination guard",
        "",
        f"Test rows sharing at least one {rule} with a synthetic training record.",
        "",
        *_table(["variant", "synthetic rows", "test rows overlapping", "exact duplicates"], rows),
    ]


def markdown(result: AblationResult, recipe_name: str) -> str:
    stats = result.stats
    seeds = sorted({r["seed"] for r in result.runs})
    lines = [
        f"# Ablation of {recipe_name}",
        "",
        f"{len(result.runs)} runs: {len(stats['summary'])} variants x seeds {seeds} "
        "(train.seed only; the same splits, generation and test rows for every run). "
        f"Tuned model on the test split: mean ± half-width of the Student-t "
        f"{percent(stats['confidence'])} interval over seeds; Δ: difference to "
        f"{stats['reference']}, paired by seed, [{percent(stats['confidence'])} interval].",
        "",
        *_table(summary_header(stats), summary_rows(stats)),
    ]
    if len(seeds) == 1:
        lines += ["", "One seed: no confidence interval can be computed (use --seeds 3 or more)."]
    lines += _per_class_table(stats)
    lines += contamination_lines(result.contamination)
    lines += ["", "## Verdict", "", *[f"- {v}" for v in stats["verdicts"] + stats["baseline"]]]
    return "\n".join(lines) + "\n"


def plot(result: AblationResult) -> bytes:
    """Per metric one panel: each variant's mean with its interval as an error bar; the
    TF-IDF baseline (mean over the runs that have one) as a dashed line."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = result.stats
    metrics = stats["metrics"]
    variants = list(stats["summary"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for x, variant in enumerate(variants):
            cell = stats["summary"][variant].get(metric)
            if not cell:
                continue
            low = cell["mean"] - (cell["low"] if cell["low"] is not None else cell["mean"])
            high = (cell["high"] if cell["high"] is not None else cell["mean"]) - cell["mean"]
            ax.errorbar([x], [cell["mean"]], yerr=[[low], [high]], fmt="o", capsize=4)
        baseline = [
            r["metrics"]["baseline"][metric]
            for r in result.runs
            if metric in r["metrics"].get("baseline", {})
        ]
        if baseline:
            ax.axhline(sum(baseline) / len(baseline), linestyle="--", color="grey", label="TF-IDF")
            ax.legend(loc="best", fontsize=8)
        better = "higher" if METRICS[metric].higher_is_better else "lower"
        ax.set_title(f"{metric} ({better} is better)")
        ax.set_xticks(range(len(variants)), variants, rotation=20, fontsize=8)
        ax.set_xlim(-0.5, len(variants) - 0.5)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def write_outputs(
    result: AblationResult, patches: dict[str, Any], recipe_name: str
) -> dict[str, Path]:
    folder = result.folder
    files = {
        "results": folder / "results.json",
        "markdown": folder / "ablation.md",
        "plot": folder / "ablation.png",
    }
    atomic_write_json(
        files["results"],
        {
            "recipe": recipe_name,
            "variants": patches,
            "runs": result.runs,
            "stats": result.stats,
            "contamination": result.contamination,
        },
    )
    atomic_write_text(files["markdown"], markdown(result, recipe_name))
    atomic_write_bytes(files["plot"], plot(result))
    return files
