"""Distribution distances between synthetic and reference (real) samples, on one scale.

Normalisation (docs/mixing.md): a distance is reported in **standard deviations of the
reference data**, for a **pure shift reads the shift**, and is **debiased for sample size**, so
a threshold such as ``wasserstein_below: 0.15`` means the same in every feature space and at
every dataset size:

1. *Scale.* Vectors are whitened: PCA fitted on both samples together keeps the top
   ``components`` directions, each divided by the reference's standard deviation along it
   (directions fitted on the reference alone would overfit it: its top directions carry its
   own sampling noise, which the other sample lacks, and identical distributions would read
   far apart). Scalars are standardised by the reference mean and standard deviation.
2. *Dimension.* Sliced Wasserstein averages the 1-D W1 of random unit projections; for a shift
   of ``d`` (in whitened units, i.e. Mahalanobis ``d``) that average is ``d * c_k`` with
   ``c_k = E|u_1|`` over the unit sphere in ``k`` dimensions, so it is divided by ``c_k``.
3. *Size.* Two samples of one distribution are not at distance 0: empirical W1 has a floor of
   order ``sqrt(1/n + 1/m)``. The floor is measured on disjoint halves of the reference, scaled
   to the sizes at hand, and removed in quadrature: ``sqrt(max(raw^2 - floor^2, 0))`` (noise and
   a shift add roughly in quadrature, so this is right at both ends: no shift -> ~0, a large
   shift -> the shift).

MMD (RBF kernel, median-heuristic bandwidth on the whitened reference, unbiased U-statistic) is
reported beside it; it lies in [0, sqrt(2)] and is not on the Wasserstein scale.

Each metric is one function registered in ``DISTANCES``. The sliced Wasserstein is vectorised
over projections by hand (quantile matching on the union grid): scipy's ``wasserstein_distance``
gives the same numbers (tested) but one projection per call, ~50x slower at 50k rows; POT's
``sliced_wasserstein_distance`` has no per-projection standardisation or debiasing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from synthtune import plugins
from synthtune.errors import StageError

MIN_ROWS = 8  # below this, a distance (and its floor, measured on halves) means nothing


@dataclass(frozen=True)
class Distance:
    """A normalised distance with its pieces, JSON-able through :meth:`as_dict`."""

    metric: str
    value: float  # debiased, in reference standard deviations (MMD: kernel units)
    raw: float  # before debiasing
    floor: float  # expected raw value for two reference samples of these sizes
    ci: tuple[float, float] | None  # bootstrap percentile interval of ``value``
    n_synthetic: int
    n_reference: int

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci"] = list(self.ci) if self.ci is not None else None
        return out


def _check(syn: np.ndarray, ref: np.ndarray, where: str) -> None:
    if len(syn) < MIN_ROWS or len(ref) < MIN_ROWS:
        raise StageError(
            f"{where}: needs at least {MIN_ROWS} synthetic and {MIN_ROWS} reference rows "
            f"(got {len(syn)} and {len(ref)})"
        )


# --------------------------------------------------------------------------- whitening
class Whitener:
    """Top principal directions of ``data``, each scaled to unit variance of ``scale_from``.

    Directions come from both samples (see the module docstring); the unit comes from the
    reference alone, so a shifted synthetic sample does not stretch the ruler it is measured by.
    """

    def __init__(self, data: np.ndarray, components: int, scale_from: np.ndarray) -> None:
        pooled = np.asarray(data, dtype=np.float64)
        self.mean = pooled.mean(axis=0)
        centred = pooled - self.mean
        # Covariance route: d x d, cheap for d = 384 even at 100k rows (an SVD of the data
        # matrix is not). Directions with ~zero variance are dropped, not amplified.
        cov = centred.T @ centred / max(len(pooled) - 1, 1)
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
        keep = values > max(values[0], 1e-12) * 1e-6
        k = int(min(components, keep.sum()))
        if k < 1:
            raise StageError("the vectors have no variance (all rows identical)")
        basis = vectors[:, :k]
        # Whiten the reference inside that subspace (its covariance there, to the power -1/2),
        # so a shift reads as its Mahalanobis length under the reference.
        projected = (np.asarray(scale_from, dtype=np.float64) - self.mean) @ basis
        inner = np.atleast_2d(np.cov(projected, rowvar=False))
        evals, evecs = np.linalg.eigh(inner)
        # a ridge: a direction the reference barely varies in is not amplified past ~30x
        evals = np.maximum(evals, evals.max() * 1e-3 + 1e-30)
        self.basis = (basis @ (evecs / np.sqrt(evals)) @ evecs.T).astype(np.float32)
        self.dims = k

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float32) - self.mean.astype(np.float32)) @ self.basis


def sphere_abs_mean(k: int) -> float:
    """``E|u_1|`` for ``u`` uniform on the unit sphere in ``k`` dimensions."""
    from scipy.special import gammaln

    return float(np.exp(gammaln(k / 2) - gammaln((k + 1) / 2)) / math.sqrt(math.pi))


def random_directions(dims: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` unit columns in ``dims`` dimensions, as stacked random orthonormal frames.

    Orthonormal frames spread the directions evenly (a stratified sample of the sphere), which
    cuts the variance the choice of directions adds to a sliced distance.
    """
    frames = []
    for _ in range(-(-count // dims)):
        q, r = np.linalg.qr(rng.standard_normal((dims, dims)))
        frames.append(q * np.sign(np.diag(r)))  # Haar-distributed, not biased by QR's signs
    return np.hstack(frames)[:, :count].astype(np.float32)


# --------------------------------------------------------------------------- W1 core
def w1_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """W1 per column between column-sorted samples ``a`` (n, L) and ``b`` (m, L).

    Exact: both quantile functions are step functions on the grid ``{i/n} U {j/m}``, so the
    integral of their absolute difference is a weighted sum over that grid's intervals.
    """
    n, m = len(a), len(b)
    if n == m:
        return np.abs(a - b).mean(axis=0)
    grid = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
    widths = np.diff(grid, prepend=0.0)
    mids = grid - widths / 2
    ia = np.minimum((mids * n).astype(np.int64), n - 1)
    ib = np.minimum((mids * m).astype(np.int64), m - 1)
    return (widths[:, None] * np.abs(a[ia] - b[ib])).sum(axis=0)


def _debias(raw: float, floor: float) -> float:
    return math.sqrt(max(raw * raw - floor * floor, 0.0))


def _floor(
    stat: Callable[[np.ndarray, np.ndarray], float],
    ref: np.ndarray,
    n_syn: int,
    rng: np.random.Generator,
    repeats: int,
) -> float:
    """Mean ``stat`` between disjoint reference halves, rescaled to sizes (n_syn, n_ref).

    Rescaling uses the ``sqrt(1/n + 1/m)`` law of the empirical-W1 noise.
    """
    n_ref = len(ref)
    half = n_ref // 2
    values = []
    for _ in range(repeats):
        order = rng.permutation(n_ref)
        values.append(stat(ref[order[:half]], ref[order[half : 2 * half]]))
    scale = math.sqrt((1 / n_syn + 1 / n_ref) / (2 / half))
    return float(np.mean(values)) * scale


def _recentred_interval(
    estimate: float, values: Sequence[float], level: float
) -> tuple[float, float]:
    """Percentile interval of bootstrap ``values``, re-centred on ``estimate``.

    Resampling with replacement duplicates rows, which inflates Wasserstein and MMD (their
    bootstrap distribution sits above the estimate); the spread is what the resampling tells.
    """
    tail = (1 - level) / 2 * 100
    low, mid, high = np.percentile(values, [tail, 50, 100 - tail])
    return max(estimate + float(low - mid), 0.0), estimate + float(high - mid)


def _bootstrap(
    stat: Callable[[np.ndarray, np.ndarray], float],
    syn: np.ndarray,
    ref: np.ndarray,
    floor: float,
    opts: DistanceOptions,
    rng: np.random.Generator,
    estimate: float,
) -> tuple[float, float] | None:
    if opts.bootstrap <= 0:
        return None
    values = [
        _debias(
            stat(
                syn[rng.integers(0, len(syn), len(syn))],
                ref[rng.integers(0, len(ref), len(ref))],
            ),
            floor,
        )
        for _ in range(opts.bootstrap)
    ]
    return _recentred_interval(estimate, values, opts.level)


# --------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class DistanceOptions:
    """Knobs every metric reads (each ignores what it does not use)."""

    components: int = 16  # whitened PCA directions kept (vectors)
    projections: int = 64  # sliced Wasserstein directions
    bootstrap: int = 30  # resamples for the confidence interval (0: none)
    level: float = 0.95
    floor_repeats: int = 4
    max_samples: int = 4000  # MMD: rows per side (seeded subsample), the kernel is O(n^2)
    seed: int = 0


def _debiased(
    metric: str,
    stat: Callable[[np.ndarray, np.ndarray], float],
    x: np.ndarray,
    y: np.ndarray,
    opts: DistanceOptions,
    rng: np.random.Generator,
) -> Distance:
    """``stat`` of (x, y) with its floor removed and its bootstrap interval."""
    raw = stat(x, y)
    floor = _floor(stat, y, len(x), rng, opts.floor_repeats)
    value = _debias(raw, floor)
    ci = _bootstrap(stat, x, y, floor, opts, rng, value)
    return Distance(metric, value, raw, floor, ci, len(x), len(y))


Metric = Callable[[np.ndarray, np.ndarray, DistanceOptions], Distance]
DISTANCES = plugins.DISTANCES  # name -> Metric


def wasserstein_1d(syn: Sequence[float], ref: Sequence[float], opts: DistanceOptions) -> Distance:
    """W1 between scalar samples (scipy), in reference standard deviations, debiased."""
    from scipy import stats

    x, y = np.asarray(syn, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    _check(x, y, "wasserstein_1d")
    std = float(y.std(ddof=1))
    if std == 0:
        std = float(np.abs(y).mean()) or 1.0  # a constant reference: relative units
    x, y = (x - y.mean()) / std, (y - y.mean()) / std

    def stat(a: np.ndarray, b: np.ndarray) -> float:
        return float(stats.wasserstein_distance(a, b))

    return _debiased("wasserstein_1d", stat, x, y, opts, np.random.default_rng(opts.seed))


def sliced_wasserstein(syn: np.ndarray, ref: np.ndarray, opts: DistanceOptions) -> Distance:
    """Sliced W1 in the reference-whitened space, divided by ``c_k``, debiased."""
    syn, ref = np.atleast_2d(syn), np.atleast_2d(ref)
    _check(syn, ref, "sliced_wasserstein")
    white = Whitener(np.vstack([syn, ref]), opts.components, ref)
    rng = np.random.default_rng(opts.seed)
    directions = random_directions(white.dims, opts.projections, rng)
    x, y = white(syn) @ directions, white(ref) @ directions
    scale = 1.0 / sphere_abs_mean(white.dims)

    def stat(a: np.ndarray, b: np.ndarray) -> float:
        return float(w1_sorted(np.sort(a, axis=0), np.sort(b, axis=0)).mean()) * scale

    return _debiased("sliced_wasserstein", stat, x, y, opts, rng)


def mmd_rbf(syn: np.ndarray, ref: np.ndarray, opts: DistanceOptions) -> Distance:
    """sqrt of the unbiased MMD^2 with an RBF kernel on the whitened space (no floor)."""
    syn, ref = np.atleast_2d(syn), np.atleast_2d(ref)
    _check(syn, ref, "mmd_rbf")
    rng = np.random.default_rng(opts.seed)
    white = Whitener(np.vstack([syn, ref]), opts.components, ref)
    if len(syn) > opts.max_samples:
        syn = syn[rng.choice(len(syn), opts.max_samples, replace=False)]
    if len(ref) > opts.max_samples:
        ref = ref[rng.choice(len(ref), opts.max_samples, replace=False)]
    x, y = white(syn).astype(np.float64), white(ref).astype(np.float64)
    both = np.vstack([x, y])
    sq = np.maximum((both**2).sum(1)[:, None] + (both**2).sum(1)[None, :] - 2 * both @ both.T, 0)
    n = len(x)
    ref_sq = sq[n:, n:]
    bandwidth = float(np.median(ref_sq[np.triu_indices(len(y), 1)])) or 1.0
    kernel = np.exp(-sq / bandwidth)
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]

    def mmd(wx: np.ndarray, wy: np.ndarray) -> float:
        """Unbiased MMD^2 of the sample that repeats row i ``w[i]`` times (k(i, i) = 1)."""
        a, b = wx.sum(), wy.sum()
        xx = (wx @ kxx @ wx - a) / (a * (a - 1))
        yy = (wy @ kyy @ wy - b) / (b * (b - 1))
        return math.sqrt(max(float(xx + yy - 2 * (wx @ kxy @ wy) / (a * b)), 0.0))

    value = mmd(np.ones(n), np.ones(len(y)))
    ci = None
    if opts.bootstrap > 0:
        values = [
            mmd(
                rng.multinomial(n, np.full(n, 1 / n)),
                rng.multinomial(len(y), np.full(len(y), 1 / len(y))),
            )
            for _ in range(opts.bootstrap)
        ]
        ci = _recentred_interval(value, values, opts.level)
    return Distance("mmd_rbf", value, value, 0.0, ci, n, len(y))


def total_variation(syn: Sequence[str], ref: Sequence[str]) -> Distance:
    """Total variation between two categorical distributions (e.g. labels), in [0, 1]."""
    labels = sorted(set(syn) | set(ref))
    p = np.array([list(syn).count(v) for v in labels], dtype=np.float64)
    q = np.array([list(ref).count(v) for v in labels], dtype=np.float64)
    if not p.sum() or not q.sum():
        raise StageError("total_variation: one side has no values")
    value = float(np.abs(p / p.sum() - q / q.sum()).sum() / 2)
    return Distance("total_variation", value, value, 0.0, None, len(syn), len(ref))


plugins.register_distance("sliced_wasserstein", sliced_wasserstein)
plugins.register_distance("mmd_rbf", mmd_rbf)
