"""Load a user's model or weights safely: nothing from a file is ever executed.

- ``.safetensors``: tensors only, by construction.
- ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt``: ``torch.load(weights_only=True)``, which refuses any
  pickle that would build something other than tensors and plain containers (a malicious
  ``__reduce__`` is rejected); of a checkpoint with a ``state_dict`` entry (PyTorch Lightning) only
  that entry is read.
- ``.onnx``: the ``onnx`` package (optional extra); only the constant weights of conv nodes are decoded
  (:mod:`convlens.analysis.model.onnxgraph`); models with external data files are refused.
- activations need an architecture: ``--factory package.module:function`` (your own code, imported by
  name, returning an ``nn.Module``) plus a weights file for it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.model.onnxdecode import MAX_WEIGHT_VALUES as _MAX_ONNX_VALUES
from convlens.errors import ConvlensError, raised_in_convlens

# torch only for .pt files and factories: safetensors and ONNX files never load it
if TYPE_CHECKING:
    import torch
    from torch import nn

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".onnx")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
REFUSED_SUFFIXES = {
    ".pt2": "torch.export.load can fall back to unrestricted pickle (weights_only=False) for parts of a "
    ".pt2 archive, which would run code from the file; export the weights with safetensors or "
    "torch.save(model.state_dict()) instead",
}
MAX_WEIGHT_VALUES = _MAX_ONNX_VALUES
"""Most values one weight tensor of an ONNX model may declare (268,435,456: 1 GiB of float32),
checked from its declared dims before the tensor is decoded (enforced in
:mod:`convlens.analysis.model.onnxgraph`)."""


def _flatten(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    import torch

    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    return out


def load_weights(path: str | Path) -> dict[str, NDArray[Any]]:
    """All tensors in a weights file, as float NumPy arrays keyed by name."""
    p = Path(path)
    if not p.is_file():
        raise ConvlensError(f"model file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix in REFUSED_SUFFIXES:
        raise ConvlensError(f"refusing {str(p)!r}: {REFUSED_SUFFIXES[suffix]}")
    if suffix == ".safetensors":
        return _safetensors(p)
    if suffix in TORCH_SUFFIXES:
        import torch

        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConvlensError(
                f"refused to load {str(p)!r}: not a plain weights file (loaded with weights_only=True, "
                f"which never runs code from the file): {str(exc).splitlines()[0]}"
            ) from None
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]  # a training checkpoint (Lightning): the model's weights only
        tensors = _flatten(obj)
        if not tensors:
            raise ConvlensError(f"{str(p)!r} holds no tensors (expected a state dict)")
        return {k: v.detach().float().numpy() for k, v in tensors.items()}
    if suffix == ".onnx":
        return _onnx_conv_weights(p)
    raise ConvlensError(
        f"unsupported model file type {suffix or '(none)'!r} for {str(p)!r}; expected one of "
        f"{', '.join(WEIGHT_SUFFIXES)} or a run directory"
    )


def _safetensors(p: Path) -> dict[str, NDArray[Any]]:
    """A safetensors file's tensors as float32 arrays, read with NumPy (no torch); a file with a
    dtype NumPy has not (bfloat16, float8) is read with torch, as it always was."""
    try:
        from safetensors.numpy import load_file as load_numpy

        arrays = load_numpy(str(p))
    except Exception:  # a dtype numpy lacks, or a bad file: torch reads the first, says the second
        pass
    else:
        return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(p))
    except Exception as exc:  # safetensors raises its own error type for bad headers/lengths
        raise ConvlensError(
            f"{str(p)!r} is not a valid safetensors file (truncated or corrupt): {exc}"
        ) from None
    return {k: v.detach().float().numpy() for k, v in tensors.items()}


def _onnx_conv_weights(p: Path) -> dict[str, NDArray[Any]]:
    """Every conv layer's weight in an ONNX model, keyed ``<layer>.weight``, found by the same graph
    walk as the runner (:func:`convlens.analysis.model.onnxgraph.read_graph`): initializers, ``Constant``
    nodes, ``Identity``/``Cast``/``Reshape``/``DequantizeLinear`` of them, ``If``/``Loop``/``Scan``
    subgraphs, ``ConvInteger``/``QLinearConv`` (dequantised)."""
    from convlens.analysis.model.onnxgraph import read_graph

    found = read_graph(p)
    if not found.convs and found.unresolved:
        raise ConvlensError(found.not_constant_message(str(p)))
    if not found.convs and found.other_convs:
        raise ConvlensError(
            f"{str(p)!r} has no Conv nodes with weights; {found.other_convs_note()}"
        )
    return {f"{c.name}.weight": c.analysed_weight.astype(np.float32) for c in found.convs}


def conv_weights(weights: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """Tensors that look like conv kernels: ``(O, C/g, *k)`` with 1-3 spatial axes, named ``*weight``."""
    return {
        k[: -len(".weight")] if k.endswith(".weight") else k: v
        for k, v in weights.items()
        if v.ndim in (3, 4, 5) and (k.endswith("weight") or k.endswith("kernel"))
    }


def _failure(exc: BaseException) -> str:
    """``Type: message`` of a failure of the user's code, on one line (at most 300 characters)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def build_from_factory(factory: str, weights: str | Path | None) -> nn.Module:
    """Import ``package.module:function`` (user code, by name), call it, load ``weights`` strictly."""
    import torch
    from torch import nn

    mod_name, sep, fn_name = factory.partition(":")
    if not sep or not mod_name or not fn_name:
        raise ConvlensError(f"--factory must look like package.module:function, got {factory!r}")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise ConvlensError(f"cannot import factory {factory!r}: {exc}") from None
    except Exception as exc:  # the user's module fails while it is imported
        if raised_in_convlens(exc):
            raise
        raise ConvlensError(f"cannot import factory {factory!r}: {_failure(exc)}") from None
    try:
        model = fn()
    except Exception as exc:  # the user's code: anything may fail; a convlens bug propagates
        if raised_in_convlens(exc):
            raise
        raise ConvlensError(f"factory {factory!r} failed: {_failure(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ConvlensError(
            f"factory {factory!r} returned {type(model).__name__}, expected a torch.nn.Module"
        )
    if weights is not None:
        tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in load_weights(weights).items()}
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            # torch's message puts the missing/unexpected keys and shapes on later lines: keep
            # them (one line, shortened), they are what the user needs to fix the factory
            why = " ".join(str(exc).split())
            why = why if len(why) <= 400 else why[:397] + "..."
            raise ConvlensError(
                f"weights do not fit the factory's model ({why}); check that --factory builds "
                "the architecture these weights were saved from"
            ) from None
    return model
