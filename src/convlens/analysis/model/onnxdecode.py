"""Decoding what an ONNX file holds, as untrusted data: tensors (dense and sparse, size-checked from
their declared dims before decoding), quantised weights (``DynamicQuantizeLinear`` as onnxruntime
computes it, ``DequantizeLinear``), and the graph input (dims, dtype, a stated layout guess). The
graph walk that finds the conv layers is :mod:`convlens.analysis.model.onnxgraph`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError

MAX_WEIGHT_VALUES = 1 << 28
"""Most values one tensor of an ONNX model may declare (268,435,456: 1 GiB of float32), checked from
its declared dims before it is decoded (the same limit as ``loading.MAX_WEIGHT_VALUES``)."""
# TensorProto element types decoded here. Float ones are weights; integer ones are quantised weights,
# zero points and shapes.
FLOAT_TYPES = {1: "FLOAT", 10: "FLOAT16", 11: "DOUBLE", 16: "BFLOAT16"}
INT_TYPES = {
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    12: "UINT32",
    13: "UINT64",
}
Layout = Literal["NCHW", "NHWC", "unknown"]


@dataclass
class InputSpec:
    """The model's (one) data input: dims (``None`` where symbolic), element type and layout guess."""

    name: str
    shape: list[int | None] | None
    dtype: str
    layout: Layout
    layout_reason: str

    @property
    def batch(self) -> int | None:
        """The fixed batch size, or ``None`` when the first dim is symbolic (or the rank unknown)."""
        return self.shape[0] if self.shape else None

    def describe(self) -> str:
        dims = (
            "?"
            if self.shape is None
            else "[" + ", ".join("N" if d is None else str(d) for d in self.shape) + "]"
        )
        return (
            f"input {self.name!r}: {self.dtype} {dims}, layout {self.layout} ({self.layout_reason})"
        )


class NotConstant(Exception):
    """A weight is computed at run time (the reason says from what)."""


def load_model(path: str | Path) -> Any:
    """The ONNX ``ModelProto`` without external data (refused later, tensor by tensor)."""
    try:
        import onnx
    except ImportError:
        raise ConvlensError(
            "reading .onnx needs the optional 'onnx' package: pip install 'convlens[onnx]'"
        ) from None
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ConvlensError(f"{str(path)!r} is not a valid ONNX model: {exc}") from None


def decode_tensor(t: Any, path: str | Path, *, integer_ok: bool = True) -> NDArray[Any]:
    """One ``TensorProto`` as an array, after checking that it is stored inside the file, its element
    type (a float type, or an integer type where ``integer_ok``) and its declared size (at most
    ``MAX_WEIGHT_VALUES`` values, all present) before decoding it."""
    from onnx import TensorProto, numpy_helper

    where = f"{str(path)!r}: tensor {t.name!r}"
    if t.data_location == TensorProto.EXTERNAL:
        raise ConvlensError(
            f"{str(path)!r} keeps tensor {t.name!r} in an external data file; refusing to read files "
            "named inside a model (save it with all tensors inside)"
        )
    allowed = {**FLOAT_TYPES, **(INT_TYPES if integer_ok else {})}
    if t.data_type not in allowed:
        raise ConvlensError(
            f"{where} has element type {t.data_type}; expected a float tensor "
            f"({', '.join(FLOAT_TYPES.values())})"
            + (" or a quantised integer tensor" if integer_ok else "")
        )
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise ConvlensError(f"{where} declares negative dims {dims}")
    count = math.prod(dims)
    if count > MAX_WEIGHT_VALUES:
        raise ConvlensError(
            f"{where} declares dims {dims} ({count} values), over the limit of {MAX_WEIGHT_VALUES} "
            "(MAX_WEIGHT_VALUES in convlens.analysis.model.loading)"
        )
    try:
        arr = np.asarray(numpy_helper.to_array(t))
    except Exception as exc:
        raise ConvlensError(f"{where} cannot be decoded (dims {dims}): {exc}") from None
    if t.data_type == 16 and arr.dtype.kind == "V":  # bfloat16 (ml_dtypes): widen, exactly
        arr = arr.astype(np.float32)
    if arr.size != count or arr.dtype.kind not in "fiu":
        raise ConvlensError(f"{where} declares dims {dims} but holds {arr.size} {arr.dtype} values")
    return arr


def decode_sparse(sp: Any, path: str | Path) -> NDArray[Any]:
    dims = [int(d) for d in sp.dims]
    count = math.prod(dims)
    if any(d < 0 for d in dims) or count > MAX_WEIGHT_VALUES:
        raise ConvlensError(
            f"{str(path)!r}: sparse tensor {sp.values.name!r} declares dims {dims}, over the limit of "
            f"{MAX_WEIGHT_VALUES} values (MAX_WEIGHT_VALUES in convlens.analysis.model.loading)"
        )
    values = decode_tensor(sp.values, path).reshape(-1)
    idx = decode_tensor(sp.indices, path).astype(np.int64)
    if idx.ndim == 2 and len(dims) > 0:
        idx = np.ravel_multi_index(tuple(idx.T), dims, mode="raise") if idx.size else idx.reshape(0)
    idx = idx.reshape(-1)
    if idx.size != values.size or (idx.size and (idx.min() < 0 or idx.max() >= count)):
        raise ConvlensError(
            f"{str(path)!r}: sparse tensor {sp.values.name!r} has indices that do not fit dims {dims}"
        )
    out = np.zeros(count, dtype=values.dtype)
    out[idx] = values
    return out.reshape(dims)


