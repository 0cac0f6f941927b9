"""Worked examples: each output cell as its window, products and sum; renderers; checking a claim."""

from convlens.explain.parse import parse_matrix
from convlens.explain.render import FORMATS, render
from convlens.explain.worked import Cell, CheckResult, Explanation, Mismatch, explain

__all__ = [
    "FORMATS",
    "Cell",
    "CheckResult",
    "Explanation",
    "Mismatch",
    "explain",
    "parse_matrix",
    "render",
]
