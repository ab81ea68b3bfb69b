"""Three clients on loopback for three rounds through Flower's gRPC: the global adapter
improves, every message a client sends holds adapter arrays and numbers only, and a second
run resumes after the checkpointed rounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from flwr.app import MessageType
from flwr.common import parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from synthtune.config import load_recipe
from synthtune.federated.simulation import simulate
from synthtune.report.html import build_report

ALLOWED_METRICS = {"train_examples", "train_loss", "seconds", "signature"}


class SentMessages:
    """A client mod that keeps every reply a client sends. Extra mods sit inside the DP mod;
    this recipe has none, so what it keeps is exactly what leaves the client."""

    def __init__(self) -> None:
        self.fits: list[Any] = []
        self.evaluations: list[Any] = []
        self.received: list[list[np.ndarray]] = []

    def __call__(self, msg: Any, ctx: Any, call_next: Any) -> Any:
        reply = call_next(msg, ctx)
        if msg.metadata.message_type == MessageType.TRAIN:
            fit_ins = compat.recorddict_to_fitins(msg.content, keep_input=True)
            self.received.append(parameters_to_ndarrays(fit_ins.parameters))
            self.fits.append(compat.recorddict_to_fitres(reply.content, keep_input=True))
        elif msg.metadata.message_type == MessageType.EVALUATE:
            self.evaluations.append(compat.recorddict_to_evaluateres(reply.content))
        return reply


def _texts(folder: Path) -> list[str]:
    rows = [json.loads(line) for f in folder.glob("*.jsonl") for line in f.read_text().splitlines()]
    return [row[key] for row in rows for key in ("prompt", "response")]


@pytest.mark.slow
def test_three_clients_three_rounds_on_loopback(federated_recipe: Path, tmp_path: Path) -> None:
    sent = SentMessages()
    runs = tmp_path / "runs"
    summary = simulate(load_recipe(federated_recipe), runs, log=lambda m: None, extra_mods=[sent])

    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(r["clients_ok"] == 3 and r["aggregated"] for r in rounds)
    assert rounds[-1]["val_loss"] < rounds[0]["val_loss"]
    assert all(r["bytes_up"] == 3 * summary["adapter_bytes"] for r in rounds)
    assert summary["adapter_bytes"] < summary["full_ft_bytes"] / 5

    # what left the clients: adapter-shaped arrays and a few numbers, never a record
    assert len(sent.fits) == 9 and len(sent.evaluations) == 9
    shapes = [a.shape for a in sent.received[0]]
    texts = _texts(federated_recipe.parent / "data")
    for res in sent.fits:
        assert [a.shape for a in parameters_to_ndarrays(res.parameters)] == shapes
        assert set(res.metrics) <= ALLOWED_METRICS
        wire = b"".join(res.parameters.tensors) + repr(res.metrics).encode()
        assert not any(text.encode() in wire for text in texts)
    for res in sent.evaluations:
        assert set(res.metrics) == set() and res.num_examples > 0

    run_dir = runs / "federated-hospitals"
    adapter = run_dir / "federated" / "adapter" / "adapter_config.json"
    assert adapter.exists() and summary["final_round"] == 3
    html = build_report(run_dir).read_text()
    assert "Federated" in html and "union val loss" in html

    # one more round: the server resumes from round 3's checkpoint and runs only round 4
    data = yaml.safe_load(federated_recipe.read_text())
    data["federated"]["rounds"] = 4
    federated_recipe.write_text(yaml.safe_dump(data))
    again = simulate(load_recipe(federated_recipe), runs, log=lambda m: None, extra_mods=[sent])
    assert [r["round"] for r in again["rounds"]] == [1, 2, 3, 4]
    assert len(sent.fits) == 12  # 3 clients x 1 new round
    assert again["rounds"][:3] == rounds
