"""Exact merging of what each rank accumulated: running statistics and per-image scores.

:func:`combine` is Chan, Golub and LeVeque's pairwise update for two partial
:class:`~convlens.parallel.running.RunningStats` (count, mean, M2; min and max taken elementwise):

``n = na + nb``, ``d = mean_b - mean_a``, ``mean = mean_a + d * nb / n``,
``M2 = M2_a + M2_b + d**2 * na * nb / n``.

It is the same formula ``RunningStats.update`` uses for each batch, so merging the ranks' parts in
rank order gives the single-process figures up to floating-point reassociation (about 1e-15
relative in float64). Per-image scores are not merged but placed back at their dataset index, so the
AUROC and bootstrap on rank 0 see exactly the single-process vectors.

>>> import numpy as np
>>> from convlens.parallel.running import RunningStats
>>> a, b, whole = RunningStats(1), RunningStats(1), RunningStats(1)
>>> a.update(np.array([[1.0], [2.0]])); b.update(np.array([[4.0]])); whole.update(np.array([[1.0], [2.0], [4.0]]))
>>> m = combine(a, b)
>>> bool(np.allclose(m.mean, whole.mean) and np.allclose(m.var, whole.var)), m.min.tolist(), m.max.tolist()
(True, [1.0], [4.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError
from convlens.parallel.running import RunningStats


def state(stats: RunningStats) -> dict[str, Any]:
    """A plain-data copy of ``stats`` (what a rank sends): n, mean, M2, min, max."""
    return {
        "n": int(stats.n),
        "mean": stats.mean.copy(),
        "m2": stats._m2.copy(),
        "min": stats.min.copy(),
        "max": stats.max.copy(),
    }


def from_state(s: dict[str, Any]) -> RunningStats:
    """Rebuild a :class:`RunningStats` from :func:`state`."""
    out = RunningStats(len(s["mean"]))
    out.n = int(s["n"])
    out.mean = np.asarray(s["mean"], dtype=np.float64).copy()
    out._m2 = np.asarray(s["m2"], dtype=np.float64).copy()
    out.min = np.asarray(s["min"], dtype=np.float64).copy()
    out.max = np.asarray(s["max"], dtype=np.float64).copy()
    return out


def combine(a: RunningStats, b: RunningStats) -> RunningStats:
    """Chan et al.'s pairwise combination of two partial statistics (neither is modified)."""
    if a.mean.shape != b.mean.shape:
        raise ConvlensError(
            f"cannot merge statistics of {a.mean.shape[0]} and {b.mean.shape[0]} features"
        )
    if b.n == 0:
        return from_state(state(a))
    if a.n == 0:
        return from_state(state(b))
    out = RunningStats(a.mean.shape[0])
    n = a.n + b.n
    delta = b.mean - a.mean
    out.n = n
    out.mean = a.mean + delta * (b.n / n)
    out._m2 = a._m2 + b._m2 + delta**2 * (a.n * b.n / n)
    out.min = np.minimum(a.min, b.min)
    out.max = np.maximum(a.max, b.max)
    return out


def combine_all(parts: list[RunningStats]) -> RunningStats:
    """Fold :func:`combine` over ``parts`` in order (rank order)."""
    if not parts:
        raise ConvlensError("no statistics to merge")
    out = parts[0]
    for p in parts[1:]:
        out = combine(out, p)
    return out


def place(
    n: int, parts: list[tuple[NDArray[np.int64], NDArray[np.float64]]]
) -> NDArray[np.float64]:
    """Per-image values from every rank, ``(indices, values)``, put back at their index.

    Every index ``0..n-1`` must appear exactly once across the parts (no duplicate, no drop)."""
    out = np.full(n, np.nan)
    seen = np.zeros(n, dtype=np.int64)
    for idx, vals in parts:
        idx = np.asarray(idx, dtype=np.int64)
        vals = np.asarray(vals, dtype=np.float64)
        if idx.shape != vals.shape or (len(idx) and (idx.min() < 0 or idx.max() >= n)):
            raise ConvlensError(f"per-image values do not fit a set of {n} images")
        np.add.at(seen, idx, 1)
        out[idx] = vals
    if not np.all(seen == 1):
        dup, miss = int(np.sum(seen > 1)), int(np.sum(seen == 0))
        raise ConvlensError(
            f"sharding error: {dup} image(s) counted twice and {miss} missing out of {n}"
        )
    return out