def dynamic_quantize_linear(
    x: NDArray[Any],
) -> tuple[NDArray[np.uint8], NDArray[np.float32], NDArray[np.uint8]]:
    """ONNX ``DynamicQuantizeLinear`` of a constant, in float32 as onnxruntime computes it:
    ``scale = (max(0, max x) - min(0, min x)) / 255``, ``zp = saturate(round(-min / scale))``,
    ``y = saturate(round(x / scale) + zp)`` (round half to even, saturate to 0..255; scale 1 for an
    all-zero tensor, as onnxruntime does). Follows a
    weight that onnxruntime's quantiser quantises at run time (a weight from a ``Constant`` node):
    the values are fixed, so the dequantised weight is computable."""
    xf = np.asarray(x, dtype=np.float32)
    lo = np.float32(min(0.0, float(xf.min()))) if xf.size else np.float32(0)
    hi = np.float32(max(0.0, float(xf.max()))) if xf.size else np.float32(0)
    scale = np.float32((hi - lo) / np.float32(255))
    if scale == 0:  # an all-zero tensor: onnxruntime takes scale 1, zero point 0
        scale = np.float32(1)
    zp = np.uint8(np.clip(np.rint(np.float32(0) - lo / scale), 0, 255))
    y = np.clip(np.rint(xf / scale) + np.float32(zp), 0, 255).astype(np.uint8)
    return y, np.asarray(scale, dtype=np.float32), np.asarray(zp, dtype=np.uint8)


def dequantise(
    q: NDArray[Any], scale: NDArray[Any], zp: NDArray[Any] | None, axis: int, what: str
) -> tuple[NDArray[np.float64], str]:
    """``(q - zp) * scale`` in float64: per tensor (one scale) or per ``axis`` (one per slice)."""
    s = np.asarray(scale, dtype=np.float64).reshape(-1)
    z = np.zeros(1) if zp is None else np.asarray(zp, dtype=np.float64).reshape(-1)
    qf = np.asarray(q, dtype=np.float64)
    if s.size == 1 and z.size == 1:
        return (qf - z[0]) * s[0], "per tensor"
    ax = axis + qf.ndim if axis < 0 else axis
    n = qf.shape[ax] if 0 <= ax < qf.ndim else -1
    if s.size == 1 and z.size == n:  # one scale, a zero point per slice
        s = np.full(n, s[0])
    if not 0 <= ax < qf.ndim or s.size != n or z.size not in (1, n):
        raise NotConstant(
            f"{what}: dequantisation scale of {s.size} values does not fit weight shape "
            f"{list(qf.shape)} on axis {axis}"
        )
    shape = [1] * qf.ndim
    shape[ax] = -1
    return (qf - z.reshape(shape)) * s.reshape(shape), f"per axis {ax}"


def input_spec(graph: Any, name: str | None = None) -> InputSpec | None:
    """The spec of the graph's one data input (``None`` when it has several), or of input ``name``."""
    from onnx import helper

    inits = {i.name for i in graph.initializer}
    data = [i for i in graph.input if i.name not in inits and (name is None or i.name == name)]
    if len(data) != 1:
        return None
    vi = data[0]
    tt = vi.type.tensor_type
    try:
        dtype = str(np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)))
    except Exception:
        dtype = f"element type {tt.elem_type}"
    shape: list[int | None] | None = None
    if tt.HasField("shape"):
        shape = [
            int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in tt.shape.dim
        ]
    layout, reason = guess_layout(shape)
    return InputSpec(vi.name, shape, dtype, layout, reason)


def guess_layout(shape: list[int | None] | None) -> tuple[Layout, str]:
    """NCHW vs NHWC from the dims: a channel count (1 or 3) in position 1 or last."""
    if shape is None or len(shape) < 3:
        return "unknown", "no image-shaped dims declared"
    first, last = shape[1], shape[-1]
    ch = (1, 3)
    if first in ch and last not in ch:
        return "NCHW", f"dim 1 is {first} (channels), last dim is {last or 'symbolic'}"
    if last in ch and first not in ch:
        return "NHWC", f"last dim is {last} (channels), dim 1 is {first or 'symbolic'}"
    if first is not None and last is not None and first != last:
        return "unknown", f"dim 1 ({first}) and last dim ({last}) are both channel-like or neither"
    return "unknown", "dims do not say where the channels are"


def node_attrs(node: Any) -> dict[str, Any]:
    """An ONNX node's attributes by name, as Python values (graph-valued ones, GRAPH and GRAPHS,
    left out: the walk reads subgraphs itself)."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute if a.type not in (5, 10)}
