"""Parse matrices typed by a person: ``"1 2 3; 4 5 6"``, JSON, or a file (``@path``, ``.npy``, ``.csv``).

:func:`parse_array` also reads arrays with more axes (channels, 3-D): ``|`` separates matrices along
the axis before the rows and ``||`` the axis before that (``"1 2; 3 4 | 5 6; 7 8"`` is 2x2x2); JSON
nested lists and ``.npy`` files keep their shape. A ``.npy`` file's shape is read from its header and
refused before any data is loaded when it holds more than ``max_elements`` values.

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
>>> parse_array("1 2; 3 4 | 5 6; 7 8").shape, parse_array("1 2 3").shape
((2, 2, 2), (3,))
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens._npy import read_npy_header
from convlens.errors import ConvlensError, describe_shape
from convlens.explain.limits import MAX_INPUT_ELEMENTS, MAX_TEXT_FILE_BYTES

_MAX_CELLS = 1_000_000
_INT = re.compile(r"^[+-]?\d+$")
_FRAC = re.compile(r"^[+-]?\d+\s*/\s*[+-]?\d+$")
_FILE = re.compile(r"\.(npy|csv|txt|json|tsv)$", re.IGNORECASE)


def parse_matrix(
    text: str, name: str = "matrix", *, max_elements: int = MAX_INPUT_ELEMENTS
) -> NDArray[Any]:
    """Parse a 2-D matrix from text, JSON, or ``@file`` / a path ending in .npy/.csv/.txt/.json.

    A ``.npy`` file with more than ``max_elements`` values is refused before its data is read.
    """
    spec = _spec(text, name)
    if spec.startswith("@") or _FILE.search(spec):
        return _check(_load_file(_path_text(spec), name, max_elements, nd=False), name)
    if spec.startswith("["):
        return _from_nested(_json(spec, name), name)
    return _from_tokens(_text_rows(spec), name)


def parse_array(
    text: str, name: str = "array", *, max_elements: int = MAX_INPUT_ELEMENTS
) -> NDArray[Any]:
    """Parse an array of any number of axes: a matrix as :func:`parse_matrix` accepts, ``|`` between
    the matrices of a 3-D array and ``||`` between the 3-D blocks of a 4-D one, JSON nested lists of
    any depth, or a file (``.npy`` keeps its shape). One row of text without ``;`` is 1-D."""
    spec = _spec(text, name)
    if spec.startswith("@") or _FILE.search(spec):
        return _check_any(_load_file(_path_text(spec), name, max_elements, nd=True), name)
    if spec.startswith("["):
        return _from_nested_nd(_json(spec, name), name)
    if "|" in spec:
        return _from_blocks(spec, name)
    rows = _text_rows(spec)
    if len(rows) == 1 and not re.search(r"[;\n]", spec):
        return _convert(rows[0], (len(rows[0]),), name)
    return _from_tokens(rows, name)


def _spec(text: str, name: str) -> str:
    if not isinstance(text, str):
        raise ConvlensError(f"{name}: expected text, got {type(text).__name__}")
    spec = text.strip()
    if not spec:
        raise ConvlensError(f"{name}: empty matrix (expected rows like '1 2 3; 4 5 6')")
    return spec


def _path_text(spec: str) -> str:
    return spec[1:] if spec.startswith("@") else spec


def _loads(text: str, name: str, what: str) -> Any:
    """``json.loads`` with every failure as one clear error (invalid, nested too deeply for a
    matrix, numbers longer than Python converts)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConvlensError(f"{name}: {what} is invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise ConvlensError(f"{name}: {what} is nested too deeply to be a matrix") from None
    except ValueError as exc:  # e.g. an integer over Python's int-conversion digit limit
        raise ConvlensError(f"{name}: {what}: {exc}") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise ConvlensError(
            f"{name}: {what} is nested deeper than {MAX_JSON_DEPTH} levels; a matrix needs at most 5"
        )
    return data


MAX_JSON_DEPTH = 8


def _depth(data: Any) -> int:
    depth = 0
    level = [data]
    while level and depth <= MAX_JSON_DEPTH:
        lists = [v for v in level if isinstance(v, list)]
        if not lists:
            break
        depth += 1
        level = [x for v in lists for x in v]
    return depth


def _json(spec: str, name: str) -> Any:
    shown = spec if len(spec) <= 60 else spec[:57] + "..."
    return _loads(spec, name, f"the JSON matrix {shown!r}")


def _text_rows(spec: str) -> list[list[str]]:
    rows = [r for r in re.split(r"[;\n]", spec) if r.strip()]
    return [[c for c in re.split(r"[,\s]+", r.strip()) if c] for r in rows]


def _from_blocks(spec: str, name: str) -> NDArray[Any]:
    """``"a | b || c | d"``: matrices separated by ``|``, groups of them by ``||``."""
    groups = [[_text_rows(m) for m in g.split("|")] for g in spec.split("||")]
    shapes = {(len(m), len(m[0]) if m else 0, *{len(r) for r in m}) for g in groups for m in g}
    counts = {len(g) for g in groups}
    if len(shapes) != 1 or len(counts) != 1:
        found = sorted(describe_shape(s[:2]) for s in shapes)
        raise ConvlensError(
            f"{name}: the matrices between '|' must all have the same shape and every '||' group "
            f"the same number of them, got shapes {', '.join(found)} and group sizes "
            f"{sorted(counts)}"
        )
    shape = next(iter(shapes))
    if len(shape) != 3 or shape[0] == 0:
        raise ConvlensError(
            f"{name}: every matrix between '|' needs rows of the same length, none empty"
        )
    mat = shape[:2]
    full = (len(groups[0]), *mat) if len(groups) == 1 else (len(groups), len(groups[0]), *mat)
    return _convert([t for g in groups for m in g for r in m for t in r], full, name)


def _load_file(path_text: str, name: str, max_elements: int, *, nd: bool) -> NDArray[Any]:
    path = Path(path_text)
    if not path.is_file():
        raise ConvlensError(f"{name}: file {str(path)!r} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(path, name, max_elements, nd=nd)
    size = path.stat().st_size
    if size > MAX_TEXT_FILE_BYTES:
        raise ConvlensError(
            f"{name}: {str(path)!r} is {size} bytes, over the limit of {MAX_TEXT_FILE_BYTES} for "
            "a text matrix file (save large arrays as .npy)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvlensError(f"{name}: cannot read {str(path)!r} as text: {exc}") from None
    if suffix == ".json":
        data = _loads(text, name, repr(str(path)))
        return _from_nested_nd(data, name) if nd else _from_nested(data, name)
    if suffix in (".csv", ".tsv"):
        rows = [
            line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
        ]
        sep = "\t" if suffix == ".tsv" else ","
        return _from_tokens([[c.strip() for c in r.split(sep)] for r in rows], name)
    if nd:
        return parse_array(text, name, max_elements=max_elements)
    return parse_matrix(text, name, max_elements=max_elements)


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from a .npy header (versions 1 and 2), without reading the data; a bad header
    raises ``ValueError``, reported by the caller."""
    with path.open("rb") as f:
        return read_npy_header(f)


def _load_npy(path: Path, name: str, max_elements: int, *, nd: bool) -> NDArray[Any]:
    try:
        shape, dtype = _npy_header(path)
        if dtype.kind == "O":
            raise ConvlensError(
                f"{name}: cannot read {str(path)!r} as a .npy array: it holds pickled "
                "Python objects, which are never loaded (expected numbers)"
            )
        if dtype.kind not in "biuf":
            raise ConvlensError(f"{name}: {str(path)!r} holds dtype {dtype}, expected numbers")
        if math.prod(shape) > max_elements:
            raise ConvlensError(
                f"{name}: {str(path)!r} holds {math.prod(shape)} values (shape "
                f"{describe_shape(shape)}), over the limit of {max_elements}"
            )
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, ConvlensError):
            raise
        raise ConvlensError(f"{name}: cannot read {str(path)!r} as a .npy array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise ConvlensError(f"{name}: {str(path)!r} holds dtype {arr.dtype}, expected numbers")
    if arr.size > max_elements:
        raise ConvlensError(
            f"{name}: {str(path)!r} holds {arr.size} values, over the limit of {max_elements}"
        )
    if arr.ndim == 1 and not nd:
        arr = arr[None, :]
    return arr


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


def _from_nested_nd(data: Any, name: str) -> NDArray[Any]:
    """JSON nested lists of any depth, rectangular, numbers at the leaves."""
    if not isinstance(data, list) or not data:
        raise ConvlensError(f"{name}: expected a non-empty list, got {data!r:.80}")
    tokens: list[str] = []

    def walk(node: Any, index: tuple[int, ...]) -> tuple[int, ...]:
        if not isinstance(node, list):
            if isinstance(node, bool) or not isinstance(node, int | float | str):
                raise ConvlensError(f"{name}: cell {_label(index)} is {node!r}, expected a number")
            tokens.append(str(node))
            return ()
        if not node:
            raise ConvlensError(f"{name}: empty list at {_label(index) if index else 'the top'}")
        shapes = [walk(child, (*index, k)) for k, child in enumerate(node)]
        if len(set(shapes)) != 1:
            where = f"list {_label(index)}" if index else "the outermost list"
            raise ConvlensError(
                f"{name}: ragged lists in {where}, every entry needs the same shape "
                f"(got {', '.join(sorted({describe_shape(s) for s in shapes}))})"
            )
        return (len(node), *shapes[0])

    shape = walk(data, ())
    return _convert(tokens, shape, name)


def _label(index: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(i)) for i in index) + ")"


def _parse_token(tok: str, where: Callable[[], str], name: str) -> int | float | Fraction:
    t = tok.strip()
    if _INT.match(t):
        try:
            return int(t)
        except ValueError:  # over Python's int-conversion digit limit (4300 digits)
            raise ConvlensError(
                f"{name}: cell {where()} has {len(t)} digits, over the limit Python converts"
            ) from None
    if _FRAC.match(t):
        try:
            num, den = (int(p) for p in t.split("/"))
        except ValueError:
            raise ConvlensError(
                f"{name}: cell {where()} has too many digits to convert ({len(t)} characters)"
            ) from None
        if den == 0:
            raise ConvlensError(f"{name}: cell {where()} is {tok!r}: division by zero")
        return Fraction(num, den)
    try:
        value = float(t)
    except ValueError:
        raise ConvlensError(f"{name}: cell {where()} is {tok!r}, which is not a number") from None
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
    return _convert([t for r in cells for t in r], (len(cells), len(cells[0])), name)


def _convert(tokens: list[str], shape: tuple[int, ...], name: str) -> NDArray[Any]:
    """Tokens (row-major) -> an array of ``shape``: int64, exact Fractions, Python ints or float64."""
    if len(tokens) > _MAX_CELLS:
        raise ConvlensError(
            f"{name}: {describe_shape(shape)} cells is over the limit of {_MAX_CELLS}"
        )
    if not tokens:
        raise ConvlensError(f"{name}: empty matrix (expected rows like '1 2 3; 4 5 6')")

    def where(k: int) -> Callable[[], str]:
        return lambda: _label(tuple(int(v) for v in np.unravel_index(k, shape)))

    flat = [_parse_token(t, where(k), name) for k, t in enumerate(tokens)]
    if any(isinstance(v, Fraction) for v in flat):

        def exact(v: int | float | Fraction, tok: str) -> Fraction:
            if isinstance(v, float):
                if not math.isfinite(v):
                    raise ConvlensError(f"{name}: {tok!r} cannot be mixed with exact fractions")
                return Fraction(tok.strip())  # the decimal as typed, exactly
            return Fraction(v)

        arr = np.empty(len(flat), dtype=object)
        for k, v in enumerate(flat):
            arr[k] = exact(v, tokens[k])
        return arr.reshape(shape)
    if all(isinstance(v, int) for v in flat):
        if all(-(2**63) <= v < 2**63 for v in flat):
            return np.array(flat, dtype=np.int64).reshape(shape)
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
        return arr.reshape(shape)
    return np.array(flat, dtype=np.float64).reshape(shape)


def _check(arr: NDArray[Any], name: str) -> NDArray[Any]:
    if arr.ndim != 2:
        raise ConvlensError(f"{name}: expected a 2-D matrix, got shape {arr.shape}")
    return _check_any(arr, name)


def _check_any(arr: NDArray[Any], name: str) -> NDArray[Any]:
    if arr.size == 0:
        raise ConvlensError(f"{name}: empty matrix (shape {arr.shape})")
    return arr
