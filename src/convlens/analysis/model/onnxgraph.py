"""One walk over an ONNX graph that finds every conv layer's weights, as ONNX files are found in the wild.

Used by both the weights-only reader (:func:`convlens.analysis.model.loading.load_weights`) and the runner
(:class:`convlens.analysis.model.onnxrun.OnnxModel`). Nothing from the file is executed: weights are
decoded from tensors, never computed by running the model.

- **Conv ops**: ``Conv``, ``ConvInteger`` and ``QLinearConv``. Quantised weights are dequantised to
  float (``(w - w_zero_point) * w_scale``, per tensor or per output channel) and the layer is marked
  (``module_type`` "onnx QLinearConv (dequantised)").
- **Where a weight may come from**: an initializer, a ``Constant`` node (``value``, ``sparse_value``,
  ``value_float(s)``, ``value_int(s)``), and through ``Identity``, ``Cast``, ``Reshape`` (constant
  shape) and ``DequantizeLinear`` (per tensor or per axis) of such a constant; at most
  ``MAX_PRODUCER_CHAIN`` steps.
- **Subgraphs**: the bodies of ``If`` (``then_branch``/``else_branch``), ``Loop`` and ``Scan``
  (``body``) are walked recursively (at most ``MAX_SUBGRAPH_DEPTH`` deep); a layer there is named by
  where it sits (``If_0/then/conv1``) and ordered at its parent node's position in the main graph.
  A subgraph sees the names of the graphs around it.
- **The graph input**: name, dims (``None`` for symbolic), dtype and a stated layout guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.model.onnxdecode import (
    FLOAT_TYPES,
    InputSpec,
    NotConstant,
    decode_sparse,
    decode_tensor,
    dequantise,
    dynamic_quantize_linear,
    input_spec,
    load_model,
    node_attrs,
)
from convlens.analysis.model.spacetodepth import SpaceToDepth, deinterleave, find
from convlens.errors import ConvlensError

MAX_SUBGRAPH_DEPTH = 16
"""How deeply nested ``If``/``Loop``/``Scan`` subgraphs are walked for conv layers."""
MAX_PRODUCER_CHAIN = 32
"""Most nodes (``Identity``, ``Cast``, ``Reshape``, ``DequantizeLinear``, ...) followed back from a
conv's weight to the constant it is computed from."""
UNRESOLVED_SHOWN = 5
"""How many conv nodes with non-constant weights an error message names."""

CONV_OPS = ("Conv", "ConvInteger", "QLinearConv")
OTHER_CONV_OPS = ("ConvTranspose", "DeformConv", "QLinearConvTranspose")
"""Conv-like ops convlens does not analyse: counted and named in a note, never silently dropped."""
_SUBGRAPH_ATTRS = {"then_branch": "then", "else_branch": "else", "body": "body"}
_PASS_THROUGH = ("Identity", "Cast", "Reshape", "DequantizeLinear", "Squeeze", "Unsqueeze")


@dataclass
class ConvNode:
    """One conv layer found in the graph, with its weights decoded to float64."""

    name: str
    op_type: str
    weight: NDArray[np.float64]
    bias: NDArray[np.float64] | None
    attrs: dict[str, Any]
    input: str
    output: str
    """The tensor whose values are the layer's float output (for ``ConvInteger``: the end of the
    ``Cast``/``Mul``/``Add`` chain that rescales it, when there is one)."""
    subgraph: str | None = None
    """``None`` for the main graph, else where it sits (``If_0/then``)."""
    quantised: str | None = None
    """How the weights were dequantised, or ``None`` for float weights."""
    output_affine: tuple[float, float] | None = None
    """``(scale, zero_point)`` turning a quantised output (``QLinearConv``) into float."""
    integer_check: dict[str, Any] = field(default_factory=dict)
    """For ``ConvInteger``: the integer weight and the runtime zero-point name, to check exactly."""
    space_to_depth: SpaceToDepth | None = None
    """The pixel phases of a space-to-depth stem reading the graph input (:mod:`.spacetodepth`)."""

    @property
    def analysed_weight(self) -> NDArray[np.float64]:
        """The kernels the analysis matches: de-interleaved for a space-to-depth stem."""
        if self.space_to_depth is None:
            return self.weight
        return deinterleave(self.weight, self.space_to_depth)

    @property
    def module_type(self) -> str:
        base = f"onnx {self.op_type}"
        return f"{base} (dequantised)" if self.quantised else base


@dataclass
class Unresolved:
    name: str
    reason: str


