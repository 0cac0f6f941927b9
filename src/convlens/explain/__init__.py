"""Worked examples: each output cell as its window, products and sum; renderers; checking a claim.

Cells are built lazily (only those shown); 1-, 2- and 3-D, with input and output channels; the size
limits are in :mod:`convlens.explain.limits`.
"""

from convlens.explain.parse import parse_array, parse_matrix
from convlens.explain.render import FORMATS, render, render_chunks
from convlens.explain.worked import (
    Cell,
    CellSequence,
    CheckResult,
    Explanation,
    Mismatch,
    explain,
)

__all__ = [
    "FORMATS",
    "Cell",
    "CellSequence",
    "CheckResult",
    "Explanation",
    "Mismatch",
    "explain",
    "parse_array",
    "parse_matrix",
    "render",
    "render_chunks",
]
