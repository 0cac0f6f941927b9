"""Receptive fields: theoretical (arithmetic) and effective (measured by gradients).

Theoretical: :func:`convlens.ops.receptive_fields` over the model's layer stack (conv, pool, dense);
for any other model (a model file) :func:`traced_chain` runs the same recurrence over the conv
layers in execution order, with the geometry of their identities and the shapes seen in one run.
Effective: the gradient of one unit with respect to the input, ``|d unit / d input|``, averaged over
probe images. For a conv layer the unit is the centre position of each channel (summed over channels);
for the dense hidden layer it is the hidden unit with the largest mean activation. We report the
share of input pixels with a non-zero gradient (support), and the side of the smallest centred square
holding 95% of the gradient mass: conv units see a local patch, dense units the whole input.
"""

from __future__ import annotations

import numpy as np
import torch

from convlens.analysis.result import EffectiveField, LayerIdentity
from convlens.models.cnn import SmallCNN
from convlens.ops import LayerGeometry, receptive_fields
from convlens.ops.geometry import ReceptiveField, resolve_padding


def theoretical(model: SmallCNN) -> list[ReceptiveField]:
    """Receptive fields after each conv, pool and the dense hidden layer of the reference CNN."""
    spec = model.spec
    stack: list[LayerGeometry] = []
    for i, ((name, conv), p) in enumerate(zip(model.named_convs(), spec.pool, strict=True)):
        stack.append(
            LayerGeometry.make(
                name,
                kernel=tuple(conv.kernel_size),
                stride=tuple(conv.stride),
                padding=tuple(int(v) for v in conv.padding),
                dilation=tuple(conv.dilation),
            )
        )
        if p > 1:
            stack.append(LayerGeometry.make(f"pool{i + 1}", "pool", kernel=p, stride=p))
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


CHAIN_RULE = (
    "theoretical receptive fields along the conv layers in execution order, assuming a chain (each "
    "conv reads the previous conv's output; Araujo et al. 2019 recurrence); a spatial size drop "
    "between two convs is taken as a pooling step with kernel = stride = the drop factor; with skip "
    "connections or parallel branches the figures follow the longest path through every conv: an "
    "upper bound"
)


def _pad_lo(ident: LayerIdentity, in_spatial: list[int]) -> list[int]:
    """Padding before the first element, per axis, from the identity's padding (torch: one value
    per axis or a string; ONNX: ``[lo..., hi...]`` or an ``auto_pad`` string)."""
    nd = ident.dims
    k, s = list(ident.kernel_size), list(ident.stride or [1] * nd)
    d = list(ident.dilation or [1] * nd)
    p = ident.padding
    if isinstance(p, str):
        mode = p.upper()
        if mode in ("VALID", "NOTSET"):
            return [0] * nd
        pads = resolve_padding("same", in_spatial, k, s, d)
        return [hi if mode == "SAME_LOWER" else lo for lo, hi in pads]
    if p is None:
        return [0] * nd
    vals = [int(v) for v in p]
    return vals[:nd] if len(vals) == 2 * nd else (vals * nd)[:nd]


def traced_chain(
    layers: list[LayerIdentity],
    shapes: dict[str, tuple[list[int], list[int]]],
    input_spatial: tuple[int, ...],
) -> tuple[list[ReceptiveField], str]:
    """Receptive field (size, jump, start) after each conv that ran, from its traced geometry and
    the observed shapes (``shapes[name] = (input shape, output shape)``, batch and channels first),
    for any model; the second value states the assumption (:data:`CHAIN_RULE`) and where it fails."""
    nd = len(input_spatial)
    size, jump = [1] * nd, [1] * nd
    start = [0.0] * nd
    prev: list[int] = list(input_spatial)
    prev_c: int | None = None
    out: list[ReceptiveField] = []
    breaks: list[str] = []
    pools: list[str] = []
    for ident in sorted(layers, key=lambda i: i.index):
        if ident.name not in shapes or ident.dims != nd or ident.stride is None:
            continue
        inp, res = shapes[ident.name]
        sp_in, sp_out = [int(v) for v in inp[2:]], [int(v) for v in res[2:]]
        if sp_in != prev:
            f = [a // b if b and a % b == 0 else 0 for a, b in zip(prev, sp_in, strict=True)]
            if all(v >= 1 for v in f):
                start = [st + (v - 1) / 2 * j for st, v, j in zip(start, f, jump, strict=True)]
                size = [sz + (v - 1) * j for sz, v, j in zip(size, f, jump, strict=True)]
                jump = [j * v for j, v in zip(jump, f, strict=True)]
                pools.append(f"before {ident.name} (x{'x'.join(map(str, f))})")
            else:
                breaks.append(f"{ident.name} reads {sp_in} after {prev}")
        if prev_c is not None and int(inp[1]) != prev_c:
            breaks.append(f"{ident.name} reads {inp[1]} channels, the previous conv gave {prev_c}")
        lo = _pad_lo(ident, sp_in)
        span = [
            dd * (k - 1) + 1
            for k, dd in zip(ident.kernel_size, ident.dilation or [1] * nd, strict=True)
        ]
        start = [
            st + ((sp - 1) / 2 - p) * j for st, sp, p, j in zip(start, span, lo, jump, strict=True)
        ]
        size = [sz + (sp - 1) * j for sz, sp, j in zip(size, span, jump, strict=True)]
        jump = [j * s for j, s in zip(jump, ident.stride, strict=True)]
        is_global = all(sz >= n for sz, n in zip(size, input_spatial, strict=True))
        out.append(
            ReceptiveField(
                ident.name,
                "conv",
                tuple(size),
                tuple(jump),
                tuple(start),
                tuple(sp_out),
                is_global,
                tuple(input_spatial),
            )
        )
        prev, prev_c = sp_out, int(res[1])
    note = CHAIN_RULE + f"; input {'x'.join(map(str, input_spatial))}"
    if pools:
        note += "; pooling inferred " + ", ".join(pools[:5]) + (" ..." if len(pools) > 5 else "")
    if breaks:
        note += "; NOT a chain at " + "; ".join(breaks[:5]) + (" ..." if len(breaks) > 5 else "")
        note += ": the figures from there on are upper bounds"
    return out, note
