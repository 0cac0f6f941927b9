"""Three ways to compute the same correlation of a zero-padded input; :func:`compute` picks by shape.

- ``taps``: loop over kernel taps; per tap one ``(O/g x C/g) @ (C/g x P)`` product. Exact for integer
  and object (Fraction, Python int) arrays: the only path they take.
- ``shift_add``: floats with one input and one output channel per group (a plain image, depthwise
  convs): per tap ``acc += w_t * shifted input``, with a preallocated temporary (no per-tap
  allocation). With stride 1 the padded planes are read as one flat array and every tap is a single
  contiguous 1-D slice of it (the outputs are computed on the padded grid, whose extra columns are
  dropped at the end), which runs NumPy's fastest loops; strided convolutions use 2-D row bands.
  Large problems are split into ranges computed on separate threads (NumPy releases the GIL inside
  its loops).
- ``im2col``: floats with channels: the patches are gathered into a ``(C/g * prod(K), P)`` matrix
  and multiplied by the ``(O/g, C/g * prod(K))`` weight matrix in one BLAS GEMM per chunk of the
  batch (one reused buffer of at most IM2COL_BUDGET bytes). Strided convolutions gather from the
  polyphase components of the input, so every copied row is contiguous.

All three are checked against the same oracles (plain loops in float64, scipy, torch float64).
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

IM2COL_BUDGET = 16 * 1024 * 1024  # bytes of gathered patches per chunk (one reused buffer)
THREAD_MIN_POSITIONS = 1 << 17  # split a plane across threads above this many outputs


def _window(
    tap: tuple[int, ...],
    dilations: tuple[int, ...],
    strides: tuple[int, ...],
    out_sp: tuple[int, ...],
    offset: int = 0,
    rows: int | None = None,
) -> tuple[slice, ...]:
    sl = []
    for axis, (t, d, s, m) in enumerate(zip(tap, dilations, strides, out_sp, strict=True)):
        start = t * d
        if axis == 0 and rows is not None:
            start += offset * s
            m = rows
        sl.append(slice(start, start + s * (m - 1) + 1, s))
    return tuple(sl)


def taps(
    xp: NDArray[Any],
    w: NDArray[Any],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    groups: int,
    out_sp: tuple[int, ...],
) -> NDArray[Any]:
    n = xp.shape[0]
    o, cg = w.shape[:2]
    og = o // groups
    npos = int(np.prod(out_sp))
    xg = xp.reshape(n, groups, cg, *xp.shape[2:])
    wg = w.reshape(groups, og, cg, *w.shape[2:])
    acc = np.zeros((n, groups, og, npos), dtype=w.dtype)  # object zeros are the int 0: exact
    lead: tuple[slice, ...] = (slice(None),) * 3
    for tap in itertools.product(*(range(k) for k in w.shape[2:])):
        xs = xg[lead + _window(tap, dilations, strides, out_sp)].reshape(n, groups, cg, npos)
        acc += np.matmul(wg[lead + tap], xs)
    return acc.reshape(n, o, *out_sp)


def _workers(positions: int, limit: int) -> int:
    """How many threads to split ``positions`` outputs over (1 below THREAD_MIN_POSITIONS)."""
    if positions < THREAD_MIN_POSITIONS:
        return 1
    return max(1, min(os.cpu_count() or 1, 4, limit))


def _run_split(fn: Any, stop: int, workers: int) -> None:
    """Call ``fn(a, b)`` on ``workers`` consecutive ranges covering ``[0, stop)``."""
    if workers <= 1:
        fn(0, stop)
        return
    edges = np.linspace(0, stop, workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda ab: fn(int(ab[0]), int(ab[1])), itertools.pairwise(edges)))


def _sum_of_taps(dst: NDArray[Any], terms: Any) -> None:
    """``dst = sum(view * weight for view, weight in terms)`` with one temporary for all taps."""
    tmp = np.empty_like(dst)
    for i, (view, wt) in enumerate(terms):
        if i == 0:
            np.multiply(view, wt, out=dst)
        else:
            np.multiply(view, wt, out=tmp)
            np.add(dst, tmp, out=dst)


def shift_add(
    xp: NDArray[Any],
    w: NDArray[Any],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    groups: int,
    out_sp: tuple[int, ...],
) -> NDArray[Any]:
    """Floats, one input and one output channel per group (``w.shape[:2] == (groups, 1)``)."""
    if all(s == 1 for s in strides):
        return _flat_shift_add(xp, w, dilations, groups, out_sp)
    n = xp.shape[0]
    planes = xp.reshape(n, groups, *xp.shape[2:])  # (N, G, *Sp)
    weights = w.reshape(groups, *w.shape[2:])
    out = np.empty((n, groups, *out_sp), dtype=w.dtype)
    tap_list = list(itertools.product(*(range(k) for k in w.shape[2:])))
    wshape = (1, groups) + (1,) * len(out_sp)
    lead = (slice(None), slice(None))

    # one group: multiply by a NumPy scalar (keeps the array's dtype, skips broadcasting)
    index: list[tuple[Any, ...]] = [(slice(None), *tap) for tap in tap_list]
    per_group = [weights[ix].reshape(wshape) for ix in index]
    scalars = [g.ravel()[0] for g in per_group] if groups == 1 else None

    def band(r0: int, r1: int) -> None:
        _sum_of_taps(
            out[:, :, r0:r1],
            (
                (
                    planes[lead + _window(tap, dilations, strides, out_sp, r0, r1 - r0)],
                    scalars[i] if scalars is not None else per_group[i],
                )
                for i, tap in enumerate(tap_list)
            ),
        )

    rows = out_sp[0]
    _run_split(band, rows, _workers(n * groups * math.prod(out_sp), rows))
    return out.reshape(n, groups, *out_sp)


def _flat_shift_add(
    xp: NDArray[Any],
    w: NDArray[Any],
    dilations: tuple[int, ...],
    groups: int,
    out_sp: tuple[int, ...],
) -> NDArray[Any]:
    """Stride 1: ``acc[q] += w_t * x[q + offset_t]`` over the flattened padded planes.

    Output ``q`` (a flat index into a padded plane) is valid where its coordinates are below
    ``out_sp``; a valid output only reads inside its own plane, so computing every ``q`` up to the
    last valid one never reads out of bounds. With one group, all N planes share the weights and
    are one stream; with several, the planes of each group get their own weight per tap.
    """
    n = xp.shape[0]
    sp = xp.shape[2:]
    plane = math.prod(sp)
    steps = [math.prod(sp[a + 1 :]) for a in range(len(sp))]  # element strides inside one plane
    taps = list(itertools.product(*(range(k) for k in w.shape[2:])))
    offsets = [
        sum(t * d * s for t, d, s in zip(tap, dilations, steps, strict=True)) for tap in taps
    ]
    last = sum((m - 1) * s for m, s in zip(out_sp, steps, strict=True))
    weights = w.reshape(groups, len(taps))
    src = np.ascontiguousarray(xp)
    wt: list[Any]
    if groups == 1:
        src = src.reshape(1, 1, n * plane)
        span = (n - 1) * plane + last + 1
        wt = [weights[0, i] for i in range(len(taps))]  # NumPy scalars keep the dtype
    else:
        src = src.reshape(n, groups, plane)
        span = last + 1
        wt = [weights[:, i].reshape(1, groups, 1) for i in range(len(taps))]
    acc = np.empty(src.shape, dtype=w.dtype)

    def run(a: int, b: int) -> None:
        _sum_of_taps(
            acc[:, :, a:b],
            ((src[:, :, a + off : b + off], wt[i]) for i, off in enumerate(offsets)),
        )

    rows = src.shape[0] * src.shape[1]
    _run_split(run, span, _workers(rows * span, span))
    full = acc.reshape(n, groups, *sp)
    return np.ascontiguousarray(full[(slice(None), slice(None), *(slice(0, m) for m in out_sp))])


class _Residue(NamedTuple):
    """The taps of one kernel axis whose offset ``t * d`` is ``residue`` modulo the stride."""

    residue: int  # which polyphase component they read
    taps: list[int]  # their kernel indices along the axis
    start: int  # the first tap's offset in phase coordinates (``t * d // s``)
    step: int  # the spacing of their offsets in phase coordinates


class _PhaseWindow(NamedTuple):
    """One sliding-window view of :func:`_phase_windows` and the taps it holds."""

    view: NDArray[Any]  # ``(N, C, *out_sp, *window)``
    taps: NDArray[np.intp]  # the row-major kernel index of each window position, in order


def _phase_windows(
    xp: NDArray[Any],
    ksize: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    out_sp: tuple[int, ...],
) -> list[_PhaseWindow]:
    """Sliding-window views ``(N, C, *out_sp, *window)`` that together hold every kernel tap.

    With stride 1 that is one view of ``xp``. With stride ``s > 1`` the input is first split into
    its polyphase components (``xp[..., r::s]``, copied once): the taps whose offset ``t * d`` is
    ``r`` modulo ``s`` read phase ``r`` at unit stride, so the gathered rows are contiguous instead
    of every ``s``-th element. Each view comes with the row-major kernel indices of its taps.
    """
    per_axis: list[list[_Residue]] = []
    for k, d, s in zip(ksize, dilations, strides, strict=True):
        by_residue: dict[int, list[int]] = {}
        for t in range(k):
            by_residue.setdefault(t * d % s, []).append(t)
        entries: list[_Residue] = []
        for r, taps_ in sorted(by_residue.items()):
            offs = [t * d // s for t in taps_]  # an arithmetic progression in phase coordinates
            step = offs[1] - offs[0] if len(offs) > 1 else 1
            entries.append(_Residue(r, taps_, offs[0], step))
        per_axis.append(entries)
    nd = len(ksize)
    strided = any(s > 1 for s in strides)
    pieces: list[_PhaseWindow] = []
    for combo in itertools.product(*per_axis):
        phase = xp[
            (
                slice(None),
                slice(None),
                *(slice(e.residue, None, s) for e, s in zip(combo, strides, strict=True)),
            )
        ]
        if strided:
            phase = np.ascontiguousarray(phase)
        phase = phase[(slice(None), slice(None), *(slice(e.start, None) for e in combo))]
        spans = tuple((len(e.taps) - 1) * e.step + 1 for e in combo)
        v = sliding_window_view(phase, spans, axis=tuple(range(2, 2 + nd)))
        v = v[
            (
                slice(None),
                slice(None),
                *(slice(0, m) for m in out_sp),
                *(slice(None, None, e.step) for e in combo),
            )
        ]
        taps = itertools.product(*(e.taps for e in combo))
        index = np.array([np.ravel_multi_index(t, ksize) for t in taps], dtype=np.intp)
        pieces.append(_PhaseWindow(v, index))
    return pieces


def im2col(
    xp: NDArray[Any],
    w: NDArray[Any],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    groups: int,
    out_sp: tuple[int, ...],
) -> NDArray[Any]:
    n = xp.shape[0]
    o, cg = w.shape[:2]
    og = o // groups
    nd = len(out_sp)
    pieces = _phase_windows(xp, w.shape[2:], strides, dilations, out_sp)
    order = np.concatenate([piece.taps for piece in pieces])
    ntaps = len(order)
    kdim = cg * ntaps
    npos = math.prod(out_sp)
    # the weight columns follow the order in which the taps are gathered
    wmat = w.reshape(groups, og, cg, ntaps)[..., order].reshape(groups, og, kdim)
    out = np.empty((n, groups, og, npos), dtype=w.dtype)
    per_item = groups * kdim * npos * w.dtype.itemsize
    step = max(1, IM2COL_BUDGET // max(per_item, 1))
    # one buffer, reused for every chunk (a fresh multi-MB array per chunk costs page faults)
    cols = np.empty((min(step, n), groups, cg, ntaps, npos), dtype=w.dtype)
    perm = (0, 1, 2, *range(3 + nd, 3 + 2 * nd), *range(3, 3 + nd))
    for b0 in range(0, n, step):
        b1 = min(n, b0 + step)
        nb = b1 - b0
        row = 0
        for piece in pieces:
            v = piece.view
            win = v.shape[2 + nd :]
            src = v[b0:b1].reshape(nb, groups, cg, *v.shape[2:]).transpose(perm)
            dst = cols[:nb, :, :, row : row + len(piece.taps)].reshape(
                nb, groups, cg, *win, *out_sp
            )
            np.copyto(dst, src)
            row += len(piece.taps)
        np.matmul(wmat, cols[:nb].reshape(nb, groups, kdim, npos), out=out[b0:b1])
    return out.reshape(n, o, *out_sp)


def choose(dtype: np.dtype[Any], w_shape: tuple[int, ...], groups: int) -> str:
    if dtype.kind not in "fc":
        return "taps"
    o, cg = w_shape[:2]
    if cg == 1 and o == groups:
        return "shift_add"
    return "im2col"


STRATEGIES = {"taps": taps, "shift_add": shift_add, "im2col": im2col}


def compute(
    xp: NDArray[Any],
    w: NDArray[Any],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    groups: int,
    out_sp: tuple[int, ...],
    strategy: str | None = None,
) -> NDArray[Any]:
    name = strategy or choose(w.dtype, w.shape, groups)
    return STRATEGIES[name](xp, w, strides, dilations, groups, out_sp)
