"""An in-memory torch model analysed like a model file (issue 25): ``convlens.analyze(model,
data)`` for a notebook user who has an ``nn.Module`` and tensors, arrays or a DataLoader, not a
file and an importable factory.

The model is analysed exactly as a model file run through ``--factory`` (kernel matching with its
nulls, verification, ID-vs-OOD activations, receptive fields, probe feature maps, channels), with
two differences, both stated in the result's notes: the data are the arrays given, already in the
model's input units (no fitting), and without a factory there is no untrained arm of
initialisations (a deep copy re-initialised by each module's ``reset_parameters`` would not be the
user's initialisation).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from convlens.analysis.model import forward
from convlens.analysis.model.adapters import TorchModel
from convlens.analysis.orchestration import model_data, model_file
from convlens.analysis.orchestration.options import AnalyzeOptions
from convlens.analysis.orchestration.stages import (
    Timer,
    finish,
)
from convlens.analysis.result import AnalysisResult, Source
from convlens.errors import ConvlensError

MAX_IMAGES = 4096
"""At most this many items are read from an iterable of batches (a DataLoader)."""
NOISE_N = 100


def as_array(
    data: Any, what: str, limit: int = MAX_IMAGES
) -> tuple[NDArray[np.float32], str | None]:
    """``data`` (an array, a tensor, or an iterable of batches: tensors or ``(x, y, ...)``
    tuples) as one float32 array ``(N, C, *spatial)``; a note when the iterable was cut."""
    note = None
    if isinstance(data, torch.Tensor):
        x = data.detach().cpu().numpy()
    elif isinstance(data, np.ndarray):
        x = data
    elif isinstance(data, Iterable):
        parts, n = [], 0
        for batch in data:
            xb = batch[0] if isinstance(batch, (tuple, list)) else batch
            xb = xb.detach().cpu().numpy() if isinstance(xb, torch.Tensor) else np.asarray(xb)
            parts.append(xb)
            n += len(xb)
            if n >= limit:
                note = f"{what}: the first {limit} items of the iterable were read (of more)"
                break
        if not parts:
            raise ConvlensError(f"{what}: the iterable gave no batches")
        x = np.concatenate(parts)[:limit]
    else:
        raise ConvlensError(
            f"{what}: expected an array, a tensor or an iterable of batches, got "
            f"{type(data).__name__}"
        )
    x = np.asarray(x)
    if x.ndim < 3 or not np.issubdtype(x.dtype, np.number) or len(x) == 0:
        raise ConvlensError(
            f"{what}: expected a non-empty numeric array (N, C, L) or (N, C, H, W), got shape "
            f"{tuple(x.shape)} of {x.dtype}"
        )
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ConvlensError(f"{what}: holds NaN or Inf values")
    return x, note


def _prepared(data: Any, ood: Mapping[str, Any] | None, seed: int) -> model_data.Prepared:
    x, note = as_array(data, "data")
    notes = ["the data were given as arrays in the model's input units: nothing was fitted"]
    notes += [note] if note else []
    sets = []
    if ood is None:
        rng = np.random.default_rng([seed, 4096])
        axes = (0, *range(2, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)[0]
        std = x.std(axis=axes, keepdims=True)[0]
        noise = (mean + std * rng.standard_normal((NOISE_N, *x.shape[1:]))).astype(np.float32)
        sets.append(("noise", noise, "Gaussian noise with the data's per-channel mean and std"))
    else:
        for name, value in ood.items():
            o, cut = as_array(value, f"ood {name!r}")
            if o.shape[1:] != x.shape[1:]:
                raise ConvlensError(
                    f"ood {name!r}: items of shape {tuple(o.shape[1:])}, the data's are "
                    f"{tuple(x.shape[1:])}"
                )
            notes += [cut] if cut else []
            sets.append((str(name), o, f"{name} (given as arrays)"))
    return model_data.Prepared("data", x, sets, notes, "NCHW", "ID: the data given as arrays")


def analyze_module(
    module: nn.Module,
    data: Any = None,
    *,
    ood: Mapping[str, Any] | None = None,
    options: AnalyzeOptions | None = None,
    **kw: Any,
) -> AnalysisResult:
    """Analyse an in-memory torch model (see the module docstring). ``data``: the ID images or
    signals (array, tensor or DataLoader), or a dataset spec string as ``convlens analyze --data``
    takes (then fitted to the model); ``ood``: named OOD sets as arrays (default: Gaussian noise
    matched to the data), or with a spec string the OOD set names."""
    if not isinstance(module, nn.Module):
        raise ConvlensError(f"expected a torch.nn.Module, got {type(module).__name__}")
    opts = AnalyzeOptions.of(options, kw)
    opts.check()
    if opts.factory or opts.data or opts.control_runs or opts.reference_runs:
        raise ConvlensError(
            "an in-memory model takes its data as the data argument; factory, data, control and "
            "reference runs are options of files and run directories"
        )
    timer = Timer()
    adapter = TorchModel(module, output=opts.fit.output)
    label = f"<in-memory {type(module).__name__}>"
    spec = data if isinstance(data, str) else None
    source = Source("model_file", label, None, spec or (None if data is None else "arrays"))
    result, bad = model_file.matched_result(source, adapter, opts, timer)
    with timer("verify"):
        model_file._verify_stage(result, adapter, None, bad)
    if data is not None and not bad:
        with timer("data"):
            if spec is not None:
                names = tuple(ood) if ood is not None else None
                prep = model_data.prepare_data(adapter, spec, names, opts.fit, opts.seed)
            else:
                prep = _prepared(data, ood, opts.seed)
            adapter.trace(prep.x_id)
        with forward.output_kind(opts.fit.output_kind):
            model_file._data_stages(result, adapter, prep, timer, bad, opts.n_untrained)
        if opts.channels and adapter.call is None:
            with timer("channels"):
                model_file._channels_stage(result, adapter, prep, opts.seed)
        result.notes[:0] = [
            *prep.notes,
            "an in-memory model has no factory: no untrained initialisations in the OOD verdict",
        ]
    return finish(result, timer)
