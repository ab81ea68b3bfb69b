"""Plots for the report, returned as base64 PNG data URIs (no files beside the HTML)."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator


def _to_uri(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def perplexity_histogram(values: list[float], threshold: float) -> str:
    """Histogram of the scored records with the threshold. The x axis spans the bulk of the
    data (up to the 99th percentile, the rest counted in the last bin): a far threshold or a
    few huge outliers would otherwise squash every bar against the left edge."""
    fig, ax = plt.subplots(figsize=(6, 3))
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if not finite.size:  # nothing to draw but the count of unscorable records
        ax.text(0.5, 0.5, f"{len(values)} records, none with a finite perplexity", ha="center")
        ax.set_axis_off()
        return _to_uri(fig)
    top = float(np.percentile(finite, 99))
    right = max(top, threshold) if math.isfinite(threshold) and threshold <= 1.5 * top else top
    ax.hist(np.minimum(finite, right), bins=30, range=(0, right * 1.02), color="#4c78a8")
    label = f"threshold {threshold:g}"
    if threshold <= right:
        ax.axvline(threshold, color="#e45756", linestyle="--", label=label)
    else:
        ax.plot([], [], color="#e45756", linestyle="--", label=f"{label} (right of the axis)")
    if (finite > right).any():
        ax.plot([], [], " ", label=f"last bar: {int((finite > right).sum())} records > {right:.3g}")
    ax.set_xlabel("perplexity")
    ax.set_ylabel("records")
    ax.legend(fontsize=8)
    return _to_uri(fig)


def loss_curves(history: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(6, 3))
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    val = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="#4c78a8")
    if val:
        ax.plot(*zip(*val, strict=True), label="val loss", marker="o", color="#f58518")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return _to_uri(fig)


def funnel_chart(funnel: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(6, 2.5))
    names = [f["tier"] for f in funnel]
    counts = [f["remaining"] for f in funnel]
    ax.barh(names[::-1], counts[::-1], color="#54a24b")
    for y, count in enumerate(counts[::-1]):
        ax.text(count, y, f" {count}", va="center")
    ax.set_xlabel("records remaining")
    return _to_uri(fig)


def distance_rounds(rounds: list[dict[str, Any]], threshold: float, title: str) -> str:
    """Distance per round with its bootstrap interval, the stop threshold, and the count."""
    fig, ax = plt.subplots(figsize=(6, 3))
    measured = [r for r in rounds if r.get("wasserstein") is not None]
    if measured:
        x = [r["round"] for r in measured]
        ax.plot(
            x,
            [r["wasserstein"] for r in measured],
            marker="o",
            color="#4c78a8",
            label="sliced Wasserstein",
        )
        bands = [r for r in measured if r.get("wasserstein_ci")]
        if bands:
            ax.fill_between(
                [r["round"] for r in bands],
                [r["wasserstein_ci"][0] for r in bands],
                [r["wasserstein_ci"][1] for r in bands],
                color="#4c78a8",
                alpha=0.2,
                label="95 % interval",
            )
    ax.axhline(threshold, color="#e45756", linestyle="--", label=f"stop below {threshold:g}")
    ax.set_xlabel("round")
    ax.set_ylabel("distance to real (std)")
    ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    count_key = "synthetic" if rounds and "synthetic" in rounds[0] else "pool"
    found, labels = ax.get_legend_handles_labels()
    handles: list[Any] = list(found)
    if rounds and count_key in rounds[0]:
        twin = ax.twinx()
        bars = twin.bar(
            [r["round"] for r in rounds],
            [r[count_key] for r in rounds],
            width=0.3,
            alpha=0.35,
            color="#54a24b",
            hatch="//",
        )
        twin.set_ylabel(f"{count_key} records (bars)")
        handles.append(bars)
        labels.append(f"{count_key} records (right axis)")
        ax.set_zorder(twin.get_zorder() + 1)  # the line and interval above the bars
        ax.patch.set_visible(False)
    ax.legend(handles, labels, loc="upper right", fontsize=8)
    return _to_uri(fig)


def arm_allocations(rounds: list[dict[str, Any]]) -> str:
    """Requests per arm per round (stacked): where the bandit sent the generation budget."""
    fig, ax = plt.subplots(figsize=(6, 3))
    arms = sorted({arm for r in rounds for arm in r["allocation"]})
    x = [r["number"] for r in rounds]
    bottom = [0] * len(rounds)
    for arm in arms:
        heights = [r["allocation"].get(arm, 0) for r in rounds]
        ax.bar(x, heights, bottom=bottom, label=arm)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xlabel("round")
    ax.set_ylabel("requests")
    ax.legend(fontsize=7, ncol=2)
    return _to_uri(fig)


def federated_rounds(rounds: list[dict[str, Any]]) -> str:
    """Union val loss and mean train loss per federated round, bytes sent up as bars."""
    fig, ax = plt.subplots(figsize=(6, 3))
    for key, label, color in (
        ("val_loss", "union val loss", "#f58518"),
        ("train_loss", "train loss", "#4c78a8"),
    ):
        points = [(r["round"], r[key]) for r in rounds if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label, color=color)
    ax.set_xlabel("round")
    ax.set_ylabel("loss")
    twin = ax.twinx()
    twin.bar([r["round"] for r in rounds], [r.get("bytes_up", 0) for r in rounds], alpha=0.15)
    twin.set_ylabel("bytes sent up")
    ax.legend(loc="upper right", fontsize=8)
    return _to_uri(fig)


# CJK families tried after matplotlib's default when they are installed (labels of Chinese
# or Japanese data sets); a label no installed font can draw is shown by its number instead
_FALLBACK_FAMILIES = ["Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "SimHei"]
_TICK_CHARS = 18
_SIDE_BY_SIDE_CLASSES = 6
_MODEL_TITLES = {"base": "base", "tuned": "tuned", "baseline": "TF-IDF baseline"}


def _families() -> list[str]:
    """matplotlib's default sans-serif family, then the installed CJK fallbacks."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    default = plt.rcParams["font.sans-serif"][0]
    return [default, *(f for f in _FALLBACK_FAMILIES if f in installed)]


