"""The data the report's inline script works on, and the static (no-JS) views of the same data.

Everything here is plain NumPy and JSON: the page recomputes feature maps itself (``report.js``,
a float64 cross-correlation with PyTorch's zero-padding semantics) from what this module embeds:

- the seed's worked example (kernel and input as integers);
- a few classical kernels from :mod:`convlens.kernels` for the playground;
- small sample images (the run's probe images, or a drawn pattern when the analysis has none);
- the first conv layer's kernels and biases at every snapshot epoch (the epochs need not be
  contiguous) and one probe image per set, so that the page can draw the probe feature maps at any
  epoch; the browser test checks them against torch's float64 ``conv2d`` of the snapshot.

Kernel thumbnails are inline SVG (:func:`kernel_svg`) so that they show with scripts off.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: the playground's kernels (specs for :func:`convlens.kernels.parse_kernel_spec`)
PLAYGROUND_KERNELS = (
    "sobel_x",
    "sobel_y",
    "prewitt_x",
    "prewitt_y",
    "laplacian_4",
    "log:sigma=1,size=5",
    "gabor:angle=0,frequency=0.2,size=7",
    "gabor:angle=45,frequency=0.2,size=7",
)
#: the largest side of an embedded sample image (larger probes are subsampled)
SAMPLE_SIDE = 48
#: probe images embedded for the epoch slider (one per probe set, at most this many)
SLIDER_PROBES = 3
#: diverging palette endpoints (colour-blind safe: blue for negative, orange for positive)
NEG_RGB = (33, 102, 172)
POS_RGB = (179, 88, 6)


def _f(a: NDArray[Any]) -> Any:
    """A float array as nested lists of Python floats (float32 values survive as their float64)."""
    return np.asarray(a, dtype=np.float64).tolist()


def _f7(a: NDArray[Any]) -> Any:
    """A float array as nested lists of floats rounded to 7 significant digits (float32 precision:
    what the page draws and runs; tests compare against the engine on these same numbers)."""
    flat = [float(f"{v:.7g}") for v in np.asarray(a, dtype=np.float64).ravel()]
    return np.asarray(flat, dtype=np.float64).reshape(np.shape(a)).tolist()


def layer_snapshots(layers: list[Any], epochs: list[int], load: Any) -> dict[str, dict[str, Any]]:
    """Every 2-D conv layer's kernels and biases at each snapshot epoch (7 significant digits),
    for the epoch slider's layer menu; a layer missing from a snapshot is left out."""
    out: dict[str, dict[str, Any]] = {}
    snaps = {e: load(e) for e in epochs}
    for layer in layers:
        key = layer.identity.weight_key
        if not key:
            continue
        bias_key = key[: -len("weight")] + "bias"
        ws = [snaps[e].get(key) for e in epochs]
        if any(w is None or np.ndim(w) != 4 or not np.isfinite(w).all() for w in ws):
            continue
        out[layer.name] = {
            "weights": [_f7(w) for w in ws],
            "bias": [
                _f7(snaps[e][bias_key]) if bias_key in snaps[e] else [0.0] * np.shape(w)[0]
                for e, w in zip(epochs, ws, strict=True)
            ],
        }
    return out


def network_payload(
    model: Any, dataset: Any, final: dict[str, NDArray[Any]]
) -> dict[str, Any] | None:
    """What the page needs to run a convlens-trained network (``run.json``'s typed ``ModelSpec``
    and ``DatasetSpec``) on an image of the user's own: its architecture (conv blocks with zero
    padding k // 2, ReLU, max-pool; then fc1, ReLU, fc2), the final weights (7 significant digits)
    and the training split's normalisation. ``None`` for a 1-D network or missing weights."""
    if model is None or dataset is None or (model.extra or {}).get("dims", 2) != 2:
        return None
    n = len(model.channels)
    keys = [f"conv{i + 1}.{t}" for i in range(n) for t in ("weight", "bias")]
    keys += ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    if any(k not in final or not np.isfinite(final[k]).all() for k in keys):
        return None
    norm = dataset.normalisation or {}
    mean, std = norm.get("mean"), norm.get("std")
    if mean is None or std is None:
        return None
    return {
        "in_channels": int(model.in_channels),
        "input_hw": list(model.input_hw),
        "kernels": list(model.kernels),
        "pool": list(model.pool),
        "classes": list(dataset.classes) or [str(c) for c in range(model.n_classes)],
        "mean": mean,
        "std": std,
        "norm_rule": str(norm.get("rule", "")),
        "weights": {k: _f7(final[k]) for k in keys},
    }


#: trained first-layer kernels offered in the playground (the first this many units)
PLAYGROUND_TRAINED = 16


def playground_kernels(
    trained: NDArray[Any] | None = None, layer: str = "conv1"
) -> list[dict[str, Any]]:
    """The playground's kernels: the bank's (label, weights, where they come from), then the
    trained first layer's (``trained``: its weight ``(O, C, kh, kw)``; input channel 0 of each
    unit, 2-D layers only)."""
    from convlens.kernels import parse_kernel_spec

    out = []
    for spec in PLAYGROUND_KERNELS:
        k = parse_kernel_spec(spec)
        out.append({"label": spec, "weights": _f(k.weights), "source": k.source})
    if trained is not None and np.ndim(trained) == 4 and np.isfinite(trained).all():
        for o in range(min(len(trained), PLAYGROUND_TRAINED)):
            out.append(
                {
                    "label": f"trained {layer} unit {o}",
                    "weights": _f(trained[o, 0]),
                    "source": f"this run's final {layer} weights, unit {o}, input channel 0",
                }
            )
    return out


