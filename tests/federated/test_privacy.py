"""Local DP (Flower's LocalDpMod): what reaches the server is the update clipped to the
configured norm (plus noise), although the local training moved the adapter further; the
budget spent is reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import MessageType
from flwr.common import parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from synthtune.config import load_recipe
from synthtune.federated.server import latest_checkpoint
from synthtune.federated.simulation import simulate
from tests.federated.conftest import write_federated_recipe

CLIP = 0.01


def _norm(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(float(((x - y) ** 2).sum()) for x, y in zip(a, b, strict=True))))


class RawUpdates:
    """Sits inside the DP mod: sees what training produced, before clipping and noise."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.start: list[np.ndarray] = []

    def __call__(self, msg: Any, ctx: Any, call_next: Any) -> Any:
        reply = call_next(msg, ctx)
        if msg.metadata.message_type == MessageType.TRAIN:
            self.start = parameters_to_ndarrays(
                compat.recorddict_to_fitins(msg.content, keep_input=True).parameters
            )
            trained = compat.recorddict_to_fitres(reply.content, keep_input=True)
            self.norms.append(_norm(parameters_to_ndarrays(trained.parameters), self.start))
        return reply


@pytest.mark.slow
def test_local_dp_clips_what_leaves_the_client(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_federated_recipe(
        tmp_path,
        tiny_model_dir,
        overrides={
            "federated": {
                "rounds": 1,
                "clients": ["data/hospital-a.jsonl", "data/hospital-b.jsonl"],
                # a huge epsilon keeps the noise far below the clipping norm, so the check is sharp
                "local_dp": {"clipping_norm": CLIP, "epsilon": 1.0e5, "delta": 1.0e-5},
            }
        },
    )
    raw = RawUpdates()
    runs = tmp_path / "runs"
    summary = simulate(load_recipe(path), runs, log=lambda m: None, extra_mods=[raw])

    assert len(raw.norms) == 2 and min(raw.norms) > 5 * CLIP  # training moved further
    _, final = latest_checkpoint(runs / "federated-hospitals" / "federated" / "global")
    assert final is not None
    moved = _norm(final, raw.start)  # the average of two updates clipped to CLIP
    assert 0 < moved <= CLIP * 1.05
    privacy = summary["privacy"]
    assert privacy["epsilon"] == 1.0e5 and privacy["delta"] == 1.0e-5 and privacy["rounds"] == 1
