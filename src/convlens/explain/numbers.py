"""Formatting numbers for worked examples: exact where the value is exact.

>>> fmt(3), fmt(Fraction(1, 3)), fmt(0.1), fmt(np.int64(-2)), fmt(2.0)
('3', '1/3', '0.1', '-2', '2.0')
>>> fmt_latex(Fraction(-1, 3))
'-\\\\frac{1}{3}'
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np


def to_python(v: Any) -> Any:
    """numpy scalar -> Python number; Fractions and Python numbers unchanged."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def fmt(v: Any) -> str:
    """Shortest exact-looking text for a number: ints as ints, Fractions as a/b, floats round-trip."""
    v = to_python(v)
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, Fraction):
        return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    return str(v)


def is_negative(v: Any) -> bool:
    v = to_python(v)
    try:
        return bool(v < 0)
    except TypeError:
        return False


def fmt_factor(v: Any) -> str:
    """A number as a factor in a product: negatives in parentheses, ``2·(-1)``."""
    s = fmt(v)
    return f"({s})" if is_negative(v) else s


def fmt_latex(v: Any) -> str:
    v = to_python(v)
    if isinstance(v, Fraction) and v.denominator != 1:
        sign = "-" if v < 0 else ""
        return f"{sign}\\frac{{{abs(v.numerator)}}}{{{v.denominator}}}"
    s = fmt(v)
    if s in ("nan", "inf", "-inf"):
        return {"nan": r"\mathrm{NaN}", "inf": r"\infty", "-inf": r"-\infty"}[s]
    if "e" in s and isinstance(v, float):
        mant, exp = s.split("e")
        return f"{mant} \\times 10^{{{int(exp)}}}"
    return s


def json_number(v: Any) -> Any:
    """JSON-safe value: ints and finite floats as numbers; Fractions, NaN, Inf as strings."""
    v = to_python(v)
    if isinstance(v, Fraction):
        return fmt(v)
    if isinstance(v, float) and not math.isfinite(v):
        return fmt(v)
    if isinstance(v, complex):
        return str(v)
    return v
