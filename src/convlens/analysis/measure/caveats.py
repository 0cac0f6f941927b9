"""Per-layer caveats read from the weights themselves (appended to ``LayerMatch.notes``).

A quantised layer (onnxruntime's ``quantize_dynamic``, ``QLinearConv``, or float weights that were
quantised and stored back) holds at most 256 distinct values: its kernels sit on a coarse grid, many
small kernels collapse onto few shapes or to zero, and the random nulls are drawn in float. The
fractions above those nulls are therefore not comparable with a float layer's; the note says so. The
rule is a property of the values, so it holds for whatever file the weights came from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.result import LayerMatch

GRID_LEVELS = 256
"""At most this many distinct weight values (8-bit quantisation) marks a layer as quantised."""


def quantised_levels(w: NDArray[Any]) -> int | None:
    """The number of distinct weight values when the layer looks quantised (at most
    :data:`GRID_LEVELS` values, and more than twice as many weights as values, so that a small
    float layer is not flagged by chance), else ``None``."""
    a = np.asarray(w)
    if a.size == 0:
        return None
    n = int(np.unique(a).size)
    return n if n <= GRID_LEVELS and a.size > 2 * n else None


def add_quantisation_note(m: LayerMatch | None, w: NDArray[Any]) -> None:
    """Append the quantisation caveat to a matched layer whose weights sit on a grid."""
    if m is None or m.skipped is not None:
        return
    n = quantised_levels(w)
    if n is None:
        return
    m.notes.append(
        f"quantised weights ({n} distinct values): the random nulls are float kernels, so the "
        "fractions above them are not comparable with a float layer's (a coarse grid moves short "
        "kernels onto few shapes)"
    )
