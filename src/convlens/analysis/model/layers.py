"""Where conv layers get their identity: one place for every kind of source.

A layer is its qualified name, its position in execution order and its geometry
(:class:`~convlens.analysis.result.LayerIdentity`). "The first layer" always means index 0 in
execution order; no code assumes a layer is called ``conv1``.

- torch modules: with an example input the model is run once with forward hooks on every
  ``Conv1d/2d/3d``, and the order the hooks fire is the execution order (modules that never ran come
  last, in definition order, and are marked by ``order="definition"``); without an input the
  definition order of ``named_modules()`` is used and stated;
- weight files without an architecture: file order, except that the stem-like layer (fewest input
  channels, see :data:`STEM_RULE`) gets index 0; geometry limited to what the weight shape says;
- ONNX graphs: node order (ONNX requires topological order), attributes from the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.result import LayerIdentity
from convlens.errors import ConvlensError, raised_in_convlens

if TYPE_CHECKING:  # torch is imported where a torch model is handled: weights files never load it
    import torch
    from torch import nn


def conv_types() -> tuple[type[nn.Module], ...]:
    """The torch conv module classes (``Conv1d/2d/3d``)."""
    from torch import nn

    return (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class PoolStep:
    """A pooling layer seen between two convs in a traced run (per-axis geometry)."""

    name: str
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    output: tuple[int, ...]


def conv_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every ``Conv1d/2d/3d`` in ``model``, in definition order."""
    kinds = conv_types()
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]


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
    model: nn.Module, example: torch.Tensor | None = None, *, call: Any = None
) -> list[tuple[LayerIdentity, nn.Module]]:
    """Every conv module of ``model`` with its identity, in execution order when ``example`` is
    given (one forward pass, hooks removed and the training mode restored afterwards); ``call``
    runs the example instead of ``model`` (a pipeline callable around it)."""
    convs = conv_modules(model)
    fired: list[str] = []
    if example is not None and convs:
        fired = _execution_order(model, convs, example, call)
    ran = [n for n in dict.fromkeys(fired)]
    rest = [n for n, _ in convs if n not in set(ran)]
    modules = dict(convs)
    out = []
    for i, name in enumerate(ran + rest):
        order = "execution" if name in ran else "definition"
        out.append((module_identity(name, modules[name], i, order), modules[name]))
    return out


def _execution_order(
    model: nn.Module, convs: list[tuple[str, nn.Module]], example: torch.Tensor, call: Any = None
) -> list[str]:
    import torch

    fired: list[str] = []
    handles = []
    was_training = model.training
    model.eval()
    try:
        for name, m in convs:
            handles.append(m.register_forward_hook(lambda *_a, _n=name: fired.append(_n)))
        with torch.no_grad():
            run_model(
                model if call is None else call,
                example,
                "an example input",
                " (does the data fit the model?)",
            )
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return fired


def run_model(model: Any, x: torch.Tensor, what: str, advice: str = "") -> Any:
    """``model(x)``; whatever the model (a user's code and torch) raises, e.g. on input it cannot
    take (wrong channels, size, dtype), becomes one :class:`ConvlensError` naming ``what`` and the
    input's shape. An error raised while convlens's own code ran inside the call (a forward hook)
    is a bug of convlens and propagates as it is (:func:`convlens.errors.raised_in_convlens`)."""
    try:
        return model(x)
    except Exception as exc:
        if raised_in_convlens(exc):
            raise
        msg = " ".join(str(exc).split())[:300]
        raise ConvlensError(
            f"running the model on {what} of shape {tuple(x.shape)} failed{advice}: "
            f"{type(exc).__name__}: {msg}"
        ) from None


def identify_weights(convs: dict[str, NDArray[Any]]) -> list[LayerIdentity]:
    """Identities of conv weights ``(O, C/g, *k)`` read from a file (no geometry beyond the shape:
    stride, padding, dilation and groups are unknown). The stem chosen by :func:`stem_index` gets
    index 0; the other layers follow in file order (``order="file"`` for all)."""
    shapes = {name: [int(v) for v in np.shape(w)] for name, w in convs.items()}
    names = list(shapes)
    stem = stem_index(list(shapes.items()))
    ordered = [names[stem]] + [n for i, n in enumerate(names) if i != stem] if names else []
    out = []
    for i, name in enumerate(ordered):
        shape = shapes[name]
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


STEM_RULE = (
    "among layers of the dimensionality most layers have (1-, 2- or 3-D; ties: the file's first "
    "layer's), fewest input channels per group (weight shape[1]); when some layer reads exactly "
    "3 channels (an RGB image), depthwise-looking layers (shape[1] == 1 while another layer has "
    "the same number of output channels) are left out; ties: a name containing 'stem', then file "
    "order"
)
"""How the first layer of a weights-only file is chosen (there is no architecture to run)."""


def stem_index(shapes: list[tuple[str, list[int]]]) -> int:
    """Position in ``shapes`` (``(name, weight shape)`` in file order) of the layer most likely to be
    the network's first, by :data:`STEM_RULE`. File order alone is not enough: safetensors sorts its
    keys, so ``blocks.0.0.conv_dw`` comes before ``conv_stem``."""
    if not shapes:
        return 0
    n = len(shapes)
    outs = [s[0] for _, s in shapes]
    ins = [s[1] for _, s in shapes]
    dims = [len(s) - 2 for _, s in shapes]
    counts = {d: dims.count(d) for d in dims}
    main = max(counts, key=lambda d: (counts[d], d == dims[0]))
    same_dims = [i for i in range(n) if dims[i] == main]
    image_like = any(ins[i] == 3 for i in same_dims)

    def depthwise_looking(i: int) -> bool:
        return ins[i] == 1 and outs[i] > 1 and any(outs[j] == outs[i] for j in range(n) if j != i)

    candidates = [i for i in same_dims if not (image_like and depthwise_looking(i))]
    return min(
        candidates or same_dims, key=lambda i: (ins[i], "stem" not in shapes[i][0].lower(), i)
    )


def stem_note(identities: list[LayerIdentity]) -> str | None:
    """The note that says how the first layer of a weights-only file was chosen (``None`` for one
    layer or none)."""
    if len(identities) < 2:
        return None
    first = min(identities, key=lambda i: i.index)
    return (
        f"first layer chosen by heuristic (no architecture in the file): {first.name} with "
        f"{first.weight_shape[1]} input channel(s) per group; rule: {STEM_RULE}"
    )
