"""Apply bank kernels to an image and write the feature maps (PNG + .npy) with a JSON summary.

Everything is validated before anything is written; each file is written atomically, and the
summary (written last) lists exactly the files of this run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens import __version__
from convlens._atomic import write_json, write_with
from convlens.data.images import LoadedImage
from convlens.errors import ConvlensError
from convlens.kernels import Kernel
from convlens.ops import correlate2d
from convlens.ops.geometry import PaddingSpec


@dataclass(frozen=True)
class FeatureMap:
    spec: str
    kernel: Kernel
    values: NDArray[np.float64]

    def stats(self) -> dict[str, float]:
        v = self.values
        return {
            "min": float(v.min()),
            "max": float(v.max()),
            "mean": float(v.mean()),
            "std": float(v.std()),
            "mean_abs": float(np.abs(v).mean()),
        }


def apply_kernels(
    image: LoadedImage, kernels: list[tuple[str, Kernel]], *, padding: PaddingSpec = "same"
) -> list[FeatureMap]:
    """Cross-correlate the image with each kernel (as ``Conv2d`` would)."""
    return [
        FeatureMap(
            spec, k, correlate2d(image.pixels, k.weights.astype(np.float64), padding=padding)
        )
        for spec, k in kernels
    ]


def _slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec).strip("_") or "kernel"


def _save_png(path: Path, values: NDArray[np.float64], signed: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    lo, hi = display_range(values, signed)
    cmap = "RdBu_r" if signed else "gray"
    write_with(path, lambda tmp: plt.imsave(tmp, values, format="png", cmap=cmap, vmin=lo, vmax=hi))


DISPLAY_PERCENTILE = 99.5


def display_range(values: NDArray[np.float64], signed: bool) -> tuple[float, float]:
    """Colour range for a PNG: symmetric ``±p`` for signed maps, ``[min, p]`` otherwise, where ``p`` is
    the 99.5th percentile of ``|values|`` (so a few strong border responses do not wash out the map).
    The raw values are always saved unclipped in the ``.npy`` file."""
    top = float(np.percentile(np.abs(values), DISPLAY_PERCENTILE))
    if top == 0.0:
        top = float(np.abs(values).max()) or 1.0
    if signed:
        return -top, top
    low = float(values.min())
    return low, max(top, low + 1e-12)


def _save_npy(path: Path, values: NDArray[Any]) -> None:
    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, values, allow_pickle=False)

    write_with(path, writer)


def write_feature_maps(
    out_dir: str | Path, image: LoadedImage, maps: list[FeatureMap], padding: PaddingSpec
) -> dict[str, Any]:
    """Write ``input.png``, one ``NAME.png`` + ``NAME.npy`` per map, then ``summary.json``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConvlensError(
            f"output directory {str(out)!r} exists and is not a folder", hint_key="not_a_folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    names: dict[str, int] = {}
    entries = []
    _save_png(out / "input.png", image.pixels, signed=False)
    for fm in maps:
        stem = _slug(fm.spec)
        names[stem] = names.get(stem, 0) + 1
        if names[stem] > 1:
            stem = f"{stem}-{names[stem]}"
        signed = bool(fm.values.min() < 0)
        _save_png(out / f"{stem}.png", fm.values, signed)
        _save_npy(out / f"{stem}.npy", fm.values)
        entries.append(
            {
                "kernel": fm.spec,
                "name": fm.kernel.name,
                "params": fm.kernel.params,
                "weights": fm.kernel.weights.tolist(),
                "png": f"{stem}.png",
                "npy": f"{stem}.npy",
                "colormap": "RdBu_r, symmetric about 0" if signed else "gray",
                "display_range": list(display_range(fm.values, signed)),
                "display_rule": f"clipped at the {DISPLAY_PERCENTILE}th percentile of |value| (npy is raw)",
                "shape": list(fm.values.shape),
                "stats": fm.stats(),
            }
        )
    summary = {
        "convlens_version": __version__,
        "operation": "cross-correlation (torch.nn.Conv2d semantics), zero padding",
        "padding": padding if isinstance(padding, str | int) else list(padding),
        "image": image.to_dict(),
        "input_png": "input.png",
        "feature_maps": entries,
    }
    write_json(out / "summary.json", summary)
    return summary