def _subsample(img: NDArray[Any]) -> NDArray[Any]:
    step = int(np.ceil(max(img.shape) / SAMPLE_SIDE))
    return img[::step, ::step] if step > 1 else img


def sample_images(probe_x: NDArray[Any] | None, probe_sets: list[str]) -> list[dict[str, Any]]:
    """One grey sample image per probe set (channel 0, at most ``SAMPLE_SIDE`` pixels a side); a
    drawn disc and bars when the analysis has no probe images."""
    out = []
    if probe_x is not None and probe_sets:
        for s in dict.fromkeys(probe_sets):
            i = [j for j, p in enumerate(probe_sets) if p == s][-1]
            img = _subsample(np.asarray(probe_x[i, 0], dtype=np.float64))
            out.append({"label": f"probe image ({s})", "pixels": np.round(img, 4).tolist()})
    if not out:
        yy, xx = np.mgrid[0:32, 0:32]
        disc = ((yy - 16) ** 2 + (xx - 16) ** 2 < 81).astype(np.float64)
        bars = ((xx // 4) % 2).astype(np.float64)
        out = [
            {"label": "drawn disc", "pixels": disc.tolist()},
            {"label": "drawn vertical bars", "pixels": bars.tolist()},
        ]
    return out


def _geometry_reason(identity: Any) -> str | None:
    """Why the page cannot recompute this layer's output (``None`` when it can)."""
    if identity.dims != 2:
        return f"the first layer is {identity.dims}-D"
    if identity.stride is None or not isinstance(identity.padding, list):
        return "the first layer's stride or padding is not known"
    if (identity.dilation or [1, 1]) != [1, 1] or (identity.groups or 1) != 1:
        return "the first layer uses dilation or groups"
    if identity.padding_mode not in (None, "zeros"):
        return f"the first layer pads with {identity.padding_mode!r}"
    return None


def epoch_slider(
    first: Any,
    epochs: list[int],
    load: Any,
    probe_x: NDArray[Any] | None,
    probe_sets: list[str],
) -> dict[str, Any]:
    """The first layer's kernels and biases at each snapshot epoch plus probe images: the data of
    the epoch slider, or ``{"missing": reason}``."""
    if first is None:
        return {"missing": "no conv layer in this analysis"}
    if not epochs:
        return {"missing": "no per-epoch snapshots (a model file, or a run trained without them)"}
    reason = _geometry_reason(first.identity)
    key = first.identity.weight_key
    bias_key = key[: -len("weight")] + "bias"
    weights, biases = [], []
    for e in epochs:
        snap = load(e)
        if key not in snap:
            return {"missing": f"snapshot of epoch {e} has no {key!r}"}
        w = np.asarray(snap[key])
        if w.ndim != 4 or not np.isfinite(w).all():
            return {"missing": f"the epoch-{e} snapshot of {key!r} is not a finite 4-D weight"}
        weights.append(_f(w))
        b = snap.get(bias_key)
        biases.append(_f(b) if b is not None else [0.0] * w.shape[0])
    probes = []
    if probe_x is not None and reason is None and np.isfinite(probe_x).all():
        for s in list(dict.fromkeys(probe_sets))[:SLIDER_PROBES]:
            i = [j for j, p in enumerate(probe_sets) if p == s][-1]
            probes.append({"label": s, "index": i, "x": _f(probe_x[i])})
    return {
        "missing": None,
        "layer": first.name,
        "epochs": list(epochs),
        "weights": weights,
        "bias": biases,
        "stride": first.identity.stride,
        "padding": first.identity.padding if isinstance(first.identity.padding, list) else None,
        "probes": probes,
        "maps_missing": reason
        if reason is not None
        else (None if probes else "no probe images in this run"),
    }


def _rgb(v: float) -> str:
    """Diverging colour for ``v`` in [-1, 1]: blue (negative), white (0), orange (positive)."""
    t = min(abs(v), 1.0)
    end = POS_RGB if v > 0 else NEG_RGB
    r, g, b = (round(255 + (c - 255) * t) for c in end)
    return f"#{r:02x}{g:02x}{b:02x}"


def kernel_svg(w: NDArray[Any], title: str, cell: int = 10) -> str:
    """A 2-D kernel as an inline SVG heatmap (symmetric scale: +-max|w| of this kernel)."""
    a = np.atleast_2d(np.asarray(w, dtype=np.float64))
    finite = np.isfinite(a)
    m = float(np.abs(a[finite]).max()) if finite.any() else 0.0
    m = m or 1.0
    h, wd = a.shape
    rects = "".join(
        f'<rect x="{j * cell}" y="{i * cell}" width="{cell}" height="{cell}" '
        f'fill="{_rgb(a[i, j] / m) if finite[i, j] else "#808080"}"/>'
        for i in range(h)
        for j in range(wd)
    )
    return (
        f'<svg class="kern" role="img" viewBox="0 0 {wd * cell} {h * cell}" width="{wd * cell}" '
        f'height="{h * cell}"><title>{html.escape(title)}</title>{rects}</svg>'
    )
