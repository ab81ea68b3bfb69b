"""SecAgg+ (Flower's SecAggPlusWorkflow + secaggplus_mod over the in-process LocalGrid): the
server's new adapter is the example-weighted average of what the clients trained, yet no
client's update leaves it in the clear, and a client lost mid-round is recovered from the
others' key shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Message, MessageType
from flwr.common import bytes_to_ndarray, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.compat.common import recorddict_compat as compat

from synthtune.config import load_recipe
from synthtune.errors import RecipeError
from synthtune.federated import secure
from synthtune.federated.params import load_arrays
from synthtune.federated.privacy import SIGNATURE
from synthtune.federated.simulation import simulate
from tests.federated.conftest import write_federated_recipe

FILES = ["data/hospital-a.jsonl", "data/hospital-b.jsonl", "data/hospital-c.jsonl"]


class Trained:
    """Sits inside secaggplus_mod: records each client's plain update and example count per
    round, and makes one node fail its training in one round (a client lost mid-round)."""

    def __init__(self, fail: set[tuple[int, int]] | None = None) -> None:
        self.fail = fail or set()  # (round, position of the node among the ones seen)
        self.nodes: list[int] = []
        self.updates: dict[int, dict[int, tuple[list[np.ndarray], int]]] = {}

    def __call__(self, msg: Any, ctx: Any, call_next: Any) -> Any:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, ctx)
        node, round_number = msg.metadata.dst_node_id, int(msg.metadata.group_id)
        if node not in self.nodes:
            self.nodes.append(node)
        if (round_number, self.nodes.index(node)) in self.fail:
            raise RuntimeError("client lost mid-round")
        reply = call_next(msg, ctx)
        fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
        self.updates.setdefault(round_number, {})[node] = (
            parameters_to_ndarrays(fitres.parameters),
            fitres.num_examples,
        )
        return reply


def _weighted(updates: dict[int, tuple[list[np.ndarray], int]]) -> list[np.ndarray]:
    total = sum(n for _, n in updates.values())
    layers = zip(*(arrays for arrays, _ in updates.values()), strict=True)
    weights = [n / total for _, n in updates.values()]
    return [sum(w * a for w, a in zip(weights, layer, strict=True)) for layer in layers]


def _recipe(tmp_path: Path, base: Path, rounds: int) -> Path:
    path = write_federated_recipe(
        tmp_path,
        base,
        overrides={
            "federated": {"rounds": rounds, "clients": FILES, "secure_aggregation": {}},
        },
    )
    # unequal parties, so the example weighting shows in the average
    for name, keep in (("hospital-b.jsonl", 18), ("hospital-c.jsonl", 10)):
        data = tmp_path / "data" / name
        data.write_text(
            "\n".join(data.read_text(encoding="utf-8").splitlines()[:keep]) + "\n",
            encoding="utf-8",
        )
    return path


def _two_rounds(tmp_path: Path, base: Path, runs: Path, trained: Trained) -> dict[str, Any]:
    recipe = load_recipe(_recipe(tmp_path, base, rounds=2))
    return simulate(recipe, runs, log=lambda m: None, extra_mods=[trained])


@pytest.mark.slow
def test_secagg_aggregates_the_weighted_average_without_seeing_an_update(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[Any] = []  # every reply a client node sent to the server
    deliver = secure.LocalGrid._deliver

    def recording(self: secure.LocalGrid, message: Any) -> Any:
        reply = deliver(self, message)
        sent.append(reply)
        return reply

    monkeypatch.setattr(secure.LocalGrid, "_deliver", recording)
    trained = Trained()
    runs = tmp_path / "runs"
    summary = _two_rounds(tmp_path, tiny_model_dir, runs, trained)

    assert [r["clients_ok"] for r in summary["rounds"]] == [3, 3]
    assert summary["secure_aggregation"]["threshold"] == 0.67
    # the dequantised float64 sum goes back to the clients as the float32 they sent
    first, second = summary["rounds"]
    assert second["bytes_down"] == first["bytes_down"]
    assert first["bytes_up"] == second["bytes_up"] == 3 * summary["adapter_bytes"]
    global_dir = runs / "federated-hospitals" / "federated" / "global"
    for round_number in (1, 2):
        updates = trained.updates[round_number]
        assert sorted(n for _, n in updates.values()) == sorted(
            [r["train"] for r in summary["clients"]]
        )
        expected = _weighted(updates)
        layers = zip(*(a for a, _ in updates.values()), strict=True)
        plain_mean = [sum(layer) / 3 for layer in layers]
        got = load_arrays(global_dir / f"round-{round_number:03d}.npz")
        assert {g.dtype for g in got} == {np.dtype(np.float32)}
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, atol=2e-5)  # quantisation: 16/2**22 per entry
        # the weighting matters: an unweighted mean is measurably elsewhere
        gaps = [float(np.abs(g - m).max()) for g, m in zip(got, plain_mean, strict=True)]
        assert max(gaps) > 1e-3

    train_replies = [m for m in sent if m.metadata.message_type == MessageType.TRAIN]
    assert len(train_replies) == 2 * 3 * 4  # rounds x clients x SecAgg+ stages
    plain = [a for r in trained.updates.values() for arrays, _ in r.values() for a in arrays]
    for reply in train_replies:
        # no update arrays travel in the clear; the masked vector is uniform-looking integers
        assert all(len(record) == 0 for record in reply.content.array_records.values())
        masked = reply.content.config_records[RECORD_KEY_CONFIGS].get(Key.MASKED_PARAMETERS)
        for blob in masked or []:
            # quantised updates lie in [0, 2**22); masked ones spread over [0, 2**32)
            values = bytes_to_ndarray(blob).ravel()
            if values.size >= 16:
                assert float((values >= 2**22).mean()) > 0.9
    assert any(
        reply.content.config_records[RECORD_KEY_CONFIGS].get(Key.MASKED_PARAMETERS)
        for reply in train_replies
    )
    assert plain  # the clients did train


@pytest.mark.slow
def test_secagg_recovers_a_client_lost_mid_round(tmp_path: Path, tiny_model_dir: Path) -> None:
    # 3 clients, shares 3, threshold 2: one client may drop after the keys are shared
    trained = Trained(fail={(2, 2)})
    runs = tmp_path / "runs"
    summary = _two_rounds(tmp_path, tiny_model_dir, runs, trained)

    rounds = summary["rounds"]
    assert [r["clients_ok"] for r in rounds] == [3, 2] and rounds[1]["clients_failed"] == 1
    updates = trained.updates[2]
    assert len(updates) == 2  # the lost client's training never produced an update
    got = load_arrays(runs / "federated-hospitals" / "federated" / "global" / "round-002.npz")
    for g, e in zip(got, _weighted(updates), strict=True):
        np.testing.assert_allclose(g, e, atol=2e-5)  # its masks were removed from the sum


class Forged:
    """Inside secaggplus_mod: one client's result carries a wrong token signature."""

    def __call__(self, msg: Any, ctx: Any, call_next: Any) -> Any:
        reply = call_next(msg, ctx)
        if msg.metadata.message_type != MessageType.TRAIN or msg.metadata.dst_node_id != 2:
            return reply
        fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
        fitres.metrics[SIGNATURE] = "0" * 64
        return Message(compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=msg)


