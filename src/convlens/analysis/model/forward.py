"""The activation pass over a model: forward hooks on every conv layer reduce each output as soon as
it is computed (per image and channel: the spatial mean of ``relu(z)``; per image: the mean over
channels of the spatial max of ``z``) into streaming accumulators (:class:`SetActivations`). The
comparisons made from them (ID vs OOD, trained vs untrained) are
:mod:`convlens.analysis.measure.activations`."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from convlens.analysis.model.layers import run_model
from convlens.analysis.model.verify import conv_layers
from convlens.data.fit import OUTPUT_KINDS
from convlens.errors import ConvlensError
from convlens.parallel.running import GrowingArray, RunningStats


@dataclass
class SetActivations:
    """Per-layer per-image scores (kept: needed for AUROC) and streaming per-channel stats."""

    name: str
    n: int = 0
    layer_scores: dict[str, GrowingArray] = field(default_factory=dict)
    layer_max: dict[str, GrowingArray] = field(default_factory=dict)
    channel_stats: dict[str, RunningStats] = field(default_factory=dict)
    msp: GrowingArray = field(default_factory=GrowingArray)
    energy: GrowingArray = field(default_factory=GrowingArray)
    pred: GrowingArray = field(default_factory=GrowingArray)  # argmax class per image
    n_outputs: int = 0  # number of logits (classes) the model returns
    not_maps: dict[str, str] = field(default_factory=dict)
    """Conv layers whose module returned no ``(B, C, *spatial)`` feature map: what it returned."""
    output_kind: str | None = None
    """How the model's outputs were read: ``logits``, ``probabilities`` or ``log-probabilities``
    (:data:`OUTPUT_KIND_RULE`); ``None`` before the first batch with outputs."""

    def scores(self, layer: str) -> NDArray[np.float64]:
        return self.layer_scores[layer].values

    def maxes(self, layer: str) -> NDArray[np.float64]:
        return self.layer_max[layer].values


def reduce_map(zmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean of relu(z) ``(B, C)`` and per-image mean over channels of the
    spatial max of z ``(B,)``, reduced in the layer's dtype (accumulated later in float64)."""
    z = zmap.detach().flatten(2)
    return z.clamp(min=0).sum(dim=2) / z.shape[2], z.amax(dim=2).mean(dim=1)


@torch.no_grad()
def collect(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    name: str,
    *,
    call: Any = None,
    pick: Any = None,
) -> SetActivations:
    """One pass over ``batches``: hooks on every conv layer; hooks removed and mode restored after.

    The hooks reduce each conv output as soon as it is computed (while it is in cache) and keep only
    the small per-image results, so no feature map outlives the layer that made it. ``call`` runs a
    batch instead of ``model`` (a pipeline around it); ``pick`` takes the logits from the output (a
    tuple/dict head) or returns ``None`` when the output is not used (no output-level baselines)."""
    layers = conv_layers(model)
    out = SetActivations(name)
    reduced: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []

    def hook(layer_name: str) -> Any:
        def fn(_m: nn.Module, _inp: Any, output: torch.Tensor) -> None:
            if not isinstance(output, torch.Tensor) or output.ndim < 3:
                # a conv subclass whose forward returns something else than (B, C, *spatial),
                # e.g. (B, L) (pesto-pitch's ToeplitzLinear): no feature map to summarise
                shape = tuple(getattr(output, "shape", ()))
                out.not_maps[layer_name] = f"{type(output).__name__} {shape}"
                return
            reduced[layer_name] = reduce_map(output)

        return fn

    was_training = model.training
    model.eval()
    try:
        for lname, module in layers:
            handles.append(module.register_forward_hook(hook(lname)))
        for xb in batches:
            logits = run_model(model if call is None else call, xb, f"{name!r} (a batch)")
            if pick is not None:
                logits = pick(logits)
            if logits is not None and (not isinstance(logits, torch.Tensor) or logits.ndim != 2):
                raise ConvlensError(
                    f"the model's output on {name!r} is not a (batch, classes) tensor of logits "
                    f"(got {type(logits).__name__} {tuple(getattr(logits, 'shape', ()))})"
                )
            # conv modules that never ran (defined but unused) have no entry: not executed
            stats = {ln: reduced[ln] for ln, _ in layers if ln in reduced}
            accumulate(out, logits, stats, n=len(xb))
            reduced.clear()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return out