def _font_chars() -> set[int]:
    """Code points the families of :func:`_families` can draw."""
    from matplotlib import font_manager, ft2font

    chars: set[int] = set()
    for family in _families():
        path = font_manager.findfont(font_manager.FontProperties(family=family))
        chars |= set(ft2font.FT2Font(path).get_charmap())
    return chars


def tick_labels(labels: list[str]) -> tuple[list[str], bool]:
    """``(ticks, named)``: the labels (long ones shortened) when the fonts can draw them,
    else ``#1``, ``#2``, ... (``named`` False: the report's per-class table gives the key)."""
    drawable = _font_chars()
    if all(ord(c) in drawable for label in labels for c in label if not c.isspace()):
        short = [x if len(x) <= _TICK_CHARS else x[: _TICK_CHARS - 1] + "…" for x in labels]
        return short, True
    return [f"#{i + 1}" for i in range(len(labels))], False


def confusion_matrices(
    suite: dict[str, Any], names: tuple[str, ...] = ("base", "tuned"), normalize: bool = False
) -> str:
    """One confusion matrix per model of ``names`` found in ``suite`` (rows: true, columns:
    predicted). ``normalize`` colours each cell by its share of the true class's row (the
    recall), so a small class is as visible as a large one; the cells show counts."""
    with plt.rc_context({"font.sans-serif": _families()}):
        return _confusion_figure(suite, names, normalize)


def _confusion_figure(suite: dict[str, Any], names: tuple[str, ...], normalize: bool) -> str:
    shown = [n for n in names if isinstance(suite.get(n), dict) and "confusion_matrix" in suite[n]]
    ticks, _ = tick_labels(list(suite["labels"]))
    side = max(3.4, 0.42 * len(ticks) + 1.6)
    # side by side while the page can hold them at a readable size, else one under another
    across = len(shown) if len(ticks) <= _SIDE_BY_SIDE_CLASSES else 1
    down = math.ceil(len(shown) / across)
    fig, grid = plt.subplots(
        down, across, figsize=(side * across, side * down), squeeze=False, layout="constrained"
    )
    axes = grid.ravel()
    for ax, name in zip(axes, shown, strict=True):
        matrix = np.asarray(suite[name]["confusion_matrix"], dtype=float)
        rows = matrix.sum(axis=1, keepdims=True)
        colour = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
        ax.imshow(colour if normalize else matrix, cmap="Blues", vmin=0)
        top = colour.max() if normalize else matrix.max()
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                dark = (colour if normalize else matrix)[i, j] > 0.6 * top
                ax.text(
                    j,
                    i,
                    str(int(count)),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
        ax.set_xticks(range(len(ticks)), ticks, rotation=45, ha="right")
        # side by side, class names on the first matrix only: the rows are the same
        ax.set_yticks(range(len(ticks)), ticks if across == 1 or ax is axes[0] else [])
        ax.set_ylabel("true" if across == 1 or ax is axes[0] else "")
        ax.set_xlabel("predicted")
        title = _MODEL_TITLES.get(name, name)
        ax.set_title(f"{title}: macro-F1 {suite[name]['macro_f1']:.3f}", fontsize=10)
    return _to_uri(fig)


def tradeoff_curve(curve: list[dict[str, Any]], chosen: float | None, title: str) -> str:
    """Precision and recall of each candidate cut-off (``review.measure.refit_threshold``),
    the refitted one marked."""
    fig, ax = plt.subplots(figsize=(6, 3))
    cuts = [c["cut"] for c in curve]
    for key, color in (("precision", "#4c78a8"), ("recall", "#f58518")):
        ax.plot(cuts, [np.nan if c[key] is None else c[key] for c in curve], label=key, color=color)
    if chosen is not None:
        ax.axvline(chosen, color="#e45756", linestyle="--", label=f"refitted {chosen:g}")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("cut-off")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _to_uri(fig)


def spectrogram_grid(clips: list[tuple[str, np.ndarray, int]], columns: int = 4) -> str:
    """Spectrogram thumbnails (dB, 0 to the Nyquist frequency) of ``(title, wave, sample
    rate)`` clips, e.g. one per class: what each class sounds like, at a glance."""
    rows = max(1, math.ceil(len(clips) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, wave, rate) in zip(axes.flat, clips, strict=False):
        ax.axis("on")
        ax.specgram(wave, NFFT=512, Fs=rate, noverlap=384, cmap="magma", scale="dB")
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_xlabel("s", fontsize=6)
        ax.set_ylabel("Hz", fontsize=6)
    fig.tight_layout()
    return _to_uri(fig)
