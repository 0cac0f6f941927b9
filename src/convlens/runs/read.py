"""The one set of readers of a run directory. Everything in it is untrusted data: every failure
(size, encoding, JSON, a field's type, a truncated or corrupt safetensors file, misshapen tensors)
is one clear :class:`ConvlensError` naming the file, which the CLI prints as one line (exit 2).

- JSON records: :func:`read_json` (size cap, every JSON failure), :func:`run_json` (the raw
  object), :func:`run_record` (typed :class:`~convlens.runs.records.RunRecord`), :func:`metrics`
  (typed rows), :func:`status`;
- tensors (``safetensors.numpy``, never torch): :func:`read_tensors`, :func:`model_weights`,
  :func:`snapshots`, :func:`probe_inputs`, :func:`probe_maps`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError
from convlens.runs.layout import RunLayout, epoch_files
from convlens.runs.records import MetricsRow, RunRecord, parse

MAX_RECORD_BYTES = 64 * 2**20
"""``run.json`` and ``metrics.jsonl`` larger than this are refused before reading (64 MiB; a real
run's are a few kB)."""


def _loads(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConvlensError(f"{str(path)!r} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ConvlensError(f"{str(path)!r} is nested too deeply to be a run record") from None
    except ValueError as exc:  # e.g. integers over the int-to-str digit limit
        raise ConvlensError(f"{str(path)!r} is not a valid run record: {exc}") from None


def _text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_RECORD_BYTES:
        raise ConvlensError(
            f"{str(path)!r} is {size} bytes, over the limit of {MAX_RECORD_BYTES} bytes for a run record"
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConvlensError(f"{str(path)!r} is not UTF-8 text: {exc}") from None


def read_json(path: Path, *, lines: bool = False) -> Any:
    """A run record (or, with ``lines``, a JSON-lines file) with every failure as one clear error:
    size cap, undecodable text, invalid JSON, nesting too deep, numbers too long."""
    text = _text(path)
    if lines:
        return [_loads(line, path) for line in text.splitlines() if line.strip()]
    return _loads(text, path)


def _layout(root: str | Path | RunLayout) -> RunLayout:
    return root if isinstance(root, RunLayout) else RunLayout(root)


def run_json(root: str | Path | RunLayout) -> dict[str, Any]:
    """``run.json`` of the run in ``root`` as the JSON object it holds."""
    run = _layout(root)
    if not run.run_json.exists():
        raise ConvlensError(f"{str(run.root)!r} is not a run directory (no run.json)")
    data = read_json(run.run_json)
    if not isinstance(data, dict):
        raise ConvlensError(f"{str(run.run_json)!r} does not hold a JSON object")
    return data


def run_record(root: str | Path | RunLayout) -> RunRecord:
    """``run.json`` of the run in ``root``, typed; every field checked."""
    run = _layout(root)
    return RunRecord.from_dict(run_json(run), repr(str(run.run_json)))


def status(root: str | Path | RunLayout) -> str | None:
    """The ``status`` recorded in ``run.json``; ``None`` without a readable one."""
    try:
        data = run_json(root)
    except (ConvlensError, OSError):
        return None
    s = data.get("status")
    return s if isinstance(s, str) else None


def metrics(root: str | Path | RunLayout) -> list[MetricsRow]:
    """The rows of ``metrics.jsonl`` (none when the file is missing), each checked."""
    path = _layout(root).metrics
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        row = _loads(line, path)
        if not isinstance(row, dict):
            raise ConvlensError(f"{str(path)!r} has a line that is not a JSON object (line {n})")
        rows.append(parse(MetricsRow, row, f"{str(path)!r} line {n}"))
    return rows


def read_tensors(path: Path) -> dict[str, NDArray[Any]]:
    """Every tensor of a safetensors file in a run directory; a corrupt file is a clear error."""
    from safetensors.numpy import load_file

    try:
        return dict(load_file(str(path)))
    except FileNotFoundError:
        raise
    except Exception as exc:  # safetensors raises its own error type for bad headers/lengths
        msg = " ".join(str(exc).split())[:200]
        raise ConvlensError(
            f"{str(path)!r} is not a valid safetensors file (truncated or corrupt): {msg}"
        ) from None


def model_weights(root: str | Path | RunLayout) -> dict[str, NDArray[Any]]:
    """The final weights (``model.safetensors``); a partial run (none written) is a clear error."""
    run = _layout(root)
    if not run.model.is_file():
        raise ConvlensError(
            f"{str(run.root)!r} is a partial run (status {status(run)!r}, no model.safetensors); "
            "finish the training before analysing it",
            hint_key="partial_run",
        )
    return read_tensors(run.model)


def snapshots(root: str | Path | RunLayout) -> dict[int, dict[str, NDArray[Any]]]:
    """Every weight snapshot (``snapshots/epoch-NNN.safetensors``) by epoch; every file must hold
    the tensors of the first one, with the same shapes."""
    out: dict[int, dict[str, NDArray[Any]]] = {}
    first: dict[str, tuple[int, ...]] | None = None
    for epoch, f in _layout(root).snapshot_files().items():
        tensors = read_tensors(f)
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        if first is None:
            first = shapes
        elif shapes != first:
            raise ConvlensError(
                f"{str(f)!r}: holds tensors {_describe(shapes)}, but the first snapshot holds "
                f"{_describe(first)}"
            )
        out[epoch] = tensors
    return out


def _describe(shapes: dict[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in sorted(shapes.items())) or "none"


def probe_inputs(root: str | Path | RunLayout) -> NDArray[Any] | None:
    """The stored probe images ``x`` ``(P, C, H, W)`` (``probes/inputs.safetensors``); ``None``
    without the file."""
    path = _layout(root).probe_inputs
    if not path.is_file():
        return None
    held = read_tensors(path)
    if "x" not in held or held["x"].ndim != 4:
        raise ConvlensError(
            f"{str(path)!r}: expected a tensor 'x' shaped (P, C, H, W), found "
            f"{', '.join(f'{k} {v.shape}' for k, v in held.items()) or 'none'}"
        )
    return np.asarray(held["x"])


def probe_maps(
    root: str | Path | RunLayout, n_probes: int | None
) -> dict[int, dict[str, NDArray[Any]]]:
    """The probe feature-map files (``probes/epoch-NNN.safetensors``) by epoch: each layer's maps
    ``(P, C', H', W')`` for ``n_probes`` probes (any number when ``None``), the same layers in
    every file."""
    maps: dict[int, dict[str, NDArray[Any]]] = {}
    for epoch, f in epoch_files(_layout(root).probes_dir).items():
        held = read_tensors(f)
        for name, m in held.items():
            if m.ndim != 4 or (n_probes is not None and m.shape[0] != n_probes):
                want = "(P, C, H, W)" if n_probes is None else f"({n_probes}, C, H, W)"
                raise ConvlensError(
                    f"{str(f)!r}: feature maps {name!r} have shape {m.shape}, expected {want}"
                )
        if maps and set(held) != set(next(iter(maps.values()))):
            raise ConvlensError(
                f"{str(f)!r}: holds layers {sorted(held)}, but the first probe file holds "
                f"{sorted(next(iter(maps.values())))}"
            )
        maps[epoch] = held
    return maps