OUTPUT_TOL = 1e-3
OUTPUT_KIND_RULE = (
    "auto: probabilities when every output of the first batch lies in [0, 1] and every row sums "
    f"to 1 within {OUTPUT_TOL} (a softmax head); log-probabilities when every output is <= 0 and "
    f"every row's logsumexp is 0 within {OUTPUT_TOL} (a log-softmax head); else logits. "
    "Probabilities are read as they are (max-softmax = the largest probability, not a softmax of "
    "them), log-probabilities through exp; the energy score (logsumexp of logits) is not defined "
    "for either and is left out. --output-kind states the kind instead of detecting it"
)
_KIND: contextvars.ContextVar[str] = contextvars.ContextVar("convlens_output_kind", default="auto")


@contextlib.contextmanager
def output_kind(kind: str) -> Iterator[None]:
    """Read the model's outputs as ``kind`` (one of :data:`OUTPUT_KINDS`) inside the block."""
    if kind not in OUTPUT_KINDS:
        raise ConvlensError(f"output kind must be one of {', '.join(OUTPUT_KINDS)}, got {kind!r}")
    token = _KIND.set(kind)
    try:
        yield
    finally:
        _KIND.reset(token)


def detect_output_kind(out: torch.Tensor) -> str:
    """:data:`OUTPUT_KIND_RULE` on one batch of outputs ``(B, K)``."""
    x = out.double()
    if x.shape[1] >= 2 and bool(torch.isfinite(x).all()):
        if bool(((x >= -OUTPUT_TOL) & (x <= 1 + OUTPUT_TOL)).all()) and bool(
            ((x.sum(dim=1) - 1).abs() <= OUTPUT_TOL).all()
        ):
            return "probabilities"
        if bool((x <= OUTPUT_TOL).all()) and bool(
            (torch.logsumexp(x, dim=1).abs() <= OUTPUT_TOL).all()
        ):
            return "log-probabilities"
    return "logits"


def accumulate(
    out: SetActivations,
    logits: torch.Tensor | None,
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]],
    n: int | None = None,
) -> None:
    """Add one batch: output-level scores from the model's outputs (none when ``None``; then ``n``
    gives the batch size), read as :func:`output_kind` says (auto: detected on the set's first
    batch, :data:`OUTPUT_KIND_RULE`), and per-layer scores from :func:`reduce_map`."""
    if logits is not None:
        if out.output_kind is None:
            kind = _KIND.get()
            out.output_kind = detect_output_kind(logits) if kind == "auto" else kind
        x = logits.double()
        if out.output_kind == "probabilities":
            probs = x
        elif out.output_kind == "log-probabilities":
            probs = torch.exp(x)
        else:
            probs = torch.softmax(x, dim=1)
        out.msp.extend(probs.max(dim=1).values.cpu().numpy())
        energy = (
            torch.logsumexp(x, dim=1)
            if out.output_kind == "logits"
            else torch.full((len(x),), float("nan"), dtype=torch.float64)
        )
        out.energy.extend(energy.cpu().numpy())
        out.pred.extend(probs.argmax(dim=1).cpu().numpy())
        out.n_outputs = int(logits.shape[1])
    out.n += len(logits) if logits is not None else int(n or 0)
    for lname, (mean_relu, max_z) in stats.items():
        per_channel = mean_relu.double().cpu().numpy()
        out.channel_stats.setdefault(lname, RunningStats(per_channel.shape[1])).update(per_channel)
        out.layer_scores.setdefault(lname, GrowingArray()).extend(per_channel.mean(axis=1))
        out.layer_max.setdefault(lname, GrowingArray()).extend(max_z.double().cpu().numpy())


def batches_of(
    x: NDArray[Any] | torch.Tensor, batch: int = 256, device: torch.device | str = "cpu"
) -> Iterable[torch.Tensor]:
    t = torch.as_tensor(x)
    for i in range(0, len(t), batch):
        yield t[i : i + batch].to(device)