@dataclass
class ConvGraph:
    convs: list[ConvNode]
    unresolved: list[Unresolved]
    input_spec: InputSpec | None
    inputs: list[str]
    output_names: list[str]
    other_convs: dict[str, list[str]] = field(default_factory=dict)
    """Nodes of :data:`OTHER_CONV_OPS` by op type (qualified names), not analysed."""

    def other_convs_note(self) -> str | None:
        """The note naming how many conv-like nodes of other kinds were not analysed."""
        if not self.other_convs:
            return None
        parts = [
            f"{len(v)} {op} ({', '.join(v[:3])}{' ...' if len(v) > 3 else ''})"
            for op, v in sorted(self.other_convs.items())
        ]
        return (
            "conv-like nodes not analysed (only Conv, ConvInteger and QLinearConv are): "
            + "; ".join(parts)
        )

    @property
    def n_conv_nodes(self) -> int:
        return len(self.convs) + len(self.unresolved)

    def quantised_note(self) -> str | None:
        q = [c for c in self.convs if c.quantised]
        if not q:
            return None
        kinds = sorted({c.quantised or "" for c in q})
        return (
            f"model is quantised: {len(q)} conv layer(s) dequantised ({'; '.join(kinds)}); "
            "matching uses the dequantised weights"
        )

    def not_constant_message(self, path: str) -> str:
        shown = ", ".join(f"{u.name} ({u.reason})" for u in self.unresolved[:UNRESOLVED_SHOWN])
        more = len(self.unresolved) - UNRESOLVED_SHOWN
        tail = f", and {more} more" if more > 0 else ""
        return (
            f"{path!r}: {self.n_conv_nodes} Conv node{'' if self.n_conv_nodes == 1 else 's'}, weights not constant: {shown}{tail}; "
            "convlens reads weights from initializers, Constant nodes and Identity/Cast/Reshape/"
            "DequantizeLinear of them, and never runs the model to compute them"
        )


class _Scope:
    """Names visible in one graph: its initializers and node outputs, then the enclosing scope's."""

    def __init__(self, graph: Any, parent: _Scope | None, path: str | Path) -> None:
        self.parent = parent
        self.inits = {i.name: i for i in graph.initializer}
        self.sparse = {s.values.name: s for s in graph.sparse_initializer}
        self.producers: dict[str, Any] = {}
        for node in graph.node:
            for o in node.output:
                if o:
                    self.producers[o] = node
        self.inputs = {i.name for i in graph.input}
        self.consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for i in node.input:
                self.consumers.setdefault(i, []).append(node)
        self.path = path

    def lookup(self, name: str) -> tuple[str, Any]:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.inits:
                return "init", scope.inits[name]
            if name in scope.sparse:
                return "sparse", scope.sparse[name]
            if name in scope.producers:
                return "node", scope.producers[name]
            if name in scope.inputs:
                return "input", None
            scope = scope.parent
        return "missing", None


