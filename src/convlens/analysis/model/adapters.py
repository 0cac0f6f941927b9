"""Model adapters: one interface over every kind of model a user brings.

- :class:`TorchModel`: a ``torch.nn.Module`` (from ``--factory``), optionally run through a pipeline
  callable around it; execution order from forward hooks;
- :class:`OnnxModel`: an ONNX graph run with onnxruntime (:mod:`convlens.analysis.model.onnxrun`);
  execution order = the graph's topological order;
- :class:`~convlens.analysis.model.weights_only.WeightsOnly` (torch-free, in its own module with
  the interface :class:`ModelAdapter`): tensors without an architecture (safetensors, a state dict,
  or an ONNX graph read without running it); order from the file, the stem-like layer first
  (:data:`convlens.analysis.model.layers.STEM_RULE`), stated in ``notes``.

Every adapter gives :meth:`~ModelAdapter.layers` (identities with geometry: dims, kernel shape,
stride, padding, dilation, groups, execution index) and :meth:`~ModelAdapter.weights`; the runnable
ones (``runnable``) also say what input they expect (:meth:`~ModelAdapter.expectation`, for
:mod:`convlens.data.fit`), run once on example data to fix the execution order and record each conv's
input/output shape (:meth:`~ModelAdapter.trace`, for receptive fields), collect ID/OOD activations,
probe feature maps, and verify their conv calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from convlens.analysis.model import forward, verify
from convlens.analysis.model.layers import (
    PoolStep,
    conv_modules,
    identify_modules,
    run_model,
    stem_index,
)
from convlens.analysis.model.weights_only import ModelAdapter, Shapes
from convlens.analysis.result import LayerCheck, LayerIdentity
from convlens.data.fit import InputExpectation
from convlens.errors import ConvlensError

POOL_TYPES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


def pool_step(name: str, m: Any, out: torch.Tensor) -> PoolStep:
    """The geometry of one torch pooling module as it ran (ints broadcast to its spatial rank)."""
    nd = out.ndim - 2

    def per_axis(v: Any) -> tuple[int, ...]:
        vals = tuple(int(a) for a in v) if isinstance(v, tuple | list) else (int(v),) * nd
        return vals if len(vals) == nd else (vals[0],) * nd

    return PoolStep(
        name,
        per_axis(m.kernel_size),
        per_axis(m.stride if m.stride is not None else m.kernel_size),
        per_axis(m.padding),
        per_axis(getattr(m, "dilation", 1)),
        tuple(int(v) for v in out.shape[2:]),
    )


def _pools_before(events: list[tuple[str, Any]]) -> dict[str, list[PoolStep]]:
    """Per conv: the pooling layers that ran after the previous conv and before it."""
    out: dict[str, list[PoolStep]] = {}
    pending: list[PoolStep] = []
    for kind, item in events:
        if kind == "pool":
            pending.append(item)
        else:
            if pending:
                out[item] = pending
            pending = []
    return out


# ----------------------------------------------------------------------------- outputs
ONE_COLUMN = (
    "{which} has one column (a single score per item, e.g. a sigmoid probability): max-softmax "
    "and energy are not defined for it, so the output-level baselines are not computed"
)


def pick_output(out: Any, key: str | None, what: str) -> tuple[Any, str]:
    """The head of a model output used as logits: ``out`` itself (a tensor), element ``key`` (an
    index) of a tuple/list, entry ``key`` of a dict (or its ``key``-th value); the first by default.
    Returns it and a text saying which; a missing ``key`` is a :class:`ConvlensError`."""
    if isinstance(out, torch.Tensor) or out is None:
        if key not in (None, "0"):
            raise ConvlensError(f"{what} returns one tensor; it has no output {key!r}")
        return out, "the output tensor"
    if isinstance(out, Mapping):
        keys = list(out)
        if key is None:
            if not keys:
                return None, "an empty dict"
            return out[keys[0]], f"entry {keys[0]!r} of a dict with keys {keys}"
        if key in out:
            return out[key], f"entry {key!r} of a dict with keys {keys}"
        if key.isdigit() and int(key) < len(keys):
            return out[
                keys[int(key)]
            ], f"entry {keys[int(key)]!r} (#{key}) of a dict with keys {keys}"
        raise ConvlensError(f"{what} returns a dict with keys {keys}; it has no output {key!r}")
    if isinstance(out, tuple | list):
        if key is None:
            return (out[0] if out else None), f"element 0 of a {type(out).__name__} of {len(out)}"
        if not key.isdigit() or int(key) >= len(out):
            raise ConvlensError(
                f"{what} returns a {type(out).__name__} of {len(out)} outputs; output {key!r} "
                f"must be an index 0..{len(out) - 1}"
            )
        return out[int(key)], f"element {key} of a {type(out).__name__} of {len(out)}"
    return out, f"the output ({type(out).__name__})"


# ----------------------------------------------------------------------------- torch
class TorchModel(ModelAdapter):
    """A torch module (and optionally a pipeline callable that runs it); hooks on its convs."""

    kind = "torch"
    runnable = True

    def __init__(self, module: nn.Module, call: Any = None, output: str | None = None) -> None:
        super().__init__()
        self.module = module.eval()
        self.call = call
        self.output = output
        self.modules = identify_modules(module)

    def layers(self) -> list[LayerIdentity]:
        return [i for i, _ in self.modules]

    def weights(self) -> dict[str, NDArray[Any]]:
        return {k: v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}

    def expectation(self) -> InputExpectation:
        """Channels and conv rank of the layer that reads the input, chosen before the model has
        run by the weights-only rule (:data:`~convlens.analysis.model.layers.STEM_RULE`: fewest input
        channels, depthwise-looking layers aside, then definition order), stated in ``source``."""
        convs = conv_modules(self.module)
        if not convs:
            raise ConvlensError("the model has no Conv1d/2d/3d layers to run on data")
        shapes = [(n, [int(v) for v in m.weight.shape]) for n, m in convs]  # type: ignore[union-attr]
        name, first = convs[stem_index(shapes)]
        conv: Any = first
        c = int(conv.in_channels)
        return InputExpectation(
            dims=int(conv.weight.ndim) - 2,
            channels=c,
            source=f"the stem-like conv layer {name!r} reads {c} channel(s)",
            kernel=tuple(int(v) for v in conv.weight.shape[2:]),
        )

    def trace(self, x: NDArray[Any]) -> None:
        x = x[:2]
        events: list[tuple[str, Any]] = []  # ("conv", name) / ("pool", PoolStep), firing order
        shapes: Shapes = {}
        handles = []
        for name, m in conv_modules(self.module):

            def hook(_m: nn.Module, inp: Any, out: Any, _n: str = name) -> None:
                if (
                    _n not in shapes
                    and inp
                    and isinstance(inp[0], torch.Tensor)
                    and isinstance(out, torch.Tensor)
                    and inp[0].ndim >= 3  # (B, C, *spatial) in and out: a feature map; a conv
                    and out.ndim >= 3  # subclass that reshapes (B, L) -> (B, L') is no stage
                ):
                    shapes[_n] = (list(inp[0].shape), list(out.shape))
                    events.append(("conv", _n))

            handles.append(m.register_forward_hook(hook))
        for name, m in self.module.named_modules():
            if isinstance(m, POOL_TYPES):

                def pool_hook(m: nn.Module, _i: Any, out: Any, _n: str = name) -> None:
                    if isinstance(out, torch.Tensor):
                        events.append(("pool", pool_step(_n, m, out)))

                handles.append(m.register_forward_hook(pool_hook))
        try:
            self.modules = identify_modules(self.module, torch.from_numpy(x), call=self.call)
        finally:
            for h in handles:
                h.remove()
        self.shapes = shapes
        self.pools = _pools_before(events)
        with torch.no_grad():
            out = run_model(self.call or self.module, torch.from_numpy(x), "the data")
        head, which = pick_output(out, self.output, "the model")
        self._check_head(head, which)

    def _check_head(self, head: Any, which: str) -> None:
        if isinstance(head, torch.Tensor) and head.ndim == 2 and head.shape[1] == 1:
            self._note(ONE_COLUMN.format(which=which))
            return
        if isinstance(head, torch.Tensor) and head.ndim == 2:
            if which != "the output tensor":
                self._note(f"model output: {which} used as the logits")
            return
        shape = tuple(getattr(head, "shape", ()))
        if self.output is not None:
            raise ConvlensError(
                f"output {self.output!r} of the model is {type(head).__name__} {shape}, not a "
                "(batch, classes) tensor of logits"
            )
        self._note(
            f"model output ({which}: {type(head).__name__} {shape}) is not a (batch, classes) "
            "tensor: output-level baselines (max-softmax, energy) not computed"
        )

    def _pick(self, out: Any) -> Any:
        head, _ = pick_output(out, self.output, "the model")
        two_d = isinstance(head, torch.Tensor) and head.ndim == 2 and head.shape[1] >= 2
        return head if two_d else None

    def activations(self, x: Any, name: str) -> forward.SetActivations:
        """``x``: an array or a torch ``Dataset`` (a streamed folder); sharded across ranks under
        torchrun (:func:`convlens.analysis.model.shard.collect_sharded`), merged on rank 0."""
        from convlens.analysis.model.shard import collect_sharded

        out = collect_sharded(self.module, x, name, call=self.call, pick=self._pick)
        if out.not_maps:
            what = ", ".join(f"{k} ({v})" for k, v in sorted(out.not_maps.items()))
            self._note(
                "conv layer(s) whose forward returns no (batch, channels, ...) feature map, left "
                f"out of the activation statistics and receptive fields: {what}"
            )
        return out

    def feature_maps(self, x: NDArray[Any]) -> dict[str, NDArray[np.float32]]:
        maps: dict[str, NDArray[np.float32]] = {}
        handles = []
        for name, m in conv_modules(self.module):

            def hook(_m: nn.Module, _i: Any, out: Any, _n: str = name) -> None:
                if _n not in maps and isinstance(out, torch.Tensor):
                    maps[_n] = out.detach().float().cpu().numpy()

            handles.append(m.register_forward_hook(hook))
        try:
            with torch.no_grad():
                run_model(self.call or self.module, torch.from_numpy(x), "the probes")
        finally:
            for h in handles:
                h.remove()
        return maps

    def verify(
        self, x: NDArray[Any] | None, seed: int, skip: set[str]
    ) -> tuple[list[LayerCheck], list[str]]:
        checks = [
            verify.check_layer(i.name, m, seed=seed) for i, m in self.modules if i.name not in skip
        ]
        return checks, []


# ----------------------------------------------------------------------------- onnx
_AXES = {1: "L", 2: "H, W", 3: "D, H, W"}


class OnnxModel(ModelAdapter):
    """An ONNX graph run with onnxruntime (:class:`convlens.analysis.model.onnxrun.OnnxModel`)."""

    kind = "onnx"
    runnable = True

    def __init__(
        self, path: str | Path, output: str | None = None, inputs: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__()
        from convlens.analysis.model.onnxrun import OnnxModel as Runner

        self.runner = Runner(path, inputs)
        self.notes.extend(self.runner.notes)
        if self.runner.extra:
            self.notes.append(
                f"the data go to graph input {self.runner.input_name!r}; the other inputs are fed "
                "with every batch as given (--input): "
                + "; ".join(e.describe() for e in self.runner.extra.values())
            )
        self.output = output
        outs = self.runner.model_outputs
        if output is not None:
            if output in outs:
                name = output
            elif output.isdigit() and int(output) < len(outs):
                name = outs[int(output)]
            else:
                raise ConvlensError(
                    f"{str(path)!r} has outputs {outs}; no output {output!r} (a name or an index)"
                )
            self.runner.logits_name = name

    def layers(self) -> list[LayerIdentity]:
        return self.runner.identities()

    def weights(self) -> dict[str, NDArray[Any]]:
        return {c.name: c.analysed_weight for c in self.runner.convs}

    def expectation(self) -> InputExpectation:
        spec = self.runner.input_spec
        first = self.runner.convs[0]
        kernel = tuple(int(v) for v in first.weight.shape[2:])
        dims = first.weight.ndim - 2
        conv_c = int(first.weight.shape[1]) * int(first.attrs.get("group", 1))
        if self.runner.squeeze_channel:  # no channel axis ([N, L], [N, H, W]): the one is dropped
            assert spec is not None and spec.shape is not None
            shape = [spec.shape[0], 1, *spec.shape[1:]]
            return InputExpectation(
                kernel=kernel,
                dims=dims,
                channels=1,
                spatial=tuple(shape[2:]),
                layout="NCHW",
                layout_reason="the graph input has no channel axis: one channel, fed without it",
                source=f"ONNX {spec.describe()}",
                fixed_shape=tuple(shape),
            )
        if spec is not None and spec.shape is not None and len(spec.shape) != dims + 2:
            dims_text = "[" + ", ".join("N" if d is None else str(d) for d in spec.shape) + "]"
            raise ConvlensError(
                f"the graph input {spec.name!r} ({spec.dtype} {dims_text}) does not fit {dims}-D "
                f"data (N, C, {_AXES.get(dims, '...')}): the model reaches "
                f"its first conv {first.name!r} through other ops, so --data cannot feed it"
            )
        if spec is None or spec.shape is None or len(spec.shape) != dims + 2:
            return InputExpectation(
                kernel=kernel,
                dims=dims,
                channels=conv_c,
                layout="unknown",
                layout_reason="the graph declares no input dims",
                source=f"the first conv node {first.name!r} reads {conv_c} channel(s)",
            )
        shape = spec.shape
        layout, reason = spec.layout, spec.layout_reason
        if layout == "unknown":  # the first conv's channel count in exactly one place decides
            at_1, at_end = shape[1] == conv_c, shape[-1] == conv_c
            if at_1 != at_end:
                layout = "NCHW" if at_1 else "NHWC"
                where = "dim 1" if at_1 else "the last dim"
                reason = f"{where} is {conv_c}, the channels the first conv node reads"
        last = layout == "NHWC"
        c = shape[-1] if last else shape[1]
        spatial = tuple(shape[1:-1] if last else shape[2:])
        return InputExpectation(
            kernel=kernel,
            dims=dims,
            channels=c if c is not None else conv_c,
            spatial=spatial,
            layout=layout,
            layout_reason=reason,
            source=f"ONNX {spec.describe()}",
            fixed_shape=tuple(shape),
        )

    def trace(self, x: NDArray[Any]) -> None:
        if self.runner.batch is not None:
            self._note(
                f"the ONNX model takes a fixed batch of {self.runner.batch}: the data run in "
                "batches of that size; items that do not fill the last batch are left out"
            )
        b = self.runner.batch or min(len(x), 8)
        res = self.runner.run(x[:b])
        self.shapes = {
            c.name: (list(res[c.input].shape), list(res[c.output].shape))
            for c in self.runner.running
        }
        spec = self.runner.input_spec
        last = spec is not None and spec.layout == "NHWC"
        self.pools = _pools_before(self._pool_events(list(x.shape[1:-1] if last else x.shape[2:])))
        name = self.runner.logits_name
        if name is None:
            return
        head = np.asarray(res[name])
        if head.ndim == 2 and head.shape[1] == 1:
            self._note(ONE_COLUMN.format(which=f"model output {name!r}"))
            self.runner.logits_name = None
            return
        if head.ndim == 2:
            if name != self.runner.model_outputs[0]:
                self._note(f"model output {name!r} used as the logits")
            return
        if self.output is not None:
            raise ConvlensError(
                f"output {self.output!r} of the model has shape {list(head.shape)}, not "
                "(batch, classes) logits"
            )
        self._note(
            f"model output {name!r} has shape {list(head.shape)}, not (batch, classes): "
            "output-level baselines (max-softmax, energy) not computed"
        )
        self.runner.logits_name = None

    def _pool_events(self, spatial: list[int]) -> list[tuple[str, Any]]:
        """Main-graph convs and ``MaxPool``/``AveragePool`` nodes in graph order; each pool's
        output size computed from its attributes and the size before it (``auto_pad`` pools are
        left to the size-drop rule)."""
        from onnx import helper

        r = self.runner
        order = r.node_order
        items: list[tuple[int, str, Any]] = []
        for c in r.running:
            out = c.integer_check.get("output", c.output) if c.integer_check else c.output
            items.append((order.get(out, -1), "conv", c.name))
        for _inp, outs, name, _op, attrs in r.pool_nodes:
            items.append((order.get(outs[0], -1), "pool", (name, attrs)))
        events: list[tuple[str, Any]] = []
        prev = spatial
        for _, kind, item in sorted(items, key=lambda t: t[0]):
            if kind == "conv":
                events.append(("conv", item))
                prev = [int(v) for v in self.shapes[item][1][2:]]
                continue
            name, attrs = item
            a = {at.name: helper.get_attribute_value(at) for at in attrs}
            nd = len(a.get("kernel_shape", []))
            if nd != len(prev) or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                continue
            k = [int(v) for v in a["kernel_shape"]]
            st = [int(v) for v in a.get("strides", [1] * nd)]
            pads = [int(v) for v in a.get("pads", [0] * 2 * nd)]
            dil = [int(v) for v in a.get("dilations", [1] * nd)]
            ceil = bool(a.get("ceil_mode", 0))
            outs = []
            for i in range(nd):
                span = (prev[i] + pads[i] + pads[i + nd] - dil[i] * (k[i] - 1) - 1) / st[i]
                outs.append(int(np.ceil(span) if ceil else np.floor(span)) + 1)
            step = PoolStep(name, tuple(k), tuple(st), tuple(pads[:nd]), tuple(dil), tuple(outs))
            events.append(("pool", step))
            prev = outs
        return events

    def activations(self, x: NDArray[Any], name: str) -> forward.SetActivations:
        batches, left_out = self.runner.batches(x)
        if left_out:
            self._note(
                f"{name}: last {left_out} item(s) left out (the model's fixed batch is "
                f"{self.runner.batch})"
            )
        out: forward.SetActivations = self.runner.collect(batches, name)
        return out

    def feature_maps(self, x: NDArray[Any]) -> dict[str, NDArray[np.float32]]:
        batches, _ = self.runner.batches(x)
        parts: dict[str, list[NDArray[np.float32]]] = {}
        for xb in batches:
            res = self.runner.run(np.asarray(xb))
            for c in self.runner.running:
                parts.setdefault(c.name, []).append(self.runner._float_output(c, res))
        return {k: np.concatenate(v) for k, v in parts.items()}

    def verify(
        self, x: NDArray[Any] | None, seed: int, skip: set[str]
    ) -> tuple[list[LayerCheck], list[str]]:
        if x is None:
            return [], []
        checks, skipped = self.runner.verify(x[: self.runner.batch or 8])
        return [c for c in checks if c.layer not in skip], skipped
