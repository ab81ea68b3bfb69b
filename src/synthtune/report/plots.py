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