class _Resolver:
    def __init__(self, path: str | Path) -> None:
        self.path = path

    def const(self, scope: _Scope, name: str, depth: int = 0) -> tuple[NDArray[Any], list[str]]:
        """The constant value of tensor ``name`` and the dequantisation steps met on the way."""
        if depth > MAX_PRODUCER_CHAIN:
            raise NotConstant(f"more than {MAX_PRODUCER_CHAIN} nodes before a constant")
        kind, obj = scope.lookup(name)
        if kind == "init":
            return decode_tensor(obj, self.path), []
        if kind == "sparse":
            return decode_sparse(obj, self.path), []
        if kind == "input":
            raise NotConstant(f"input {name!r} is a graph input")
        if kind == "missing":
            raise NotConstant(f"input {name!r} has no producer")
        node = obj
        op = node.op_type
        if op == "Constant":
            return self._constant(node), []
        if op == "DynamicQuantizeLinear":
            x, steps = self.const(scope, node.input[0], depth + 1)
            if x.dtype.kind != "f":
                raise NotConstant(
                    f"input {name!r} is a DynamicQuantizeLinear of a {x.dtype} tensor"
                )
            outs = dynamic_quantize_linear(x)
            return outs[list(node.output).index(name)], steps
        if op not in _PASS_THROUGH:
            raise NotConstant(f"input {name!r} produced by {op}")
        x, steps = self.const(scope, node.input[0], depth + 1)
        a = node_attrs(node)
        if op == "Identity":
            return x, steps
        if op == "Cast":
            from onnx import helper

            try:
                return x.astype(helper.tensor_dtype_to_np_dtype(int(a["to"]))), steps
            except Exception:
                raise NotConstant(f"input {name!r} is a Cast to type {a.get('to')}") from None
        if op == "Reshape":
            if len(node.input) < 2:
                raise NotConstant(f"input {name!r} is a Reshape without a shape")
            shape, _ = self.const(scope, node.input[1], depth + 1)
            dims = [int(d) for d in np.asarray(shape).reshape(-1)]
            if not int(a.get("allowzero", 0)):
                dims = [x.shape[i] if d == 0 and i < x.ndim else d for i, d in enumerate(dims)]
            try:
                return x.reshape(dims), steps
            except ValueError:
                raise NotConstant(
                    f"input {name!r} is a Reshape to {dims} that does not fit"
                ) from None
        if op in ("Squeeze", "Unsqueeze"):
            axes = a.get("axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                axes = [int(v) for v in self.const(scope, node.input[1], depth + 1)[0].reshape(-1)]
            try:
                if op == "Squeeze":
                    return (np.squeeze(x) if axes is None else np.squeeze(x, tuple(axes))), steps
                return np.expand_dims(x, tuple(axes or ())), steps
            except (ValueError, TypeError):
                raise NotConstant(f"input {name!r} is a {op} that does not fit") from None
        # DequantizeLinear
        if x.dtype.kind not in "iu":
            raise NotConstant(f"input {name!r} is a DequantizeLinear of a {x.dtype} tensor")
        if int(a.get("block_size", 0)):
            raise NotConstant(f"input {name!r} is a blocked DequantizeLinear (not supported)")
        scale, _ = self.const(scope, node.input[1], depth + 1)
        zp = None
        if len(node.input) > 2 and node.input[2]:
            zp, _ = self.const(scope, node.input[2], depth + 1)
        w, how = dequantise(x, scale, zp, int(a.get("axis", 1)), f"input {name!r}")
        return w, [*steps, f"{x.dtype} weights x scale ({how})"]

    def _constant(self, node: Any) -> NDArray[Any]:
        for a in node.attribute:
            if a.name == "value":
                return decode_tensor(a.t, self.path)
            if a.name == "sparse_value":
                return decode_sparse(a.sparse_tensor, self.path)
            if a.name == "value_float":
                return np.asarray(a.f, dtype=np.float32)
            if a.name == "value_floats":
                return np.asarray(list(a.floats), dtype=np.float32)
            if a.name == "value_int":
                return np.asarray(a.i, dtype=np.int64)
            if a.name == "value_ints":
                return np.asarray(list(a.ints), dtype=np.int64)
        raise NotConstant(f"Constant node {node.name or node.output[0]!r} holds no numeric value")


def _conv_integer_chain(
    scope: _Scope, res: _Resolver, out: str
) -> tuple[str, NDArray[Any] | None, NDArray[Any] | None]:
    """From a ``ConvInteger`` output, follow ``Cast`` -> ``Mul`` -> ``Add`` (single consumers) to the
    float output; returns it, the constant part of the scale (``w_scale``) and the bias, if found."""
    name, w_scale, bias = out, None, None
    for _ in range(MAX_PRODUCER_CHAIN):
        users = scope.consumers.get(name, [])
        if len(users) != 1 or users[0].op_type not in ("Cast", "Mul", "Add"):
            break
        node = users[0]
        others = [i for i in node.input if i != name]
        if node.op_type == "Mul" and len(others) == 1 and w_scale is None:
            w_scale = _const_factor(scope, res, others[0])
        elif node.op_type == "Add" and len(others) == 1:
            try:
                bias = res.const(scope, others[0])[0].astype(np.float64).reshape(-1)
            except (NotConstant, ConvlensError):
                break
        name = node.output[0]
        if node.op_type == "Add":
            break
    return name, w_scale, bias


def _const_factor(scope: _Scope, res: _Resolver, name: str) -> NDArray[Any] | None:
    """The constant factor of ``name`` = ``Mul(runtime x_scale, constant w_scale)`` (or a constant)."""
    try:
        return res.const(scope, name)[0]
    except (NotConstant, ConvlensError):
        pass
    kind, node = scope.lookup(name)
    if kind != "node" or node.op_type != "Mul":
        return None
    for i in node.input:
        try:
            return res.const(scope, i)[0]
        except (NotConstant, ConvlensError):
            continue
    return None


def _conv_node(
    node: Any, name: str, scope: _Scope, res: _Resolver, subgraph: str | None
) -> ConvNode:
    op = node.op_type
    ins = list(node.input)
    attrs = node_attrs(node)
    if op == "Conv":
        if len(ins) < 2 or not ins[1]:
            raise NotConstant("no weight input")
        w, steps = res.const(scope, ins[1])
        if w.dtype.kind != "f":
            raise ConvlensError(
                f"{str(res.path)!r}: tensor {ins[1]!r} has element type {w.dtype}; expected a float "
                f"tensor ({', '.join(FLOAT_TYPES.values())})"
            )
        bias = None
        if len(ins) > 2 and ins[2]:
            bias = res.const(scope, ins[2])[0].astype(np.float64).reshape(-1)
        quant = "; ".join(steps) or None
        return ConvNode(
            name, op, w.astype(np.float64), bias, attrs, ins[0], node.output[0], subgraph, quant
        )
    if op == "ConvInteger":
        wq, _ = res.const(scope, ins[1])
        zp = res.const(scope, ins[3])[0] if len(ins) > 3 and ins[3] else None
        out, w_scale, bias = _conv_integer_chain(scope, res, node.output[0])
        w_int, _ = dequantise(wq, np.ones(1), zp, 0, f"{name} weight")
        if w_scale is not None:
            w, how = dequantise(wq, w_scale, zp, 0, f"{name} weight")
            quant = f"{wq.dtype} weights x scale ({how})"
        else:
            w, quant = w_int, f"{wq.dtype} weights minus zero point (scale not found)"
        if bias is not None and bias.size != w.shape[0]:
            bias = None
        x_zp = ins[2] if len(ins) > 2 and ins[2] else None
        return ConvNode(
            name,
            op,
            w,
            bias,
            attrs,
            ins[0],
            out,
            subgraph,
            quant,
            integer_check={"weight": w_int, "x_zero_point": x_zp, "output": node.output[0]},
        )
    return _qlinear_conv_node(node, name, scope, res, subgraph, attrs)


def _qlinear_conv_node(
    node: Any, name: str, scope: _Scope, res: _Resolver, subgraph: str | None, attrs: Any
) -> ConvNode:
    """QLinearConv: inputs x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, [B]."""
    op = node.op_type
    ins = list(node.input)
    if len(ins) < 8:
        raise NotConstant("QLinearConv with fewer than 8 inputs")
    wq, _ = res.const(scope, ins[3])
    w_scale, _ = res.const(scope, ins[4])
    w_zp = res.const(scope, ins[5])[0] if ins[5] else None
    w, how = dequantise(wq, w_scale, w_zp, 0, f"{name} weight")
    bias = None
    if len(ins) > 8 and ins[8]:
        try:
            x_scale = float(
                np.asarray(res.const(scope, ins[1])[0], dtype=np.float64).reshape(-1)[0]
            )
            b = res.const(scope, ins[8])[0].astype(np.float64).reshape(-1)
            bias = b * x_scale * np.asarray(w_scale, dtype=np.float64).reshape(-1)
        except (NotConstant, ConvlensError):
            bias = None
    affine = None
    try:
        y_scale = np.asarray(res.const(scope, ins[6])[0], dtype=np.float64).reshape(-1)
        y_zp = (
            np.asarray(res.const(scope, ins[7])[0], dtype=np.float64).reshape(-1)
            if ins[7]
            else np.zeros(1)
        )
        if y_scale.size == 1 and y_zp.size == 1:
            affine = (float(y_scale[0]), float(y_zp[0]))
    except (NotConstant, ConvlensError):
        affine = None
    return ConvNode(
        name,
        op,
        w,
        bias,
        attrs,
        ins[0],
        node.output[0],
        subgraph,
        f"{wq.dtype} weights x scale ({how})",
        output_affine=affine,
    )


def _free_inputs(node: Any) -> set[str]:
    """Every tensor name ``node`` reads, including the outer-scope names its subgraphs read (names
    a subgraph defines itself are left out)."""
    names = {i for i in node.input if i}
    for a in node.attribute:
        subs = [a.g] if a.type == 5 else list(a.graphs) if a.type == 10 else []
        for sub in subs:
            defined = {i.name for i in sub.initializer} | {i.name for i in sub.input}
            defined |= {o for n in sub.node for o in n.output}
            inner: set[str] = set()
            for n in sub.node:
                inner |= _free_inputs(n)
            names |= inner - defined
    return names


def topological_order(graph: Any) -> list[tuple[int, Any]]:
    """The graph's nodes as ``(stored index, node)`` in a stable topological order (Kahn's algorithm,
    the lowest stored index first among the ready nodes): some writers (onnxruntime's quantiser)
    store nodes out of order, and the conv layers are numbered in execution order. Nodes caught in
    a cycle (an invalid graph) keep their stored order at the end."""
    import heapq

    nodes = list(graph.node)
    producer = {o: k for k, n in enumerate(nodes) for o in n.output if o}
    deps = [
        {producer[i] for i in _free_inputs(n) if i in producer} - {k} for k, n in enumerate(nodes)
    ]
    users: list[list[int]] = [[] for _ in nodes]
    for k, ds in enumerate(deps):
        for d in ds:
            users[d].append(k)
    missing = [len(ds) for ds in deps]
    ready = [k for k, m in enumerate(missing) if m == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for u in users[k]:
            missing[u] -= 1
            if missing[u] == 0:
                heapq.heappush(ready, u)
    done = set(order)
    order += [k for k in range(len(nodes)) if k not in done]
    return [(k, nodes[k]) for k in order]


def _walk(
    graph: Any,
    scope: _Scope,
    res: _Resolver,
    prefix: str,
    depth: int,
    found: ConvGraph,
    names: set[str],
) -> None:
    for idx, node in topological_order(graph):
        for a in node.attribute:  # a tensor attribute kept in an external file is refused anywhere
            for t in [a.t, *a.tensors, a.sparse_tensor.values, a.sparse_tensor.indices]:
                if t.data_location == 1:
                    decode_tensor(t, res.path)  # raises
        default = f"conv{idx}" if node.op_type in CONV_OPS else f"{node.op_type}_{idx}"
        local = node.name or default
        qualified = f"{prefix}{local}"
        if node.op_type in OTHER_CONV_OPS:
            found.other_convs.setdefault(node.op_type, []).append(qualified)
        if node.op_type in CONV_OPS:
            name, k = qualified, 2
            while name in names:
                name, k = f"{qualified}#{k}", k + 1
            names.add(name)
            try:
                conv = _conv_node(node, name, scope, res, prefix.rstrip("/") or None)
            except NotConstant as exc:
                found.unresolved.append(Unresolved(name, str(exc)))
                continue
            if conv.weight.ndim not in (3, 4, 5):
                raise ConvlensError(
                    f"{str(res.path)!r}: {node.op_type} node {name!r} has a weight of shape "
                    f"{list(conv.weight.shape)}; expected (O, C/groups, *kernel) with 1-3 spatial axes"
                )
            found.convs.append(conv)
            continue
        order = {"then_branch": 0, "else_branch": 1, "body": 2}
        for a in sorted(node.attribute, key=lambda a: (order.get(a.name, 3), a.name)):
            subs = [a.g] if a.type == 5 else list(a.graphs) if a.type == 10 else []
            for k, sub in enumerate(subs):
                if depth + 1 > MAX_SUBGRAPH_DEPTH:
                    raise ConvlensError(
                        f"{str(res.path)!r}: subgraphs nested more than {MAX_SUBGRAPH_DEPTH} deep at "
                        f"{qualified!r} (MAX_SUBGRAPH_DEPTH in convlens.analysis.model.onnxgraph)"
                    )
                part = _SUBGRAPH_ATTRS.get(a.name, a.name) + (f"{k}" if len(subs) > 1 else "")
                for t in sub.initializer:
                    if t.data_location == 1:
                        decode_tensor(t, res.path)  # raises: external data
                _walk(
                    sub,
                    _Scope(sub, scope, res.path),
                    res,
                    f"{qualified}/{part}/",
                    depth + 1,
                    found,
                    names,
                )


def read_graph(path: str | Path, model: Any | None = None) -> ConvGraph:
    """Every conv layer of an ONNX model (weights decoded), the conv nodes whose weights are not
    constant, and the data input. Refuses models with external data."""
    if model is None:
        model = load_model(path)
    graph = model.graph
    stored = [*graph.initializer, *(s.values for s in graph.sparse_initializer)]
    for t in stored:
        if t.data_location == 1:  # TensorProto.EXTERNAL
            decode_tensor(t, path)  # raises
    res = _Resolver(path)
    found = ConvGraph([], [], input_spec(graph), [], [o.name for o in graph.output])
    inits = {i.name for i in graph.initializer}
    found.inputs = [i.name for i in graph.input if i.name not in inits]
    scope = _Scope(graph, None, path)
    _walk(graph, scope, res, "", 0, found, set())
    sources = set(found.inputs)
    for conv in found.convs:  # a stem reading the image in pixel phases: its real kernels
        plain = int(conv.attrs.get("group", 1)) == 1 and all(
            int(d) == 1 for d in conv.attrs.get("dilations", [1, 1])
        )  # dilated taps would sit s*d apart on the image: not de-interleaved
        if conv.subgraph is None and conv.weight.ndim == 4 and plain:
            conv.space_to_depth = find(
                scope.producers,
                conv.input,
                conv.weight.shape[1],
                sources,
                lambda name: res.const(scope, name)[0],
            )
    return found
