"""Does the framework's conv layer compute cross-correlation? Measured, per layer, on the real call.

Each conv module is copied to float64 (CPU) and run on a random input while a
:class:`torch.overrides.TorchFunctionMode` records every call of ``torch.nn.functional.conv1d/2d/3d``
(and ``torch.convolution``, not transposed) made during its forward: the call's real input, weight
(after any reparametrisation the module does, e.g. weight standardisation), bias, stride, padding,
dilation and groups. Forward pre/post hooks on every conv module say which module is executing, and
a call is attributed to the innermost one. Each recorded call is then compared with
:func:`convlens.ops.correlate` (cross-correlation) and :func:`convlens.ops.convolve` (true
convolution) on the same arguments, in float64.

- A module with its own ``forward`` (timm ``Conv2dSame``: pads, then calls ``F.conv2d`` with padding
  0) is checked on what it actually calls; non-zero padding modes are part of the captured input.
- A module whose forward makes no conv call is reported ``"not executed"``; one that makes several is
  checked on every call (the figures are the maxima over calls).
- Differences are **relative**: ``max |layer - ops| / max |layer|``. Torch in float64 must agree within
  ``RTOL_FLOAT64`` (1e-9). A kernel that equals its own flip (1x1, or point-symmetric) cannot tell
  correlation from convolution: ``flip_invariant`` marks it and the verdict leaves it out of the
  "differs from true convolution" comparison.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.overrides import TorchFunctionMode

from convlens.analysis.model.layers import conv_modules, conv_types
from convlens.analysis.result import LayerCheck
from convlens.errors import ConvlensError
from convlens.ops import convolve, correlate

RTOL_FLOAT64 = 1e-9
"""Relative tolerance of a float64 conv call vs :func:`convlens.ops.correlate` (torch backend)."""

_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_FUNCS: dict[Callable[..., Any], int] = {
    torch.nn.functional.conv1d: 1,
    torch.nn.functional.conv2d: 2,
    torch.nn.functional.conv3d: 3,
}
_CONVOLUTION_ARGS = (
    "input",
    "weight",
    "bias",
    "stride",
    "padding",
    "dilation",
    "transposed",
    "output_padding",
    "groups",
)


class ConvCall:
    """One captured conv call: its arguments (float64 tensors) and its output, and who made it."""

    def __init__(self, owner: nn.Module | None, args: dict[str, Any], out: torch.Tensor) -> None:
        self.owner = owner
        self.args = args
        self.out = out


class _Capture(TorchFunctionMode):
    """Record every conv call with the innermost conv module executing at that moment."""

    def __init__(self, stack: list[nn.Module]) -> None:
        super().__init__()
        self.stack = stack
        self.calls: list[ConvCall] = []

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        bound = _bind(func, args, kwargs)
        if bound is not None and isinstance(out, torch.Tensor):
            owner = self.stack[-1] if self.stack else None
            self.calls.append(ConvCall(owner, bound, out.detach()))
        return out


def _bind(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    names: tuple[str, ...]
    if func in _CONV_FUNCS:
        names = _CONV_ARGS
    elif func is torch.convolution:
        names = _CONVOLUTION_ARGS
    else:
        return None
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    if func is torch.convolution and bound.get("transposed"):
        return None
    bound.setdefault("bias", None)
    bound.setdefault("stride", 1)
    bound.setdefault("padding", 0)
    bound.setdefault("dilation", 1)
    bound.setdefault("groups", 1)
    return bound


def capture_calls(model: nn.Module, *inputs: Any) -> list[ConvCall]:
    """Run ``model(*inputs)`` under ``no_grad`` recording every conv call, attributed to the innermost
    ``Conv1d/2d/3d`` module executing (``owner`` ``None`` outside any). Hooks removed in ``finally``."""
    stack: list[nn.Module] = []
    handles = []
    convs = conv_types()
    try:
        for m in model.modules():
            if isinstance(m, convs):
                handles.append(m.register_forward_pre_hook(lambda mod, _a: stack.append(mod)))
                handles.append(m.register_forward_hook(lambda *_a: stack.pop() if stack else None))
        mode = _Capture(stack)
        with torch.no_grad(), mode:
            model(*inputs)
        return mode.calls
    finally:
        for h in handles:
            h.remove()


def _ints(v: Any, nd: int) -> tuple[int, ...]:
    if isinstance(v, int | np.integer):
        return (int(v),) * nd
    vals = tuple(int(x) for x in v)
    return vals * nd if len(vals) == 1 else vals


def _padding(p: Any, nd: int, ksize: tuple[int, ...], dilation: tuple[int, ...]) -> Any:
    """Torch's padding argument as explicit ``(lo, hi)`` per axis (``"same"`` as torch pads it)."""
    if isinstance(p, str):
        if p == "valid":
            return tuple((0, 0) for _ in range(nd))
        if p == "same":  # torch: total d*(k-1), the extra one on the high side
            total = [dilation[i] * (ksize[i] - 1) for i in range(nd)]
            return tuple((t // 2, t - t // 2) for t in total)
        raise ValueError(f"unknown padding {p!r}")
    return tuple((v, v) for v in _ints(p, nd))


def flip_invariant(weight: NDArray[Any]) -> bool:
    """Whether flipping every spatial axis leaves the weight unchanged (1x1 or point-symmetric):
    then correlation and convolution agree and the layer cannot tell them apart."""
    w = np.asarray(weight)
    return bool(np.array_equal(w, np.flip(w, axis=tuple(range(2, w.ndim)))))


def compare_call(
    x: NDArray[Any], w: NDArray[Any], y: NDArray[Any], kwargs: dict[str, Any]
) -> tuple[float, float, float, bool]:
    """``(max |y - correlate|, max |y - convolve|, max |y|, flip_invariant)`` for one call whose
    arguments are ``x``, ``w`` and ``kwargs`` (``bias``, ``stride``, explicit ``padding``, ...)."""
    ours = correlate(x, w, **kwargs)
    flipped = convolve(x, w, **kwargs)
    d_corr = float(np.max(np.abs(ours - y))) if y.size else 0.0
    d_conv = float(np.max(np.abs(flipped - y))) if y.size else 0.0
    scale = float(np.max(np.abs(y))) if y.size else 0.0
    return d_corr, d_conv, scale, flip_invariant(w)


def relative(diff: float | None, scale: float) -> float | None:
    """``diff / scale`` (the difference itself when the output is all zero)."""
    if diff is None:
        return None
    return diff / scale if scale > 0 else diff


def make_check(
    name: str,
    kind: str,
    weight_shape: list[int],
    input_shape: list[int],
    per_call: list[tuple[float, float, float, bool]],
    *,
    backend: str,
    tolerance: float,
) -> LayerCheck:
    """A :class:`LayerCheck` from the per-call figures of :func:`compare_call` (maxima over calls;
    flip-invariant only when every call's kernel is)."""
    if not per_call:
        return LayerCheck(
            name,
            kind,
            weight_shape,
            input_shape,
            None,
            None,
            0.0,
            False,
            status="not executed",
            message="the module's forward made no conv1d/conv2d/conv3d call",
            backend=backend,
            tolerance=tolerance,
            calls=0,
        )
    rel_corr = max(relative(d, s) or 0.0 for d, _, s, _ in per_call)
    rel_conv = max(relative(d, s) or 0.0 for _, d, s, _ in per_call)
    return LayerCheck(
        name,
        kind,
        weight_shape,
        input_shape,
        max(d for d, _, _, _ in per_call),
        max(d for _, d, _, _ in per_call),
        max(s for _, _, s, _ in per_call),
        rel_corr <= tolerance,
        max_rel_diff_correlate=rel_corr,
        max_rel_diff_convolve=rel_conv,
        flip_invariant=all(f for _, _, _, f in per_call),
        backend=backend,
        tolerance=tolerance,
        calls=len(per_call),
    )


def _spatial_input(conv: Any, size: int) -> tuple[int, ...]:
    nd = conv.weight.ndim - 2
    k = conv.weight.shape[2:]
    d = _ints(conv.dilation, nd)
    return tuple(max(size, d[i] * (k[i] - 1) + 1 + 2) for i in range(nd))


def _call_figures(call: ConvCall) -> tuple[tuple[float, float, float, bool], list[int], list[int]]:
    a = call.args
    x = a["input"].detach().to(torch.float64)
    w = a["weight"].detach().to(torch.float64)
    nd = w.ndim - 2
    unbatched = x.ndim == nd + 1
    xn = x.numpy()[None] if unbatched else x.numpy()
    y = call.out.to(torch.float64).numpy()
    y = y[None] if unbatched else y
    b = a["bias"]
    dilation = _ints(a["dilation"], nd)
    kwargs: dict[str, Any] = {
        "bias": None if b is None else b.detach().to(torch.float64).numpy(),
        "stride": _ints(a["stride"], nd),
        "dilation": dilation,
        "groups": int(a["groups"]),
        "padding": _padding(a["padding"], nd, tuple(w.shape[2:]), dilation),
    }
    wn = w.numpy()
    return compare_call(xn, wn, y, kwargs), list(wn.shape), list(xn.shape)


def _failed_check(
    name: str, kind: str, w0: list[int], x_shape: list[int], exc: Exception, rtol: float
) -> LayerCheck:
    return LayerCheck(
        name,
        kind,
        w0,
        x_shape,
        None,
        None,
        0.0,
        False,
        status="failed",
        message=f"{type(exc).__name__}: {exc}".splitlines()[0],
        backend="torch float64",
        tolerance=rtol,
        calls=0,
    )


def check_layer(
    name: str,
    conv: nn.Module,
    *,
    size: int = 12,
    seed: int = 0,
    rtol: float = RTOL_FLOAT64,
) -> LayerCheck:
    """Run a float64 CPU copy of ``conv`` on a random input, capture its conv calls and compare each
    with the NumPy engine (see the module docstring). A forward that raises (the module is a user's
    code) gives ``status "failed"`` with the error, never an exception, and so does a captured
    call the NumPy engine refuses (a :class:`ConvlensError`); a bug in the comparison propagates."""
    kind = type(conv).__name__
    w0 = [int(v) for v in getattr(getattr(conv, "weight", None), "shape", [])]
    x_shape: list[int] = []
    try:  # the user's module: copied, moved to float64 and run (with the calls recorded)
        layer: Any = copy.deepcopy(conv).to(device="cpu", dtype=torch.float64).eval()
        gen = torch.Generator().manual_seed(seed)
        spatial = _spatial_input(layer, size)
        x = torch.randn((2, int(layer.in_channels), *spatial), generator=gen, dtype=torch.float64)
        x_shape = list(x.shape)
        calls = [c for c in capture_calls(layer, x) if c.owner is layer]
    except Exception as exc:  # a user's forward: anything may fail, the rest of the analysis stands
        return _failed_check(name, kind, w0, x_shape, exc, rtol)
    try:
        figures = [_call_figures(c) for c in calls]
    except ConvlensError as exc:  # a call the NumPy engine does not take (limits, arguments)
        return _failed_check(name, kind, w0, x_shape, exc, rtol)
    return make_check(
        name,
        kind,
        figures[0][1] if figures else w0,
        figures[0][2] if figures else x_shape,
        [f for f, _, _ in figures],
        backend="torch float64",
        tolerance=rtol,
    )


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every conv module with its qualified name, in definition order (see
    :func:`convlens.analysis.model.layers.identify_modules` for execution order and geometry)."""
    return conv_modules(model)


def verify_model(model: nn.Module, *, seed: int = 0) -> list[LayerCheck]:
    """Check every conv layer of ``model``."""
    return [check_layer(n, m, seed=seed) for n, m in conv_layers(model)]
