"""The report's channel section (issue 24): for every conv layer a grid, one row per channel, with
its maximising input, its top exemplars (the receptive-field crop of each image where the channel
peaks, with the value and the image's set) and its bottom exemplars. The crops and maximising
inputs are read from ``channels.safetensors`` beside the analysis (written with it) and embedded
as small PNG data URIs; every number shown is in ``analysis.json`` ``channels``."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.result import AnalysisResult
from convlens.runs.layout import channels_path

#: rows (channels) drawn per layer, and exemplars per direction
MAX_CHANNELS = 16
SHOWN_TOP = 6
SHOWN_BOTTOM = 3
#: each crop is drawn at least this many screen pixels tall (nearest neighbour, whole pixels)
MIN_SIDE = 36


def png(a: NDArray[Any], lo: float, hi: float) -> str:
    """A ``(C, H, W)`` array (1 or 3 channels; NaN: outside the image) as a PNG data URI, grey or
    RGB on the fixed range ``[lo, hi]``; NaN drawn as a mid blue so padding is visible."""
    from PIL import Image

    x = np.asarray(a, dtype=np.float64)
    x = x[:1] if x.shape[0] not in (1, 3) else x
    nan = np.isnan(x).any(axis=0)
    t = np.clip((np.nan_to_num(x, nan=lo) - lo) / ((hi - lo) or 1.0), 0, 1)
    rgb = np.repeat(t, 3, axis=0) if t.shape[0] == 1 else t
    img = (255 * rgb.transpose(1, 2, 0)).round().astype(np.uint8)
    img[nan] = (120, 160, 220)
    im = Image.fromarray(img, "RGB")
    zoom = max(2, -(-MIN_SIDE // max(im.height, 1)))
    im = im.resize((im.width * zoom, im.height * zoom), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def read_arrays(analysis_path: Path | None) -> dict[str, NDArray[Any]]:
    """The channel arrays beside an analysis (empty when there are none, e.g. an old analysis)."""
    from convlens.runs import read

    if analysis_path is None:
        return {}
    path = channels_path(analysis_path)
    return read.read_tensors(path) if path.is_file() else {}


def section_channels(a: AnalysisResult, analysis_path: Path | None) -> dict[str, Any] | None:
    """Per layer: its rule and rows (channel, maximising input, top and bottom exemplars)."""
    if not a.channels:
        return None
    arrays = read_arrays(analysis_path)
    layers: list[dict[str, Any]] = []
    for rec in a.channels:
        if rec.skipped:
            layers.append({"layer": rec.layer, "skipped": rec.skipped, "rows": []})
            continue
        crops = [
            v for k, v in arrays.items() if k.startswith(f"{rec.layer}/") and "maximising" not in k
        ]
        finite = (
            np.concatenate([c[np.isfinite(c)].ravel() for c in crops]) if crops else np.zeros(1)
        )
        lo, hi = float(finite.min()), float(finite.max())
        rows = []
        for ch in rec.channels[:MAX_CHANNELS]:
            row: dict[str, Any] = {"channel": ch.channel, "top": [], "bottom": [], "max": None}
            for direction, n in (("top", SHOWN_TOP), ("bottom", SHOWN_BOTTOM)):
                stack = arrays.get(ch.arrays.get(direction, ""))
                for i, ex in enumerate(getattr(ch, direction)[:n]):
                    row[direction].append(
                        {
                            "src": png(stack[i], lo, hi)
                            if stack is not None and i < len(stack)
                            else None,
                            "value": ex.value,
                            "set": ex.set,
                            "image": ex.image,
                        }
                    )
            m = arrays.get(ch.arrays.get("maximising", ""))
            if m is not None and ch.maximising_input is not None:
                bound = float(np.nanmax(np.abs(m))) or 1.0
                row["max"] = {
                    "src": png(m if m.ndim == 3 else m[:, None, :], -bound, bound),
                    "activation": ch.maximising_input.activation,
                    "best": ch.maximising_input.best_image_activation,
                }
            row["sets"] = _composition([e.set for e in ch.top])
            found = [c for c in ch.concepts if c.detector]
            best = max(found or ch.concepts, key=lambda c: c.iou, default=None)
            row["concept"] = (
                None
                if best is None
                else {
                    "part": best.part,
                    "iou": best.iou,
                    "shift": best.null_shift_p95,
                    "untrained": best.null_untrained_p95,
                    "detector": best.detector,
                    "first": best.first_epoch,
                }
            )
            rows.append(row)
        layers.append(
            {
                "layer": rec.layer,
                "rows": rows,
                "n": len(rec.channels),
                "n_images": rec.n_images,
                "sets": rec.sets,
                "rule": rec.rule,
                "maximising_rule": rec.maximising_rule,
                "skipped": None,
                "missing_arrays": not arrays,
                "concept_rule": rec.concept_rule,
                "concept_images": rec.concept_images,
                "detectors": _detector_counts(rec),
                "random_label_detectors": rec.random_label_detectors,
            }
        )
    return {"layers": layers, "shown": MAX_CHANNELS}


def _composition(sets: list[str]) -> str:
    """Which sets a channel's top exemplars come from ("6 face" or "4 face, 2 cat")."""
    counts: dict[str, int] = {}
    for s in sets:
        counts[s] = counts.get(s, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda t: -t[1]))


def _detector_counts(rec: Any) -> dict[str, int]:
    """Per part, how many of the layer's channels detect it."""
    counts: dict[str, int] = {}
    for ch in rec.channels:
        for c in ch.concepts:
            counts[c.part] = counts.get(c.part, 0) + int(c.detector)
    return counts
