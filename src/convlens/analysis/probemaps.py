"""Probe feature maps derived from a run's weight snapshots, with the exact engine (no torch).

A training run with snapshots stores, at each snapshot epoch, every conv layer's weights and bias
(``snapshots/epoch-NNN.safetensors``) and, once, the probe images (``probes/inputs.safetensors``).
In the reference CNN a conv layer's output depends only on those: ``conv1`` is the
cross-correlation of the probe images with ``conv1``'s kernels plus its bias, and each later conv
reads the previous one after ReLU and max-pooling (the dense layers come after every conv). So the
per-epoch maps are not written during training (writing them cost more than a short epoch); they
are computed here when a run is read, by :func:`convlens.ops.correlate` in float64 and stored as
float32, the dtype the trainer wrote. They agree with the trained network's own float32 forward pass
to float32 rounding (``tests/test_probe_maps.py``).

Runs that wrote ``probes/epoch-NNN.safetensors`` files (older runs, or a run with probes but no
snapshots) are read from those files; a file always wins over a derivation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError
from convlens.ops import correlate

RULE = (
    "derived on read from snapshots/epoch-NNN.safetensors and probes/inputs.safetensors: each conv "
    "layer's output before ReLU (cross-correlation + bias, zero padding kernel // 2), the next conv "
    "reading it after ReLU and max-pooling; exact engine in float64, stored as float32"
)


def chain_spec(model: Mapping[str, Any]) -> tuple[list[int], list[int], int]:
    """``(kernels, pools, dims)`` of a reference CNN from ``run.json``'s ``model`` entry; a clear
    error for anything else."""
    try:
        kernels = [int(k) for k in model["kernels"]]
        pools = [int(p) for p in model["pool"]]
        dims = int((model.get("extra") or {}).get("dims", 2))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConvlensError(
            f"run.json: the model entry does not describe conv blocks: {exc}"
        ) from None
    if len(kernels) != len(pools) or not kernels or dims not in (1, 2):
        raise ConvlensError(
            f"run.json: the model entry has kernels {kernels}, pools {pools}, dims {dims}; expected "
            "one kernel and one pool per conv block, 1-D or 2-D"
        )
    return kernels, pools, dims


def _max_pool(x: NDArray[np.float64], p: int, dims: int) -> NDArray[np.float64]:
    """``max_pool{1,2}d(x, p)``: windows of ``p`` (``p x p``), stride ``p``, the remainder dropped."""
    n, c, h, w = x.shape
    ph = 1 if dims == 1 else p
    ho, wo = h // ph, w // p
    x = x[:, :, : ho * ph, : wo * p].reshape(n, c, ho, ph, wo, p)
    return np.asarray(x.max(axis=(3, 5)))


def derive_maps(
    x: NDArray[Any],
    snapshot: Mapping[str, NDArray[Any]],
    kernels: list[int],
    pools: list[int],
    dims: int = 2,
) -> dict[str, NDArray[np.float32]]:
    """Each conv layer's output (``conv1``, ``conv2``, ...) for the probe images ``x``
    ``(P, C, H, W)`` (``(P, C, 1, L)`` for a 1-D model), given one snapshot's weights and biases."""
    h = np.asarray(x, dtype=np.float64)
    out: dict[str, NDArray[np.float32]] = {}
    for i, (k, p) in enumerate(zip(kernels, pools, strict=True)):
        name = f"conv{i + 1}"
        if f"{name}.weight" not in snapshot:
            raise ConvlensError(
                f"the snapshot holds no {name}.weight (it holds {sorted(snapshot)})"
            )
        wt = np.asarray(snapshot[f"{name}.weight"], dtype=np.float64)
        if dims == 1 and wt.ndim == 3:
            wt = wt[:, :, None, :]
        if wt.ndim != 4 or wt.shape[1] != h.shape[1] or wt.shape[-1] != k:
            raise ConvlensError(
                f"{name}.weight has shape {list(snapshot[f'{name}.weight'].shape)}; it does not "
                f"take the {h.shape[1]}-channel input with the run's {k}-tap kernels"
            )
        bias = snapshot.get(f"{name}.bias")
        b = None if bias is None else np.asarray(bias, dtype=np.float64)
        pad = (0, k // 2) if dims == 1 else (k // 2, k // 2)
        z = correlate(h, wt, bias=b, padding=pad)
        out[name] = z.astype(np.float32)
        h = np.maximum(z, 0.0)
        if p > 1:
            h = _max_pool(h, p, dims)
    return out


def model_entry(root: Path) -> Mapping[str, Any] | None:
    """``run.json``'s ``model`` entry of the run in ``root``; ``None`` when there is no run.json."""
    path = root / "run.json"
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConvlensError(f"{str(path)!r} is not readable JSON: {exc}") from None
    model = rec.get("model") if isinstance(rec, dict) else None
    if not isinstance(model, dict):
        raise ConvlensError(f"{str(path)!r} has no model entry")
    return model
