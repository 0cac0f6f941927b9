"""The model-adapter interface and :class:`WeightsOnly`, the adapter of conv weights without an
architecture (safetensors, a state dict, an ONNX graph read without running it). Torch-free: a
weights-only analysis never imports torch (the runnable adapters are in
:mod:`convlens.analysis.model.adapters`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.model import spacetodepth
from convlens.analysis.model.layers import PoolStep, identify_weights, stem_note
from convlens.analysis.model.onnxgraph import ConvGraph, ConvNode, read_graph
from convlens.analysis.result import LayerCheck, LayerIdentity
from convlens.errors import ConvlensError

if TYPE_CHECKING:
    from convlens.analysis.model.forward import SetActivations
    from convlens.data.fit import InputExpectation

Shapes = dict[str, tuple[list[int], list[int]]]
"""Per conv layer: the input and output shape of its (first) call in a traced run."""


class ModelAdapter:
    """The common interface (see the module docstring); the base class is not runnable."""

    kind = "weights"
    runnable = False

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.shapes: Shapes = {}
        self.pools: dict[str, list[PoolStep]] = {}
        self.output: str | None = None

    def layers(self) -> list[LayerIdentity]:
        """Every conv layer's identity and geometry, ``index`` in execution order where known."""
        raise NotImplementedError

    def weights(self) -> dict[str, NDArray[Any]]:
        """Weights keyed so that ``identity.weight_key`` or ``identity.name`` finds each layer's."""
        raise NotImplementedError

    def expectation(self) -> InputExpectation:
        """What the model reads (conv rank, channels, fixed size, layout), for the data fit."""
        raise ConvlensError("this model holds weights only: it cannot be run on data")

    def trace(self, x: NDArray[Any]) -> None:
        """Run once on the first items of ``x`` (already fitted): execution order and conv shapes."""
        raise ConvlensError("this model holds weights only: it cannot be run on data")

    def activations(self, x: NDArray[Any], name: str) -> SetActivations:
        """One pass over the fitted set ``x``: per-layer activation statistics and output scores."""
        raise ConvlensError("this model holds weights only: it cannot be run on data")

    def feature_maps(self, x: NDArray[Any]) -> dict[str, NDArray[np.float32]]:
        """Each conv layer's output ``(P, C, *spatial)`` for the probe items ``x``."""
        raise ConvlensError("this model holds weights only: it cannot be run on data")

    def verify(
        self, x: NDArray[Any] | None, seed: int, skip: set[str]
    ) -> tuple[list[LayerCheck], list[str]]:
        """Checks of the conv calls and the layers whose check was skipped (with why)."""
        return [], []

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


# ----------------------------------------------------------------------------- weights only
class WeightsOnly(ModelAdapter):
    """Conv weights ``(O, C/g, *k)`` without an architecture: matching only."""

    def __init__(
        self,
        convs: dict[str, NDArray[Any]],
        identities: list[LayerIdentity] | None = None,
        notes: list[str] | None = None,
    ) -> None:
        super().__init__()
        self._convs = convs
        self._idents = identities if identities is not None else identify_weights(convs)
        if identities is None:
            note = stem_note(self._idents)
            if note is not None:
                self.notes.append(note)
        self.notes.extend(notes or [])

    def layers(self) -> list[LayerIdentity]:
        return list(self._idents)

    def weights(self) -> dict[str, NDArray[Any]]:
        return self._convs

    @staticmethod
    def from_onnx(path: str | Path) -> WeightsOnly:
        """An ONNX graph read without onnxruntime: graph order and node geometry, no running."""
        idents, weights, notes = onnx_layers(path)
        return WeightsOnly(weights, idents, notes)


# ----------------------------------------------------------------------------- ONNX, read only
def conv_identities(convs: list[ConvNode]) -> list[LayerIdentity]:
    """Identities of the conv layers :func:`~convlens.analysis.model.onnxgraph.read_graph` found, in graph
    (topological, i.e. execution) order, geometry from the node attributes."""
    out = []
    for i, c in enumerate(convs):
        a, w = c.attrs, c.weight
        nd = w.ndim - 2
        pads = [int(v) for v in a.get("pads", [0] * (2 * nd))]
        auto_pad = a.get("auto_pad", b"NOTSET")
        auto = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        groups = int(a.get("group", 1))
        out.append(
            LayerIdentity(
                name=c.name,
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
                module_type=c.module_type,
            )
        )
    return out


def graph_notes(graph: ConvGraph, *, running: bool) -> list[str]:
    """What the analysis of this graph should say about it: subgraph convs, quantisation, convs
    whose weights are not constant, and the data input."""
    notes = []
    inner = [c.name for c in graph.convs if c.subgraph is not None]
    if inner and running:
        notes.append(
            f"{len(inner)} conv layer(s) inside If/Loop/Scan subgraphs ({_first(inner)}): "
            "matched from their weights; activations and verification skipped (onnxruntime "
            "cannot expose tensors inside a subgraph)"
        )
    elif inner:
        notes.append(f"{len(inner)} conv layer(s) inside If/Loop/Scan subgraphs: {_first(inner)}")
    quant = graph.quantised_note()
    if quant:
        notes.append(quant)
    other = graph.other_convs_note()
    if other:
        notes.append(other)
    if graph.unresolved:
        notes.append(
            f"{len(graph.unresolved)} conv node(s) not analysed, weights not constant: "
            + _first([f"{u.name} ({u.reason})" for u in graph.unresolved])
        )
    for c in graph.convs:
        if c.space_to_depth is not None:
            stride = int(c.attrs.get("strides", [1])[0])
            notes.append(spacetodepth.note(c.name, list(c.weight.shape), c.space_to_depth, stride))
    if graph.input_spec is not None:
        notes.append(f"ONNX {graph.input_spec.describe()}")
    return notes


def onnx_layers(path: str | Path) -> tuple[list[LayerIdentity], dict[str, NDArray[Any]], list[str]]:
    """The weights-only view of an ONNX file, without onnxruntime: identities in graph order with
    the nodes' geometry, weights keyed by layer name, and the notes (quantised, subgraphs, ...)."""
    graph = read_graph(path)
    if not graph.convs:
        if graph.unresolved:
            raise ConvlensError(graph.not_constant_message(str(path)))
        raise ConvlensError(f"{str(path)!r} has no Conv nodes with weights{other_convs(graph)}")
    weights = {c.name: c.analysed_weight for c in graph.convs}
    return conv_identities(graph.convs), weights, graph_notes(graph, running=False)


def other_convs(graph: ConvGraph) -> str:
    """``"; conv-like nodes not analysed ..."`` for an error message, or ``""``."""
    note = graph.other_convs_note()
    return f"; {note}" if note else ""


def _first(items: list[str], n: int = 5) -> str:
    more = len(items) - n
    return ", ".join(items[:n]) + (f", and {more} more" if more > 0 else "")
