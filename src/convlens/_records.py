"""Reading the JSON records of a run directory (``run.json``, ``metrics.jsonl``) as untrusted data:
every failure is one clear :class:`ConvlensError`. Torch-free, so the analysis and the report read
run records the same way the trainer does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from convlens.errors import ConvlensError

MAX_RECORD_BYTES = 64 * 2**20
"""``run.json`` and ``metrics.jsonl`` larger than this are refused before reading (64 MiB; a real
run's are a few kB)."""


FEATURE_MAPS_DERIVED = (
    "derived on read from snapshots/epoch-NNN.safetensors and the probe images: each conv layer's "
    "output before ReLU (cross-correlation + bias, zero padding kernel // 2), the next conv reading "
    "it after ReLU and max-pooling; exact engine in float64, stored as float32. "
    "probes/inputs.safetensors holds the training probes; the OOD probes are rebuilt from their "
    "recipes (make_ood with this run's seed, set size and training mean/std)"
)
"""How a run with snapshots keeps its probe feature maps (run.json ``feature_maps``): derived when
read by :mod:`convlens.analysis.measure.probemaps`."""


def read_json(path: Path, *, lines: bool = False) -> Any:
    """A run record (or, with ``lines``, a JSON-lines file) with every failure as one clear error:
    size cap, undecodable text, invalid JSON, nesting too deep, numbers too long."""
    size = path.stat().st_size
    if size > MAX_RECORD_BYTES:
        raise ConvlensError(
            f"{str(path)!r} is {size} bytes, over the limit of {MAX_RECORD_BYTES} bytes for a run record"
        )
    try:
        text = path.read_text(encoding="utf-8")
        if lines:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise ConvlensError(f"{str(path)!r} is not UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConvlensError(f"{str(path)!r} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ConvlensError(f"{str(path)!r} is nested too deeply to be a run record") from None
    except ValueError as exc:  # e.g. integers over the int-to-str digit limit
        raise ConvlensError(f"{str(path)!r} is not a valid run record: {exc}") from None
