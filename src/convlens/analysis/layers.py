"""Where conv layers get their identity: one place for every kind of source.

A layer is its qualified name, its position in execution order and its geometry
(:class:`~convlens.analysis.result.LayerIdentity`). "The first layer" always means index 0 in
execution order; no code assumes a layer is called ``conv1``.

- torch modules: with an example input the model is run once with forward hooks on every
  ``Conv1d/2d/3d``, and the order the hooks fire is the execution order (modules that never ran come
  last, in definition order, and are marked by ``order="definition"``); without an input the
  definition order of ``named_modules()`` is used and stated;
- weight files without an architecture: file order, geometry limited to what the weight shape says;
- ONNX graphs: node order (ONNX requires topological order), attributes from the node.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from convlens.analysis.result import LayerIdentity

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def conv_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every ``Conv1d/2d/3d`` in ``model``, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, CONV_TYPES)]


def module_identity(name: str, conv: Any, index: int, order: str) -> LayerIdentity:
    """Identity of one torch conv module (``Conv1d/2d/3d`` or anything with their attributes)."""
    w = conv.weight
    padding = conv.padding
    return LayerIdentity(
        name=name,
        index=index,
        order=order,  # type: ignore[arg-type]
        dims=w.ndim - 2,
        weight_shape=list(w.shape),
        in_channels=int(conv.in_channels),
        out_channels=int(conv.out_channels),
        kernel_size=[int(v) for v in w.shape[2:]],
        stride=[int(v) for v in conv.stride],
        padding=padding if isinstance(padding, str) else [int(v) for v in padding],
        dilation=[int(v) for v in conv.dilation],
        groups=int(conv.groups),
        padding_mode=str(getattr(conv, "padding_mode", "zeros")),
        module_type=type(conv).__name__,
    )


def identify_modules(
    model: nn.Module, example: torch.Tensor | None = None
) -> list[tuple[LayerIdentity, nn.Module]]:
    """Every conv module of ``model`` with its identity, in execution order when ``example`` is
    given (one forward pass, hooks removed and the training mode restored afterwards)."""
    convs = conv_modules(model)
    fired: list[str] = []
    if example is not None and convs:
        fired = _execution_order(model, convs, example)
    ran = [n for n in dict.fromkeys(fired)]
    rest = [n for n, _ in convs if n not in set(ran)]
    modules = dict(convs)
    out = []
    for i, name in enumerate(ran + rest):
        order = "execution" if name in ran else "definition"
        out.append((module_identity(name, modules[name], i, order), modules[name]))
    return out


def _execution_order(
    model: nn.Module, convs: list[tuple[str, nn.Module]], example: torch.Tensor
) -> list[str]:
    fired: list[str] = []
    handles = []
    was_training = model.training
    model.eval()
    try:
        for name, m in convs:
            handles.append(m.register_forward_hook(lambda *_a, _n=name: fired.append(_n)))
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return fired


def identify_weights(convs: dict[str, NDArray[Any]]) -> list[LayerIdentity]:
    """Identities of conv weights ``(O, C/g, *k)`` read from a file, in file order (no geometry
    beyond the shape: stride, padding, dilation and groups are unknown)."""
    out = []
    for i, (name, w) in enumerate(convs.items()):
        shape = [int(v) for v in np.shape(w)]
        out.append(
            LayerIdentity(
                name=name,
                index=i,
                order="file",
                dims=len(shape) - 2,
                weight_shape=shape,
                in_channels=shape[1],
                out_channels=shape[0],
                kernel_size=shape[2:],
            )
        )
    return out
