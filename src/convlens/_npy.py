"""Read a ``.npy`` header (shape, dtype) without reading the data: how the loaders check declared
sizes against files and limits before numpy allocates anything."""

from __future__ import annotations

from typing import IO, Any

import numpy as np


def read_npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from the header at the current position of ``f`` (format versions 1 and 2;
    another version raises ``ValueError`` naming it). ``f`` is left at the start of the data."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version}")
    return tuple(int(n) for n in shape), dtype
