"""Privacy pieces: Flower's local-DP mod, its budget, and the shared-token signature.

Differential privacy is Flower's ``LocalDpMod`` (client side): it clips the update to the
configured L2 norm and adds Gaussian noise calibrated to (epsilon, delta) with sensitivity =
twice the clipping norm, before the message leaves the client. Over R rounds a client spends
(R * epsilon, R * delta) by basic composition, the bound :func:`privacy_spent` reports; the
classic Gaussian calibration is a proof only for epsilon < 1 (larger values are accepted,
e.g. for tests, and documented as not a guarantee).

The shared token is a check on who contributes, not encryption (TLS is): a client signs
``round:examples`` with HMAC-SHA256 under the token and the server drops unsigned results and
results whose weight differs from the signed example count. It does not sign the arrays (the
DP mod changes them after the client signs), so without TLS a man in the middle could swap
them; and anyone who can connect receives the global adapter.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from synthtune.config.federated import LocalDPConfig

SIGNATURE = "signature"


def sign(token: str, round_number: int, examples: int) -> str:
    return hmac.new(
        token.encode(), f"{round_number}:{examples}".encode(), hashlib.sha256
    ).hexdigest()


def signature_ok(token: str, round_number: int, metrics: dict[str, Any]) -> bool:
    claimed = metrics.get(SIGNATURE)
    examples = metrics.get("train_examples")
    if not isinstance(claimed, str) or not isinstance(examples, int):
        return False
    return hmac.compare_digest(claimed, sign(token, round_number, examples))


def local_dp_mod(cfg: LocalDPConfig) -> Any:
    """Flower's LocalDpMod with sensitivity twice the clipping norm: a clipped update lies
    anywhere in the L2 ball of radius C, so two neighbouring inputs can differ by 2C."""
    from flwr.client.mod import LocalDpMod

    return LocalDpMod(cfg.clipping_norm, 2 * cfg.clipping_norm, cfg.epsilon, cfg.delta)


def privacy_spent(cfg: LocalDPConfig | None, rounds: int) -> dict[str, Any] | None:
    """(epsilon, delta) per round and in total after ``rounds`` (basic composition)."""
    if cfg is None:
        return None
    return {
        "mechanism": "Gaussian, local (flwr LocalDpMod)",
        "clipping_norm": cfg.clipping_norm,
        "epsilon_per_round": cfg.epsilon,
        "delta_per_round": cfg.delta,
        "rounds": rounds,
        "epsilon": cfg.epsilon * rounds,
        "delta": cfg.delta * rounds,
    }
