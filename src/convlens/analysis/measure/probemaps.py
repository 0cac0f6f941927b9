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

The probe images themselves are the first few training images of each class and the first few
members of each OOD set. The OOD members are a function of their recipe alone (``make_ood`` with
the run's seed and set size, standardised with the training mean/std ``run.json`` records), so a
run with snapshots keeps only the training probes in ``probes/inputs.safetensors`` and
:func:`complete_inputs` rebuilds the rest, the same images ``make_ood`` gives the analysis.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError
from convlens.ops import correlate
from convlens.runs import read
from convlens.runs.layout import RunLayout
from convlens.runs.records import FEATURE_MAPS_DERIVED

RULE = FEATURE_MAPS_DERIVED


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


def run_record(root: Path) -> dict[str, Any] | None:
    """``run.json`` of the run in ``root`` (:func:`convlens.runs.read.run_json`: size cap, every
    JSON failure one line); ``None`` when there is none. Read as the JSON object it holds: what
    it takes to rebuild the probes is checked where it is used, with its own message."""
    if not RunLayout(root).is_run():
        return None
    return read.run_json(root)


def model_entry(rec: Mapping[str, Any], root: Path) -> Mapping[str, Any]:
    """``run.json``'s ``model`` entry; a clear error without one."""
    model = rec.get("model")
    if not isinstance(model, dict):
        raise ConvlensError(f"{str(RunLayout(root).run_json)!r} has no model entry")
    return model


def complete_inputs(rec: Mapping[str, Any], root: Path, x: NDArray[Any]) -> NDArray[Any]:
    """The run's probe images: ``x`` (from ``probes/inputs.safetensors``) and, when ``run.json``
    lists more probes than it holds, the OOD probes rebuilt from their recipes after them."""
    probes = rec.get("probes")
    if not isinstance(probes, list) or len(probes) <= len(x):
        return x
    where = str(RunLayout(root).probe_inputs)
    try:
        sets = [str(p["set"]) for p in probes]
        d = rec["dataset"]
        cfg = rec["config"]
        seed, size = int(cfg["seed"]), int(cfg["ood_size"])
        shape = tuple(int(v) for v in d["shape"])
        from convlens.data.datasets import Dataset

        stand_in = Dataset(
            name=str(d["name"]),
            x=np.empty((0, *shape), np.float32),
            y=np.empty(0, np.int64),
            classes=[str(c) for c in d["classes"]],
            splits={},
            normalisation=dict(d["normalisation"]),
            source=str(d["source"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConvlensError(
            f"{where}: run.json lists {len(probes)} probes but the file holds {len(x)}, and its "
            f"records cannot rebuild the rest: {exc}"
        ) from None
    n_train = sets.count("train")
    if len(x) != n_train or sets[:n_train] != ["train"] * n_train:
        raise ConvlensError(
            f"{where} holds {len(x)} images; run.json lists {n_train} training probes first"
        )
    from convlens.data.ood import make_ood

    counts: dict[str, int] = {}
    for name in sets[n_train:]:
        counts[name] = counts.get(name, 0) + 1
    built = [make_ood(name, stand_in, size, seed, first=k).x for name, k in counts.items()]
    out = np.concatenate([np.asarray(x, np.float32), *built])
    if out.shape[1:] != tuple(x.shape[1:]) or len(out) != len(probes):
        raise ConvlensError(f"{where}: the rebuilt OOD probes do not fit the training probes")
    return out