@pytest.mark.slow
def test_secagg_round_with_an_unsigned_result_keeps_the_global_adapter(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the secure sum already holds the forged update: dropping its row would not remove it
    monkeypatch.setenv("FED_TEST_TOKEN", "s3cret-token")
    path = _recipe(tmp_path, tiny_model_dir, rounds=1)
    recipe = load_recipe(path)
    recipe = recipe.model_copy(
        update={"federated": recipe.federated.model_copy(update={"token_env": "FED_TEST_TOKEN"})}
    )
    runs = tmp_path / "runs"
    summary = simulate(recipe, runs, log=lambda m: None, extra_mods=[Forged()])

    row = summary["rounds"][0]
    assert row["clients_rejected"] == 1 and row["clients_ok"] == 2
    assert row["aggregated"] is False
    assert not (runs / "federated-hospitals" / "federated" / "global" / "round-001.npz").exists()


@pytest.mark.slow
def test_a_round_secagg_halts_is_recorded_and_the_next_one_runs(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # two of three clients lost in round 1: one live client cannot be hidden, Flower halts
    trained = Trained(fail={(1, 1), (1, 2)})
    runs = tmp_path / "runs"
    summary = _two_rounds(tmp_path, tiny_model_dir, runs, trained)
    first, second = summary["rounds"]
    assert first["aggregated"] is False and first["clients_ok"] == 0
    assert first["clients_failed"] == first["clients_sampled"] == 3
    assert second["aggregated"] is True and second["clients_ok"] == 3
    global_dir = runs / "federated-hospitals" / "federated" / "global"
    assert not (global_dir / "round-001.npz").exists()
    assert (global_dir / "round-002.npz").exists()


def test_secagg_settings_flower_would_fail_on_are_refused_before_training(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    path = write_federated_recipe(
        tmp_path,
        tiny_model_dir,
        overrides={"federated": {"clients": FILES, "secure_aggregation": {"shares": 5}}},
    )
    runs = tmp_path / "runs"
    with pytest.raises(RecipeError, match="shares: 5 > the 3 clients"):
        simulate(load_recipe(path), runs, log=lambda m: None)
    assert not (runs / "federated-hospitals" / "federated" / "global").exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"shares": 3, "threshold": 3}, "threshold must be less than shares"),
        ({"shares": 3.0}, "a fraction must be <= 1"),
        ({"quantization_range": 2**31}, "below 2\\*\\*31"),
    ],
)
def test_secagg_recipe_errors_name_the_field(
    tmp_path: Path, tiny_model_dir: Path, settings: dict, message: str
) -> None:
    path = write_federated_recipe(
        tmp_path, tiny_model_dir, overrides={"federated": {"secure_aggregation": settings}}
    )
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)


def test_secagg_needs_two_clients_per_round(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_federated_recipe(
        tmp_path,
        tiny_model_dir,
        overrides={"federated": {"min_clients": 1, "secure_aggregation": {}}},
    )
    with pytest.raises(RecipeError, match="min_clients must be >= 2"):
        load_recipe(path)
