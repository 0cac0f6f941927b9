"""Streaming statistics that ranks can merge: Welford's running mean/variance and a growing score vector.

:class:`RunningStats` is Welford's algorithm with Chan et al.'s batch merge: one pass, float64
accumulators, memory independent of how many samples stream through. :mod:`convlens.parallel.merge`
combines the parts that several ranks accumulated.

>>> import numpy as np
>>> rs = RunningStats(2)
>>> rs.update(np.array([[1.0, 10.0], [3.0, 10.0]])); rs.update(np.array([[5.0, 13.0]]))
>>> rs.mean.tolist(), rs.var.tolist()
([3.0, 11.0], [4.0, 3.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


class RunningStats:
    """Per-feature count, mean, (sample) variance, min and max over streamed rows ``(B, F)``."""

    def __init__(self, n_features: int) -> None:
        self.n = 0
        self.mean = np.zeros(n_features, dtype=np.float64)
        self._m2 = np.zeros(n_features, dtype=np.float64)
        self.min = np.full(n_features, np.inf)
        self.max = np.full(n_features, -np.inf)

    def update(self, rows: NDArray[Any]) -> None:
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim == 1:
            x = x[None]
        nb = x.shape[0]
        if nb == 0:
            return
        mb = x.mean(axis=0)
        m2b = ((x - mb) ** 2).sum(axis=0)
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self._m2 = self._m2 + m2b + delta**2 * (self.n * nb / n)
        self.n = n
        self.min = np.minimum(self.min, x.min(axis=0))
        self.max = np.maximum(self.max, x.max(axis=0))

    @property
    def var(self) -> NDArray[np.float64]:
        """Sample variance (ddof=1); 0 for fewer than two samples."""
        return self._m2 / (self.n - 1) if self.n > 1 else np.zeros_like(self._m2)

    @property
    def std(self) -> NDArray[np.float64]:
        return np.sqrt(self.var)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
        }


class GrowingArray:
    """A float64 vector that grows by doubling: per-image scores without keeping one small array per
    batch alive (many small live blocks fragment the heap and make peak memory grow with the data)."""

    def __init__(self, capacity: int = 4096) -> None:
        self._data = np.empty(capacity, dtype=np.float64)
        self.n = 0

    def extend(self, values: NDArray[Any]) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        need = self.n + len(v)
        if need > len(self._data):
            grown = np.empty(max(need, 2 * len(self._data)), dtype=np.float64)
            grown[: self.n] = self._data[: self.n]
            self._data = grown
        self._data[self.n : need] = v
        self.n = need

    @property
    def values(self) -> NDArray[np.float64]:
        return self._data[: self.n]
