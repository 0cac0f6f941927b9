"""ONNX models run with onnxruntime (optional extra ``convlens[onnx]``): activations and verification.

The conv layers come from one graph walk (:mod:`convlens.analysis.model.onnxgraph`): weights in
initializers or ``Constant`` nodes, behind ``Identity``/``Cast``/``Reshape``/``DequantizeLinear``,
inside ``If``/``Loop``/``Scan`` subgraphs, and quantised ``ConvInteger``/``QLinearConv`` (dequantised).
Every main-graph conv's input and output are added to the graph's outputs, the model runs on CPU, and
(1) the ID-vs-OOD statistics of :mod:`convlens.analysis.measure.activations` are computed from the conv outputs
(for ``ConvInteger`` the rescaled float output, for ``QLinearConv`` the dequantised output) and the
first original output (taken as the logits); (2) each ``Conv`` node is checked against
:func:`convlens.ops.correlate` in float64 on the input the node actually received (onnxruntime computes
in float32, so agreement is to float32 rounding, relative 1e-4, not 1e-12), and each ``ConvInteger``
exactly, in integers. Convs inside subgraphs are matched from their weights only: onnxruntime cannot
expose a subgraph's tensors as outputs. ``QLinearConv`` outputs are requantised and not checked.
The data must fit the model's input: fixed dims (a fixed batch size is honoured), layout and dtype are
checked first (:meth:`OnnxModel.check_data`). Models with external data files are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from convlens.analysis.model.forward import SetActivations, accumulate, batches_of, reduce_map
from convlens.analysis.model.onnxdecode import InputSpec, input_spec, load_model
from convlens.analysis.model.onnxgraph import ConvNode, read_graph, topological_order
from convlens.analysis.model.verify import compare_call, make_check
from convlens.analysis.model.weights_only import conv_identities, graph_notes, other_convs
from convlens.analysis.result import LayerCheck, LayerIdentity
from convlens.errors import ConvlensError

RTOL_FLOAT32 = 1e-4
DEFAULT_BATCH = 256
MAP_BUDGET = 256 * 2**20
"""Bytes of conv outputs one batch may hold: every running conv's output comes back from
onnxruntime at once, so a model with a symbolic batch dim runs ``MAP_BUDGET // (bytes per image)``
images at a time (at least 1, at most ``DEFAULT_BATCH``; measured on one image first). A 416 px
detector returns about 100 MB of maps per image: 256 images at once took 9.8 GB."""
_FEED_DTYPES = ("float32", "float16", "float64")


class ExtraInput:
    """A graph input besides the data (``--input NAME=VALUE``): a number (a scalar of the input's
    element type), ``zeros`` (the input's declared shape, its one symbolic dim the batch size), or a
    ``.npy`` file (its array, cast to the input's element type)."""

    def __init__(
        self, name: str, kind: str, dtype: str, shape: list[int | None], array: Any
    ) -> None:
        self.name, self.kind, self.dtype, self.shape, self.array = name, kind, dtype, shape, array

    @staticmethod
    def parse(name: str, text: str, spec: InputSpec | None) -> ExtraInput:
        dtype = spec.dtype if spec is not None else "float32"
        try:
            np.dtype(dtype)
        except TypeError:
            raise ConvlensError(
                f"--input {name}: the graph input has {dtype}; cannot feed it"
            ) from None
        shape = list(spec.shape) if spec is not None and spec.shape is not None else []
        if text == "zeros":
            if spec is None or spec.shape is None:
                raise ConvlensError(f"--input {name}=zeros: the graph does not declare its shape")
            if sum(d is None for d in shape) > 1:
                raise ConvlensError(
                    f"--input {name}=zeros: its shape {spec.describe()} has more than one "
                    "symbolic dim; give a .npy file instead"
                )
            return ExtraInput(name, "zeros", dtype, shape, None)
        if text.endswith(".npy"):
            try:
                a = np.load(text, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ConvlensError(
                    f"--input {name}={text!r}: not a readable .npy file ({exc})"
                ) from None
            fixed_ok = a.ndim == len(shape) and all(
                d is None or d == n for d, n in zip(shape, a.shape, strict=True)
            )
            if shape and not fixed_ok:
                raise ConvlensError(
                    f"--input {name}={text!r}: an array of shape {list(a.shape)}; the graph input "
                    f"is {spec.describe() if spec else 'of another shape'}"
                )
            try:
                return ExtraInput(name, "file", dtype, shape, a.astype(dtype))
            except (TypeError, ValueError) as exc:
                raise ConvlensError(
                    f"--input {name}={text!r}: cannot be read as {dtype} ({exc})"
                ) from None
        try:
            number = float(text)
        except ValueError:
            raise ConvlensError(
                f"--input {name}={text!r}: expected a number, zeros, or a .npy file"
            ) from None
        kind = np.dtype(dtype).kind
        if not np.isfinite(number) and kind not in "fc":
            raise ConvlensError(f"--input {name}={text!r}: the graph input is {dtype}, not a float")
        if kind in "iu" and number != int(number):
            raise ConvlensError(
                f"--input {name}={text!r}: the graph input is {dtype}, not a whole number"
            )
        if any(d not in (None, 1) for d in shape):
            raise ConvlensError(
                f"--input {name}={text!r}: a number fills a scalar input; this one is "
                f"{spec.describe() if spec else 'not a scalar'}"
            )
        value = np.asarray(number).astype(dtype).reshape([1] * len(shape))
        return ExtraInput(name, "number", dtype, shape, value)

    def value(self, batch: int) -> NDArray[Any]:
        """The array fed with a batch of ``batch`` items."""
        dims = [batch if d is None else d for d in self.shape]
        if self.kind == "zeros":
            return np.zeros(dims, dtype=self.dtype)
        if self.kind == "number":  # the one value in every element, a symbolic dim the batch size
            return np.full(dims, self.array.reshape(-1)[0], dtype=self.dtype)
        return np.asarray(self.array)

    def describe(self) -> str:
        what = {"zeros": "zeros, the batch size in its symbolic dim", "number": f"{self.array!r}"}
        return f"{self.name}: {what.get(self.kind, f'a .npy array {list(np.shape(self.array))}')} ({self.dtype})"


class OnnxModel:
    def __init__(self, path: str | Path, inputs: tuple[tuple[str, str], ...] = ()) -> None:
        try:
            import onnx
            import onnxruntime as ort
        except ImportError:
            raise ConvlensError(
                "running .onnx models needs the optional packages onnx and onnxruntime: pip install 'convlens[onnx]'"
            ) from None
        if not Path(path).is_file():
            raise ConvlensError(f"model file {str(path)!r} does not exist")
        self.path = str(path)
        self._per_image: dict[tuple[int, ...], int] = {}
        model = load_model(path)
        graph = read_graph(path, model)
        if not graph.convs:
            if graph.unresolved:
                raise ConvlensError(graph.not_constant_message(self.path))
            raise ConvlensError(f"{self.path!r} has no Conv nodes with weights{other_convs(graph)}")
        self.convs: list[ConvNode] = graph.convs
        given = dict(inputs)
        unknown = [n for n in given if n not in graph.inputs]
        if unknown:
            raise ConvlensError(
                f"--input {unknown[0]!r}: {self.path!r} has no graph input of that name; its "
                f"inputs are {graph.inputs}"
            )
        data_inputs = [n for n in graph.inputs if n not in given]
        if len(data_inputs) != 1:
            raise ConvlensError(
                f"{self.path!r} takes the graph inputs {graph.inputs}; the data go to one of them: "
                "give the others with --input NAME=VALUE (a number, zeros, or a .npy file)"
            )
        self.input_name = data_inputs[0]
        self.input_spec: InputSpec | None = input_spec(model.graph, self.input_name)
        self.extra = {
            n: ExtraInput.parse(n, v, input_spec(model.graph, n)) for n, v in given.items()
        }
        """Graph inputs besides the data (``--input NAME=VALUE``), fed with every batch."""
        self.pool_nodes = [
            (
                list(n.input[:1]),
                list(n.output[:1]),
                n.name or f"{n.op_type}@{i}",
                n.op_type,
                n.attribute,
            )
            for i, n in topological_order(model.graph)
            if n.op_type in ("MaxPool", "AveragePool")
        ]
        """Main-graph pooling nodes (input, output, name, op, attributes), for receptive fields."""
        self.node_order = {
            out: pos
            for pos, (_, n) in enumerate(topological_order(model.graph))
            for out in n.output
        }
        """Position of the node producing each main-graph tensor (topological order)."""
        self.model_outputs = [o.name for o in model.graph.output]
        self.logits_name: str | None = self.model_outputs[0] if self.model_outputs else None
        """The output taken as the logits (``None``: the output is not used)."""
        existing = {o.name for o in model.graph.output}
        for c in self.running:
            extra = [c.input, c.output]
            if c.op_type == "ConvInteger":
                extra += [c.integer_check["output"], c.integer_check["x_zero_point"]]
            for name in extra:
                if name and name not in existing:
                    model.graph.output.append(onnx.ValueInfoProto(name=name))
                    existing.add(name)
        self.notes: list[str] = graph_notes(graph, running=True)
        spec = self.input_spec
        self.feed_dtype = "float32"
        if spec is not None and spec.dtype in _FEED_DTYPES:
            self.feed_dtype = spec.dtype
        try:
            self.session = ort.InferenceSession(
                model.SerializeToString(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own error types for invalid graphs
            raise ConvlensError(
                f"{self.path!r}: onnxruntime cannot load the model: {str(exc).splitlines()[0]}"
            ) from None
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def running(self) -> list[ConvNode]:
        """The conv layers of the main graph (the ones whose tensors onnxruntime can return)."""
        return [c for c in self.convs if c.subgraph is None]

    @property
    def squeeze_channel(self) -> bool:
        """The data input has no channel axis (``[N, L]`` for a 1-D model, ``[N, H, W]`` for a 2-D
        one, layout not stated) and the first conv reads one channel: the data's one channel axis
        is dropped before feeding."""
        spec, first = self.input_spec, self.convs[0]
        conv_c = int(first.weight.shape[1]) * int(first.attrs.get("group", 1))
        return (
            spec is not None
            and spec.shape is not None
            and len(spec.shape) == first.weight.ndim - 1
            and conv_c == 1
            and spec.layout == "unknown"
        )

    @property
    def batch(self) -> int | None:
        """The model's fixed batch size, or ``None`` when the batch dim is symbolic."""
        return None if self.input_spec is None else self.input_spec.batch

    def check_data(self, x: NDArray[Any], what: str, data_layout: str = "NCHW") -> None:
        """Refuse data that does not fit the model's input (rank, fixed dims, layout, dtype) with one
        clear line, instead of letting onnxruntime misread it or fail deep inside."""
        spec = self.input_spec
        if spec is None:
            return
        if spec.dtype not in _FEED_DTYPES:
            raise ConvlensError(
                f"{self.path!r}: model {spec.describe()}; convlens feeds float images "
                f"({', '.join(_FEED_DTYPES)}), so it cannot run this model on {what}"
            )
        shape = list(np.shape(x))
        data_dims = "[N, " + ", ".join(map(str, shape[1:])) + "]"
        if self.squeeze_channel and len(shape) >= 2 and shape[1] == 1:
            shape = shape[:1] + shape[2:]
        if spec.layout not in ("unknown", data_layout):
            raise ConvlensError(
                f"{self.path!r}: model {spec.describe()}, but the data {what} are {data_layout} "
                f"{data_dims}; convlens does not transpose images to fit a model"
            )
        if spec.shape is None:
            return
        fixed = [(i, d) for i, d in enumerate(spec.shape) if i > 0 and d is not None]
        if len(spec.shape) != len(shape) or any(shape[i] != d for i, d in fixed):
            raise ConvlensError(
                f"{self.path!r}: model {spec.describe()} does not fit the data {what} "
                f"({data_layout} {data_dims})"
            )

    def batches(self, x: NDArray[Any]) -> tuple[Iterator[torch.Tensor], int]:
        """Batches of ``x`` the model accepts (its fixed batch size, else ``DEFAULT_BATCH``), and how
        many images at the end were left out because they do not fill a fixed-size batch."""
        b = self.batch or self.symbolic_batch(x)
        n = len(x) if self.batch is None else len(x) // b * b
        if n == 0:
            raise ConvlensError(
                f"{self.path!r} takes batches of exactly {b} images; the data hold only {len(x)}"
            )
        return iter(batches_of(x[:n], b)), len(x) - n

    def symbolic_batch(self, x: NDArray[Any]) -> int:
        """Images per batch for a symbolic batch dim: as many as :data:`MAP_BUDGET` holds of the
        conv outputs of one image of ``x`` (measured once per image shape)."""
        if len(x) == 0:
            return DEFAULT_BATCH
        key = tuple(np.shape(x)[1:])
        if key not in self._per_image:
            res = self.run(np.asarray(x[:1]))
            self._per_image[key] = max(1, sum(int(np.asarray(v).nbytes) for v in res.values()))
        return int(min(DEFAULT_BATCH, max(1, MAP_BUDGET // self._per_image[key])))

    def run(self, x: NDArray[Any]) -> dict[str, NDArray[Any]]:
        x = np.asarray(x)
        if self.squeeze_channel and x.ndim >= 2 and x.shape[1] == 1:
            x = x[:, 0]
        feed = {self.input_name: np.ascontiguousarray(x, dtype=self.feed_dtype)}
        feed.update({n: e.value(len(x)) for n, e in self.extra.items()})
        try:
            values = self.session.run(None, feed)
        except Exception as exc:  # e.g. the data's shape does not fit the model's input
            extra = "".join(
                f", {n} {list(a.shape)}" for n, a in feed.items() if n != self.input_name
            )
            raise ConvlensError(
                f"{self.path!r}: onnxruntime failed on input of shape {list(np.shape(x))}{extra}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        return dict(zip(self.output_names, values, strict=True))

    def conv_maps(self, x: NDArray[Any]) -> dict[str, NDArray[np.float32]]:
        """Every running conv node's output on the batch ``x`` (float; quantised outputs rescaled)."""
        res = self.run(x)
        return {c.name: self._float_output(c, res) for c in self.running}

    def _float_output(self, c: ConvNode, res: dict[str, NDArray[Any]]) -> NDArray[np.float32]:
        y = res[c.output]
        if c.output_affine is not None:
            scale, zp = c.output_affine
            return ((y.astype(np.float64) - zp) * scale).astype(np.float32)
        return np.asarray(y, dtype=np.float32)

    def collect(self, batches: Iterable[NDArray[Any] | torch.Tensor], name: str) -> SetActivations:
        """One pass over ``batches``. Each batch's conv outputs are reduced to per-image figures as
        soon as it has run (only those are held); small fixed-size batches (a model that takes one
        image at a time) are accumulated together, up to ``DEFAULT_BATCH`` images at a time, so the
        bookkeeping is paid per chunk, not per image."""
        out = SetActivations(name)
        pending: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = []
        pending_logits: list[NDArray[np.float32]] = []
        sizes: list[int] = []

        def flush() -> None:
            if not pending:
                return
            maps = {
                c.name: (
                    torch.cat([p[c.name][0] for p in pending]),
                    torch.cat([p[c.name][1] for p in pending]),
                )
                for c in self.running
            }
            logits = None
            if pending_logits:
                arr = np.concatenate(pending_logits)
                logits = torch.from_numpy(arr) if arr.ndim == 2 else None
            accumulate(out, logits, maps, n=sum(sizes))
            sizes.clear()
            pending.clear()
            pending_logits.clear()

        held = 0
        for xb in batches:  # each batch's maps reduced at once: only (B, C) figures are held
            res = self.run(np.asarray(xb))
            pending.append(
                {
                    c.name: reduce_map(torch.from_numpy(self._float_output(c, res)))
                    for c in self.running
                }
            )
            if self.logits_name is not None:
                pending_logits.append(np.asarray(res[self.logits_name], np.float32))
            del res
            sizes.append(len(xb))
            held += len(xb)
            if held >= DEFAULT_BATCH:
                flush()
                held = 0
        flush()
        return out

    def identities(self) -> list[LayerIdentity]:
        """Every conv layer with constant weights, in graph (topological, i.e. execution) order;
        layers inside a subgraph at their parent node's position."""
        return conv_identities(self.convs)

    def verify(self, x: NDArray[Any]) -> tuple[list[LayerCheck], list[str]]:
        """Each main-graph conv vs ``ops.correlate`` on the input it received; and the ones skipped."""
        res = self.run(x)
        checks: list[LayerCheck] = []
        skipped: list[str] = []  # subgraph convs: said once in ``notes``
        for c in self.running:
            a = c.attrs
            if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                skipped.append(f"{c.name}: auto_pad {a['auto_pad']!r} not checked")
                continue
            if c.op_type == "QLinearConv":
                skipped.append(f"{c.name}: QLinearConv output is requantised, not checked")
                continue
            w = c.weight
            nd = w.ndim - 2
            pads = a.get("pads", [0] * (2 * nd))
            kwargs: dict[str, Any] = {
                "stride": tuple(a.get("strides", [1] * nd)),
                "dilation": tuple(a.get("dilations", [1] * nd)),
                "groups": int(a.get("group", 1)),
                "padding": tuple((int(pads[i]), int(pads[i + nd])) for i in range(nd)),
            }
            if c.op_type == "ConvInteger":  # exact: (x - x_zp) * (w - w_zp) summed in integers
                zp_name = c.integer_check["x_zero_point"]
                zp = 0.0 if not zp_name else float(np.asarray(res[zp_name]).reshape(-1)[0])
                inp = res[c.input].astype(np.float64) - zp
                w = c.integer_check["weight"]
                y = res[c.integer_check["output"]].astype(np.float64)
                kind = "onnx ConvInteger (onnxruntime, int32, exact)"
                backend, tol = "onnxruntime int32 (exact)", 0.0
            else:
                kwargs["bias"] = c.bias
                inp = res[c.input].astype(np.float64)
                y = res[c.output].astype(np.float64)
                kind = f"{c.module_type} (onnxruntime, float32)"
                backend, tol = "onnxruntime float32", RTOL_FLOAT32
            figures = compare_call(inp, w, y, kwargs)
            checks.append(
                make_check(
                    c.name,
                    kind,
                    list(w.shape),
                    list(inp.shape),
                    [figures],
                    backend=backend,
                    tolerance=tol,
                )
            )
        return checks, skipped
