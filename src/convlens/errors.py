"""Errors raised for bad input.

Every user-facing error is a :class:`ConvlensError` (a :class:`ValueError`), whose message names the
offending value and what was expected. The CLI turns it into a one-line message and exit code 2.
"""

from __future__ import annotations


class ConvlensError(ValueError):
    """Bad input from the user: the message says which value and what was expected."""


def describe_shape(shape: tuple[int, ...]) -> str:
    """``(2, 3)`` -> ``'2x3'``; ``()`` -> ``'scalar'``."""
    return "x".join(str(s) for s in shape) if shape else "scalar"
