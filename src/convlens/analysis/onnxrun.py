"""ONNX models run with onnxruntime (optional extra ``convlens[onnx]``): activations and verification.

Every ``Conv`` node's input and output are added to the graph's outputs, the model runs on CPU, and
(1) the ID-vs-OOD statistics of :mod:`convlens.analysis.activations` are computed from the Conv outputs
and the first original output (taken as the logits); (2) each Conv node is checked against
:func:`convlens.ops.correlate` in float64 on the input the node actually received. onnxruntime computes
in float32, so agreement is to float32 rounding (relative 1e-4), not 1e-12.
Models with external data files are refused (see :mod:`convlens.analysis.loading`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from convlens.analysis.activations import SetActivations, accumulate, reduce_map
from convlens.analysis.result import LayerCheck, LayerIdentity
from convlens.errors import ConvlensError
from convlens.ops import convolve, correlate

RTOL_FLOAT32 = 1e-4


class OnnxModel:
    def __init__(self, path: str | Path) -> None:
        try:
            import onnx
            import onnxruntime as ort
        except ImportError:
            raise ConvlensError(
                "running .onnx models needs the optional packages onnx and onnxruntime: pip install 'convlens[onnx]'"
            ) from None
        from convlens.analysis.loading import load_weights, onnx_tensor

        load_weights(path)  # validates the file and refuses external data
        model = onnx.load(str(path), load_external_data=False)
        inits = {i.name: i for i in model.graph.initializer}
        self.convs: list[dict[str, Any]] = []
        existing = {o.name for o in model.graph.output}
        self.logits_name = model.graph.output[0].name
        for idx, node in enumerate(model.graph.node):
            if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
                continue
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            weight = onnx_tensor(inits[node.input[1]], path).astype(np.float64)
            if weight.ndim not in (3, 4, 5):
                raise ConvlensError(
                    f"{str(path)!r}: Conv node {node.name or idx!r} has a weight of shape "
                    f"{list(weight.shape)}; expected (O, C/groups, *kernel) with 1-3 spatial axes"
                )
            has_bias = len(node.input) > 2 and node.input[2] in inits
            self.convs.append(
                {
                    "name": node.name or f"conv{idx}",
                    "input": node.input[0],
                    "output": node.output[0],
                    "weight": weight,
                    "bias": onnx_tensor(inits[node.input[2]], path).astype(np.float64)
                    if has_bias
                    else None,
                    "attrs": attrs,
                }
            )
            for name in (node.input[0], node.output[0]):
                if name not in existing:
                    model.graph.output.append(onnx.ValueInfoProto(name=name))
                    existing.add(name)
        if not self.convs:
            raise ConvlensError(f"{str(path)!r} has no Conv nodes with weights")
        inputs = [i.name for i in model.graph.input if i.name not in inits]
        if len(inputs) != 1:
            raise ConvlensError(f"{str(path)!r}: expected one graph input, found {inputs}")
        self.input_name = inputs[0]
        self.path = str(path)
        try:
            self.session = ort.InferenceSession(
                model.SerializeToString(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own error types for invalid graphs
            raise ConvlensError(
                f"{str(path)!r}: onnxruntime cannot load the model: {str(exc).splitlines()[0]}"
            ) from None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, x: NDArray[Any]) -> dict[str, NDArray[Any]]:
        try:
            values = self.session.run(
                None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
            )
        except Exception as exc:  # e.g. the data's shape does not fit the model's input
            raise ConvlensError(
                f"{self.path!r}: onnxruntime failed on input of shape {list(np.shape(x))}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        return dict(zip(self.output_names, values, strict=True))

    def collect(self, batches: Iterable[NDArray[Any] | torch.Tensor], name: str) -> SetActivations:
        out = SetActivations(name)
        for xb in batches:
            res = self.run(np.asarray(xb))
            maps = {c["name"]: reduce_map(torch.from_numpy(res[c["output"]])) for c in self.convs}
            accumulate(out, torch.from_numpy(res[self.logits_name]), maps)
        return out

    def identities(self) -> list[LayerIdentity]:
        """The Conv nodes with weights, in graph (topological, i.e. execution) order."""
        out = []
        for i, c in enumerate(self.convs):
            a, w = c["attrs"], c["weight"]
            nd = w.ndim - 2
            pads = [int(v) for v in a.get("pads", [0] * (2 * nd))]
            auto_pad = a.get("auto_pad", b"NOTSET")
            auto = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
            groups = int(a.get("group", 1))
            out.append(
                LayerIdentity(
                    name=c["name"],
                    index=i,
                    order="execution",
                    dims=nd,
                    weight_shape=list(w.shape),
                    in_channels=int(w.shape[1]) * groups,
                    out_channels=int(w.shape[0]),
                    kernel_size=[int(v) for v in w.shape[2:]],
                    stride=[int(v) for v in a.get("strides", [1] * nd)],
                    padding=pads if auto == "NOTSET" else auto,
                    dilation=[int(v) for v in a.get("dilations", [1] * nd)],
                    groups=groups,
                    padding_mode="zeros",
                    module_type="onnx Conv",
                )
            )
        return out

    def verify(self, x: NDArray[Any]) -> tuple[list[LayerCheck], list[str]]:
        """Each Conv node vs ``ops.correlate`` on the input it received; and the nodes skipped."""
        res = self.run(x)
        checks: list[LayerCheck] = []
        skipped: list[str] = []
        for c in self.convs:
            a = c["attrs"]
            if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                skipped.append(f"{c['name']}: auto_pad {a['auto_pad']!r} not checked")
                continue
            inp = res[c["input"]].astype(np.float64)
            w = c["weight"]
            nd = w.ndim - 2
            pads = a.get("pads", [0] * (2 * nd))
            kwargs: dict[str, Any] = {
                "bias": c["bias"],
                "stride": tuple(a.get("strides", [1] * nd)),
                "dilation": tuple(a.get("dilations", [1] * nd)),
                "groups": int(a.get("group", 1)),
                "padding": tuple((int(pads[i]), int(pads[i + nd])) for i in range(nd)),
            }
            y = res[c["output"]].astype(np.float64)
            d_corr = float(np.max(np.abs(correlate(inp, w, **kwargs) - y)))
            d_conv = float(np.max(np.abs(convolve(inp, w, **kwargs) - y)))
            scale = float(np.max(np.abs(y))) or 1.0
            checks.append(
                LayerCheck(
                    layer=c["name"],
                    kind="onnx Conv (onnxruntime, float32)",
                    weight_shape=list(w.shape),
                    input_shape=list(inp.shape),
                    max_abs_diff_correlate=d_corr,
                    max_abs_diff_convolve=d_conv,
                    output_scale=scale,
                    is_cross_correlation=d_corr <= RTOL_FLOAT32 * max(scale, 1.0),
                )
            )
        return checks, skipped
