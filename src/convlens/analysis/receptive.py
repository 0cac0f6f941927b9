"""Receptive fields: theoretical (arithmetic) and effective (measured by gradients).

Theoretical: :func:`convlens.ops.receptive_fields` over the model's layer stack (conv, pool, dense).
Effective: the gradient of one unit with respect to the input, ``|d unit / d input|``, averaged over
probe images. For a conv layer the unit is the centre position of each channel (summed over channels);
for the dense hidden layer it is the hidden unit with the largest mean activation. We report the
share of input pixels with a non-zero gradient (support), and the side of the smallest centred square
holding 95% of the gradient mass: conv units see a local patch, dense units the whole input.
"""

from __future__ import annotations

import numpy as np
import torch

from convlens.analysis.result import EffectiveField
from convlens.models.cnn import SmallCNN
from convlens.ops import LayerGeometry, receptive_fields
from convlens.ops.geometry import ReceptiveField


def theoretical(model: SmallCNN) -> list[ReceptiveField]:
    """Receptive fields after each conv, pool and the dense hidden layer of the reference CNN."""
    spec = model.spec
    stack: list[LayerGeometry] = []
    # a 1-D model reads (1, L) inputs: its layers are 2-D geometry with a height-1 axis in front
    lift = (1,) if model.dims == 1 else ()
    pad = (0,) if model.dims == 1 else ()
    for i, ((name, conv), p) in enumerate(zip(model.named_convs(), spec.pool, strict=True)):
        stack.append(
            LayerGeometry.make(
                name,
                kernel=lift + tuple(conv.kernel_size),
                stride=lift + tuple(conv.stride),
                padding=pad + tuple(int(v) for v in conv.padding),
                dilation=lift + tuple(conv.dilation),
            )
        )
        if p > 1:
            pool = (*lift, p) if lift else p
            stack.append(LayerGeometry.make(f"pool{i + 1}", "pool", kernel=pool, stride=pool))
    stack.append(LayerGeometry.make("fc1", "dense"))
    return receptive_fields(stack, spec.input_hw)


def _mass_square(g: np.ndarray, frac: float = 0.95) -> int:
    """Side of the smallest square centred on the gradient's peak holding ``frac`` of its mass."""
    total = g.sum()
    if total <= 0:
        return 0
    cy, cx = np.unravel_index(np.argmax(g), g.shape)
    h, w = g.shape
    for r in range(max(h, w)):
        box = g[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1]
        if box.sum() >= frac * total:
            return min(2 * r + 1, max(h, w))
    return max(h, w)


def effective(model: SmallCNN, probes: torch.Tensor) -> list[EffectiveField]:
    """Mean ``|gradient|`` maps of one unit per layer over the probes; support and 95%-mass square."""
    was = model.training
    model.eval()
    out = []
    try:
        x = probes.detach().clone().double().requires_grad_(True)
        m = _double_copy(model)
        hidden, logits_maps = m.features(x)
        targets: dict[str, torch.Tensor] = {}
        for name, z in logits_maps.items():
            cy, cx = z.shape[2] // 2, z.shape[3] // 2
            targets[name] = z[:, :, cy, cx].sum()
        unit = int(hidden.mean(dim=0).argmax())
        targets["fc1"] = hidden[:, unit].sum()
        for name, t in targets.items():
            (g,) = torch.autograd.grad(t, x, retain_graph=True)
            gm = g.abs().mean(dim=(0, 1)).numpy()
            peak = float(gm.max())
            support = float((gm > 1e-12 * max(peak, 1e-300)).mean()) if peak > 0 else 0.0
            out.append(
                EffectiveField(
                    layer=name,
                    kind="dense" if name == "fc1" else "conv",
                    support_fraction=support,
                    mass95_side=_mass_square(gm),
                    input_shape=list(gm.shape),
                    gradient_map=gm.tolist(),
                )
            )
    finally:
        model.train(was)
    return out


def _double_copy(model: SmallCNN) -> SmallCNN:
    import copy

    return copy.deepcopy(model).to(dtype=torch.float64, device="cpu")
