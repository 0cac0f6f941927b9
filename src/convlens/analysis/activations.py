"""Distribution dependence: do conv layers respond more weakly to out-of-distribution inputs?

For every conv layer a forward hook reads the layer's output ``z``; the **activation** is
``relu(z)`` (what a ReLU network passes on). Per image and channel we take the spatial mean of
``relu(z)`` ("mean activation") and the spatial max ("max activation"). Per layer:

- streaming per-channel statistics (:class:`~convlens.analysis.stats.RunningStats`, one pass, float64);
- a per-image **activation strength score** = the mean over channels of the per-image mean activation;
  its mean with a bootstrap 95% CI for the in-distribution set (ID) and for each OOD set; the ratio
  OOD / ID with a bootstrap CI;
- AUROC (``sklearn.metrics.roc_auc_score``) of that score separating ID (positive) from OOD: above 0.5
  means ID inputs activate the layer more;
- the standard output-level baselines on the same data: max-softmax probability and energy
  (``logsumexp`` of the logits), as AUROCs.

Verdict per layer and OOD set on the seed's claim ("a face-trained net's convolutions will not register
strong activations on bicycles"): **holds** when AUROC >= 0.7 and the bootstrap CI of
``mean(ID) - mean(OOD)`` lies above 0; **reversed** when AUROC <= 0.3 and the CI lies below 0;
otherwise **not supported**.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from convlens._serde import finite
from convlens.analysis.layers import run_model
from convlens.analysis.result import (
    ChannelStats,
    DataSet,
    DistributionInfo,
    LayerDistribution,
    OodComparison,
    OutputBaseline,
)
from convlens.analysis.stats import (
    GrowingArray,
    RunningStats,
    bootstrap_ci,
    bootstrap_diff_ci,
    bootstrap_ratio_ci,
)
from convlens.analysis.verify import conv_layers
from convlens.errors import ConvlensError

AUROC_HOLDS = 0.7
AUROC_REVERSED = 0.3
RULE = (
    f"holds: AUROC >= {AUROC_HOLDS} and 95% CI of mean(ID) - mean(OOD) > 0; "
    f"reversed: AUROC <= {AUROC_REVERSED} and CI < 0; else not supported"
)


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


def accumulate(
    out: SetActivations,
    logits: torch.Tensor | None,
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]],
    n: int | None = None,
) -> None:
    """Add one batch: output-level scores from ``logits`` (none when ``None``; then ``n`` gives the
    batch size), per-layer scores from :func:`reduce_map`."""
    if logits is not None:
        probs = torch.softmax(logits.double(), dim=1)
        out.msp.extend(probs.max(dim=1).values.cpu().numpy())
        out.energy.extend(torch.logsumexp(logits.double(), dim=1).cpu().numpy())
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


def _auroc(id_scores: NDArray[Any], ood_scores: NDArray[Any]) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    return float(roc_auc_score(y, np.r_[id_scores, ood_scores]))


def verdict(auroc: float, diff_ci: tuple[float, float]) -> str:
    if auroc >= AUROC_HOLDS and diff_ci[0] > 0:
        return "holds"
    if auroc <= AUROC_REVERSED and diff_ci[1] < 0:
        return "reversed"
    return "not supported"


def _ci(ci: tuple[float, float]) -> tuple[float | None, float | None]:
    return finite(ci[0]), finite(ci[1])


def _channel_stats(stats: RunningStats) -> ChannelStats:
    d = stats.to_dict()
    return ChannelStats(
        n=int(d["n"]),
        **{k: [finite(v) for v in d[k]] for k in ("mean", "std", "min", "max")},
    )


def _compare_one(
    ids: NDArray[np.float64], idm: NDArray[np.float64], s: SetActivations, layer: str, seed: int
) -> OodComparison:
    oo = s.scores(layer)
    om = s.maxes(layer)
    auroc = _auroc(ids, oo)
    dci = bootstrap_diff_ci(ids, oo, seed=seed)
    return OodComparison(
        n=s.n,
        mean=finite(oo.mean()),
        mean_ci=_ci(bootstrap_ci(oo, seed=seed)),
        max=finite(om.mean()),
        max_ci=_ci(bootstrap_ci(om, seed=seed)),
        ratio=finite(oo.mean() / ids.mean()) if ids.mean() > 0 else None,
        ratio_ci=_ci(bootstrap_ratio_ci(oo, ids, seed=seed)),
        diff_ci=_ci(dci),
        auroc=finite(auroc),
        verdict=verdict(auroc, dci),
        channel_stats=_channel_stats(s.channel_stats[layer]),
    )


def compare(
    id_set: SetActivations,
    ood_sets: list[SetActivations],
    *,
    seed: int = 0,
    descriptions: dict[str, str] | None = None,
) -> tuple[DistributionInfo, dict[str, LayerDistribution]]:
    """Per layer: ID vs each OOD set, with CIs, AUROC, ratio and verdict; plus output baselines."""
    desc = descriptions or {}
    layers: dict[str, LayerDistribution] = {}
    for layer in id_set.layer_scores:
        ids = id_set.scores(layer)
        idm = id_set.maxes(layer)
        layers[layer] = LayerDistribution(
            id_mean=finite(ids.mean()),
            id_mean_ci=_ci(bootstrap_ci(ids, seed=seed)),
            id_max=finite(idm.mean()),
            id_max_ci=_ci(bootstrap_ci(idm, seed=seed)),
            id_channel_stats=_channel_stats(id_set.channel_stats[layer]),
            # a conv that ran on the ID set but not on an OOD set (input-dependent control flow)
            # has no comparison for that set
            ood={
                s.name: _compare_one(ids, idm, s, layer, seed)
                for s in ood_sets
                if layer in s.layer_scores
            },
        )
    id_msp, id_energy = id_set.msp.values, id_set.energy.values
    info = DistributionInfo(
        id=DataSet(id_set.name, id_set.n),
        ood=[DataSet(s.name, s.n, desc.get(s.name, "")) for s in ood_sets],
        baselines={
            s.name: OutputBaseline(
                max_softmax_auroc=finite(_auroc(id_msp, s.msp.values)),
                energy_auroc=finite(_auroc(id_energy, s.energy.values)),
            )
            for s in ood_sets
            if len(id_msp) and len(s.msp.values)  # no baselines when the output is not used
        },
        rule=RULE,
    )
    return info, layers
