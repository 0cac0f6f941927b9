"""Linear CKA between representations, and each layer's representation over training.

Linear centred kernel alignment (Kornblith et al., ICML 2019) of ``X (n, p)`` and ``Y (n, q)``, the
same ``n`` inputs in two representations:

    CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F),   Xc, Yc: columns centred,

computed here through the ``n x n`` Gram matrices (``||Yc^T Xc||_F^2 = <Xc Xc^T, Yc Yc^T>_F``), which
is cheap when features outnumber inputs (feature maps). It is 1 for ``X`` vs itself, invariant to
orthogonal transforms and isotropic scaling of either side, and in ``[0, 1]``.

Over training (the seed's second claim, "as training progresses ..."): for each conv layer, CKA
between the probe images' feature maps (``featuremaps.load_probes``, flattened per image) at
every snapshot epoch and at the final epoch. The floor is the untrained control, epoch 000 (the
initialisation) vs final; a layer *settles* at the first epoch from which CKA stays >= 0.9.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.result import LayerCka, RepresentationDrift

SETTLE = 0.9


def _gram(x: NDArray[Any]) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    a = a - a.mean(axis=0, keepdims=True)
    return np.asarray(a @ a.T, dtype=np.float64)


def linear_cka(x: NDArray[Any], y: NDArray[Any]) -> float | None:
    """Linear CKA of two representations of the same inputs (rows); ``None`` when either is
    constant over the inputs (CKA undefined)."""
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same inputs on both sides, got {len(x)} and {len(y)} rows")
    k, ell = _gram(x), _gram(y)
    nk, nl = float(np.linalg.norm(k)), float(np.linalg.norm(ell))
    if nk == 0.0 or nl == 0.0:
        return None
    return float(np.clip(np.sum(k * ell) / (nk * nl), 0.0, 1.0))


def settle_epoch(epochs: list[int], values: list[float | None], threshold: float) -> int | None:
    """The first epoch from which every later value is >= ``threshold`` (``None`` if none is)."""
    found = None
    for e, v in zip(reversed(epochs), reversed(values), strict=True):
        if v is None or v < threshold:
            break
        found = e
    return found


def representation_drift(
    probe_maps: dict[int, dict[str, NDArray[Any]]], layers: list[str]
) -> RepresentationDrift:
    """Per layer, linear CKA of every snapshot epoch's probe feature maps vs the final epoch's."""
    rule = (
        "linear CKA (centred, Gram form) of the probe images' flattened feature maps at each epoch "
        f"vs the final epoch; floor: epoch 000 (untrained) vs final; settled from the first epoch "
        f"after which CKA stays >= {SETTLE}"
    )
    epochs = sorted(probe_maps)
    if len(epochs) < 2:
        return RepresentationDrift(
            0, epochs[-1] if epochs else 0, SETTLE, rule, [], "fewer than 2 probe epochs"
        )
    final = epochs[-1]
    out = RepresentationDrift(0, final, SETTLE, rule)
    for name in layers:
        if name not in probe_maps[final]:
            continue
        ref = probe_maps[final][name]
        out.n_probes = len(ref)
        eps = [e for e in epochs if name in probe_maps[e] and len(probe_maps[e][name]) == len(ref)]
        vals = [linear_cka(probe_maps[e][name], ref) for e in eps]
        floor = vals[0] if eps and eps[0] == 0 else None
        out.layers.append(LayerCka(name, eps, vals, floor, settle_epoch(eps, vals, SETTLE)))
    if not out.layers:
        out.skipped = "no conv layer's feature maps in the probe files"
    return out
