"""Parse matrices typed by a person: ``"1 2 3; 4 5 6"``, JSON, or a file (``@path``, ``.npy``, ``.csv``).

Numbers stay exact where they can: integers become ``int64``, ``a/b`` becomes a
:class:`fractions.Fraction` (then every cell is a Fraction, decimals included, so nothing is rounded),
anything else a ``float64``.

>>> parse_matrix("1 2 3; 4 5 6")
array([[1, 2, 3],
       [4, 5, 6]])
>>> parse_matrix("[[1, 2], [3, 4]]").shape
(2, 2)
>>> parse_matrix("1/2 1; 0.25 2")
array([[Fraction(1, 2), Fraction(1, 1)],
       [Fraction(1, 4), Fraction(2, 1)]], dtype=object)
"""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError

_MAX_CELLS = 1_000_000
_INT = re.compile(r"^[+-]?\d+$")
_FRAC = re.compile(r"^[+-]?\d+\s*/\s*[+-]?\d+$")


def parse_matrix(text: str, name: str = "matrix") -> NDArray[Any]:
    """Parse a 2-D matrix from text, JSON, or ``@file`` / a path ending in .npy/.csv/.txt/.json."""
    if not isinstance(text, str):
        raise ConvlensError(f"{name}: expected text, got {type(text).__name__}")
    spec = text.strip()
    if not spec:
        raise ConvlensError(f"{name}: empty matrix (expected rows like '1 2 3; 4 5 6')")
    if spec.startswith("@") or re.search(r"\.(npy|csv|txt|json|tsv)$", spec, re.IGNORECASE):
        return _load_file(spec[1:] if spec.startswith("@") else spec, name)
    if spec.startswith("["):
        try:
            data = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise ConvlensError(f"{name}: invalid JSON matrix {spec!r}: {exc.msg}") from None
        return _from_nested(data, name)
    rows = [r for r in re.split(r"[;\n]", spec) if r.strip()]
    cells = [[c for c in re.split(r"[,\s]+", r.strip()) if c] for r in rows]
    return _from_tokens(cells, name)


def _load_file(path_text: str, name: str) -> NDArray[Any]:
    path = Path(path_text)
    if not path.is_file():
        raise ConvlensError(f"{name}: file {str(path)!r} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ConvlensError(
                f"{name}: cannot read {str(path)!r} as a .npy array: {exc}"
            ) from None
        if arr.dtype.kind not in "biuf":
            raise ConvlensError(f"{name}: {str(path)!r} holds dtype {arr.dtype}, expected numbers")
        if arr.ndim == 1:
            arr = arr[None, :]
        return _check(arr, name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvlensError(f"{name}: cannot read {str(path)!r} as text: {exc}") from None
    if suffix == ".json":
        try:
            return _from_nested(json.loads(text), name)
        except json.JSONDecodeError as exc:
            raise ConvlensError(f"{name}: {str(path)!r} is not valid JSON: {exc.msg}") from None
    if suffix in (".csv", ".tsv"):
        rows = [
            line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
        ]
        sep = "\t" if suffix == ".tsv" else ","
        return _from_tokens([[c.strip() for c in r.split(sep)] for r in rows], name)
    return parse_matrix(text, name)


def _from_nested(data: Any, name: str) -> NDArray[Any]:
    if not isinstance(data, list) or not data:
        raise ConvlensError(f"{name}: expected a non-empty list of rows, got {data!r:.80}")
    if all(not isinstance(r, list) for r in data):
        data = [data]
    cells: list[list[str]] = []
    for i, row in enumerate(data):
        if not isinstance(row, list):
            raise ConvlensError(f"{name}: row {i} is {row!r}, expected a list of numbers")
        out_row = []
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int | float | str):
                raise ConvlensError(f"{name}: cell ({i}, {j}) is {v!r}, expected a number")
            out_row.append(str(v))
        cells.append(out_row)
    return _from_tokens(cells, name)


def _parse_token(tok: str, i: int, j: int, name: str) -> int | float | Fraction:
    t = tok.strip()
    if _INT.match(t):
        return int(t)
    if _FRAC.match(t):
        num, den = (int(p) for p in t.split("/"))
        if den == 0:
            raise ConvlensError(f"{name}: cell ({i}, {j}) is {tok!r}: division by zero")
        return Fraction(num, den)
    try:
        value = float(t)
    except ValueError:
        raise ConvlensError(f"{name}: cell ({i}, {j}) is {tok!r}, which is not a number") from None
    return value


def _from_tokens(cells: list[list[str]], name: str) -> NDArray[Any]:
    cells = [r for r in cells if r]
    if not cells:
        raise ConvlensError(f"{name}: empty matrix (expected rows like '1 2 3; 4 5 6')")
    widths = {len(r) for r in cells}
    if len(widths) != 1:
        lengths = ", ".join(f"row {i}: {len(r)}" for i, r in enumerate(cells))
        raise ConvlensError(
            f"{name}: ragged rows, every row needs the same number of cells ({lengths})"
        )
    if len(cells) * len(cells[0]) > _MAX_CELLS:
        raise ConvlensError(
            f"{name}: {len(cells)}x{len(cells[0])} cells is over the limit of {_MAX_CELLS}"
        )
    values = [[_parse_token(t, i, j, name) for j, t in enumerate(r)] for i, r in enumerate(cells)]
    flat = [v for r in values for v in r]
    if any(isinstance(v, Fraction) for v in flat):

        def exact(v: int | float | Fraction, tok: str) -> Fraction:
            if isinstance(v, float):
                if not math.isfinite(v):
                    raise ConvlensError(f"{name}: {tok!r} cannot be mixed with exact fractions")
                return Fraction(tok.strip())  # the decimal as typed, exactly
            return Fraction(v)

        arr = np.empty((len(values), len(values[0])), dtype=object)
        for i, r in enumerate(values):
            for j, v in enumerate(r):
                arr[i, j] = exact(v, cells[i][j])
        return arr
    if all(isinstance(v, int) for v in flat):
        if all(-(2**63) <= v < 2**63 for v in flat):
            return np.array(values, dtype=np.int64)
        return np.array(values, dtype=object)
    return np.array(values, dtype=np.float64)


def _check(arr: NDArray[Any], name: str) -> NDArray[Any]:
    if arr.ndim != 2:
        raise ConvlensError(f"{name}: expected a 2-D matrix, got shape {arr.shape}")
    if arr.size == 0:
        raise ConvlensError(f"{name}: empty matrix (shape {arr.shape})")
    return arr
