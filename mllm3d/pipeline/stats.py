"""Paired bootstrap confidence intervals for differences of per-query scores (the benchmark's CIs).

Two methods scored on the same queries give paired values a_i, b_i; the statistic is the mean of
d_i = a_i − b_i. Queries pooled over several seeds are resampled *within* their seed (stratified), so each
resample keeps every seed's query count and a seed's offset is not mistaken for noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mllm3d.shared.errors import BadInputError


@dataclass(frozen=True)
class PairedCI:
    """mean(a − b) and its percentile bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0

    def text(self, scale: float = 100.0) -> str:
        return f"{scale * self.mean:+.2f} [{scale * self.low:+.2f}, {scale * self.high:+.2f}]"


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    groups: Sequence[object] | None = None,
    n_boot: int = 10000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedCI:
    """Percentile bootstrap CI of mean(a − b) over paired values; ``groups`` (e.g. the seed of each query)
    stratifies the resampling. Deterministic for a given ``seed``."""
    da, db = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if da.shape != db.shape or da.ndim != 1:
        raise BadInputError(f"paired_bootstrap: a {da.shape} and b {db.shape} must be 1-D and paired")
    if da.size == 0:
        raise BadInputError("paired_bootstrap: no paired values")
    if not 0.0 < level < 1.0:
        raise BadInputError(f"paired_bootstrap: level must be in (0, 1), got {level}")
    d = da - db
    g = np.zeros(d.size, dtype=np.int64) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    if g.size != d.size:
        raise BadInputError(f"paired_bootstrap: {g.size} groups for {d.size} values")
    rng = np.random.default_rng(seed)
    totals = np.zeros(n_boot)
    for k in np.unique(g):
        dk = d[g == k]
        totals += dk[rng.integers(0, dk.size, size=(n_boot, dk.size))].sum(axis=1)
    means = totals / d.size
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return PairedCI(float(d.mean()), float(low), float(high), int(d.size), level)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise BadInputError("mean_std: no values")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0
