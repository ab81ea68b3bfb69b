"""Distances on known distributions: identical ~ 0, shifts read as shifts and keep their order,
at any size and in any feature space (the normalisation the stop threshold relies on)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from synthtune.distribution.distances import (
    DISTANCES,
    DistanceOptions,
    mmd_rbf,
    sliced_wasserstein,
    sphere_abs_mean,
    total_variation,
    w1_sorted,
    wasserstein_1d,
)
from synthtune.errors import StageError

OPTS = DistanceOptions(bootstrap=0)


def _anisotropic(dim: int, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """A colouring matrix with a decaying spectrum, like real sentence embeddings."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (q * (1 / (np.arange(dim) + 1) ** 0.7)) @ q.T, rng


def _shifted_pair(dim: int, n: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference and synthetic samples; synthetic shifted by ``shift`` (Mahalanobis) in the
    span of the top principal directions."""
    colour, rng = _anisotropic(dim, seed)
    eig = np.linalg.eigh(colour)[1][:, ::-1]
    direction = eig[:, :4] @ rng.standard_normal(4)
    direction /= np.linalg.norm(direction)
    ref = rng.standard_normal((n, dim)) @ colour
    syn = (rng.standard_normal((n // 2, dim)) + shift * direction) @ colour
    return syn, ref


def test_w1_sorted_matches_scipy_for_unequal_sizes() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((37, 5)), rng.normal(0.3, 2.0, (53, 5))
    ours = w1_sorted(np.sort(a, axis=0), np.sort(b, axis=0))
    theirs = [stats.wasserstein_distance(a[:, j], b[:, j]) for j in range(5)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_sphere_constant() -> None:
    assert sphere_abs_mean(1) == pytest.approx(1.0)
    assert sphere_abs_mean(2) == pytest.approx(2 / np.pi)
    rng = np.random.default_rng(0)
    u = rng.standard_normal((200_000, 16))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    assert sphere_abs_mean(16) == pytest.approx(np.abs(u[:, 0]).mean(), rel=0.01)


@pytest.mark.parametrize("dim", [16, 384])
def test_identical_distributions_read_about_zero_at_any_size(dim: int) -> None:
    for n in (3000, 8000):
        syn, ref = _shifted_pair(dim, n, 0.0, seed=n)
        d = sliced_wasserstein(syn, ref, OPTS)
        assert d.raw > 0.1  # the floor is real (at 3000 rows, above the stop threshold) ...
        assert d.value < 0.15  # ... and removed: identical sets pass the stop criterion


def test_shift_reads_as_the_shift_and_orders() -> None:
    values = []
    for shift in (0.25, 0.5, 1.0, 2.0):
        syn, ref = _shifted_pair(384, 3000, shift, seed=1)
        values.append(sliced_wasserstein(syn, ref, OPTS).value)
    assert values == sorted(values)
    np.testing.assert_allclose(values[1:], [0.5, 1.0, 2.0], rtol=0.15)


def test_same_threshold_meaning_across_spaces_and_scales() -> None:
    """A 1-shift reads ~1 for scalars in any unit and for vectors of any width and scale."""
    rng = np.random.default_rng(3)
    ref = rng.normal(100.0, 25.0, 4000)  # e.g. characters per record
    scalar = wasserstein_1d(rng.normal(125.0, 25.0, 2000), ref, OPTS).value
    syn16, ref16 = _shifted_pair(16, 4000, 1.0, seed=4)
    syn384, ref384 = _shifted_pair(384, 4000, 1.0, seed=5)
    small = sliced_wasserstein(syn16 * 1e-3, ref16 * 1e-3, OPTS).value
    wide = sliced_wasserstein(syn384, ref384, OPTS).value
    for value in (scalar, small, wide):
        assert value == pytest.approx(1.0, abs=0.2)


def test_bootstrap_interval_brackets_the_estimate_and_shrinks_with_size() -> None:
    opts = DistanceOptions(bootstrap=40, seed=2)
    widths = []
    for n in (400, 4000):
        syn, ref = _shifted_pair(32, n, 0.5, seed=6)
        d = sliced_wasserstein(syn, ref, opts)
        assert d.ci is not None and d.ci[0] <= d.value <= d.ci[1]
        widths.append(d.ci[1] - d.ci[0])
    assert widths[1] < widths[0]


def test_mmd_zero_for_identical_and_grows_with_shift() -> None:
    values = []
    for shift in (0.0, 0.5, 1.5):
        syn, ref = _shifted_pair(64, 1200, shift, seed=7)
        values.append(mmd_rbf(syn, ref, DistanceOptions(bootstrap=10)).value)
    assert values[0] < 0.05
    assert values[0] < values[1] < values[2] <= np.sqrt(2)


def test_total_variation_of_labels() -> None:
    d = total_variation(["pos"] * 3 + ["neg"], ["pos", "neg"])
    assert d.value == pytest.approx(0.25)


def test_too_few_rows_is_a_clear_error() -> None:
    with pytest.raises(StageError, match="at least 8 synthetic"):
        sliced_wasserstein(np.zeros((3, 4)), np.ones((50, 4)), OPTS)


def test_registry_names_the_vector_metrics() -> None:
    assert DISTANCES.names() == ["mmd_rbf", "sliced_wasserstein"]
