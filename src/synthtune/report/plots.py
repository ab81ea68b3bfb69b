"""Plots for the report, returned as base64 PNG data URIs (no files beside the HTML)."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _to_uri(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def perplexity_histogram(values: list[float], threshold: float) -> str:
    fig, ax = plt.subplots(figsize=(6, 3))
    finite = [v for v in values if v != float("inf")]
    ax.hist(finite, bins=30, color="#4c78a8")
    ax.axvline(threshold, color="#e45756", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_xlabel("perplexity")
    ax.set_ylabel("records")
    ax.legend()
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
    count_key = "synthetic" if rounds and "synthetic" in rounds[0] else "pool"
    if rounds and count_key in rounds[0]:
        twin = ax.twinx()
        twin.bar(
            [r["round"] for r in rounds],
            [r[count_key] for r in rounds],
            alpha=0.15,
            color="#54a24b",
        )
        twin.set_ylabel(f"{count_key} records")
    ax.legend(loc="upper right", fontsize=8)
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
