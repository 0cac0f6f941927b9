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

from convlens.analysis.model.layers import PoolStep
from convlens.analysis.result import EffectiveField, LayerIdentity
from convlens.models.cnn import SmallCNN
from convlens.ops import LayerGeometry, receptive_fields
from convlens.ops.geometry import ReceptiveField, resolve_padding


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


CHAIN_RULE = (
    "theoretical receptive fields along the conv layers in execution order, assuming a chain (each "
    "conv reads the previous conv's output; Araujo et al. 2019 recurrence); pooling layers seen in "
    "the run (torch MaxPool/AvgPool, ONNX MaxPool/AveragePool) enter with their own geometry; any "
    "other spatial size drop "
    "between two convs is taken as a valid pooling window (stride round(in/out), window in - "
    "(out - 1) * stride); with skip connections or parallel branches the figures follow the longest "
    "path through every conv: an upper bound"
)


class _Chain:
    """Running size / jump / start of the recurrence, per axis."""

    def __init__(self, nd: int) -> None:
        self.size, self.jump = [1] * nd, [1] * nd
        self.start = [0.0] * nd

    def step(self, span: list[int], stride: list[int], pad_lo: list[int]) -> None:
        z = zip(self.start, span, pad_lo, self.jump, strict=True)
        self.start = [st + ((sp - 1) / 2 - p) * j for st, sp, p, j in z]
        self.size = [
            sz + (sp - 1) * j for sz, sp, j in zip(self.size, span, self.jump, strict=True)
        ]
        self.jump = [j * s for j, s in zip(self.jump, stride, strict=True)]

    def copy(self) -> _Chain:
        """An independent copy of the running state."""
        new = _Chain(len(self.size))
        new.size, new.jump, new.start = list(self.size), list(self.jump), list(self.start)
        return new


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


def _gap(chain: _Chain, prev: list[int], cur: list[int]) -> str | None:
    """A size drop ``prev -> cur`` taken as a valid pooling window; its text, or ``None`` when it is
    no drop of that kind (growth, or an implausible window)."""
    strides = [max(1, round(a / b)) if b else 0 for a, b in zip(prev, cur, strict=True)]
    windows = [a - (b - 1) * st for a, b, st in zip(prev, cur, strides, strict=True)]
    if any(
        b < 1 or b > a or not 1 <= w <= 2 * st + 1
        for a, b, w, st in zip(prev, cur, windows, strides, strict=True)
    ):
        return None
    chain.step(windows, strides, [0] * len(prev))
    return f"window {'x'.join(map(str, windows))} stride {'x'.join(map(str, strides))}"


def _resume(
    history: list[tuple[str, list[int], int, _Chain]], sp_in: list[int], c_in: int
) -> tuple[str, _Chain] | None:
    """The most recent earlier conv whose output has the spatial shape and channel count a conv
    reads (a branch rejoining the main path, e.g. a squeeze-and-excitation gate), with a copy of
    the chain state after it; ``None`` when there is none."""
    for name, sp, c, state in reversed(history):
        if sp == sp_in and c == c_in:
            return name, state.copy()
    return None


def _field(
    ident: LayerIdentity, chain: _Chain, sp_out: list[int], input_spatial: tuple[int, ...]
) -> ReceptiveField:
    """The field after one conv; a size past the input extent is clipped to it (the unit sees the
    whole axis) and ``is_global`` says when every axis is covered."""
    size = tuple(min(sz, n) for sz, n in zip(chain.size, input_spatial, strict=True))
    is_global = all(sz >= n for sz, n in zip(chain.size, input_spatial, strict=True))
    return ReceptiveField(
        ident.name,
        "conv",
        size,
        tuple(chain.jump),
        tuple(chain.start),
        tuple(sp_out),
        is_global,
        tuple(input_spatial),
    )


def traced_chain(
    layers: list[LayerIdentity],
    shapes: dict[str, tuple[list[int], list[int]]],
    input_spatial: tuple[int, ...],
    pools: dict[str, list[PoolStep]] | None = None,
) -> tuple[list[ReceptiveField], str]:
    """Receptive field (size, jump, start) after each conv that ran, from its traced geometry and
    the observed shapes (``shapes[name] = (input shape, output shape)``, batch and channels first)
    and the pooling layers seen before it (``pools[name]``), for any model; the second value states
    the assumption (:data:`CHAIN_RULE`), what was inferred and where the chain breaks. A conv that
    reads a spatial size no pooling explains resumes from the latest earlier conv output of its
    shape and channels (a rejoining branch), or, when the size grew by less than its double, is
    taken as padded (a Pad node); when none of these fits the figures stop there."""
    nd = len(input_spatial)
    chain = _Chain(nd)
    prev: list[int] = list(input_spatial)
    prev_c: int | None = None
    out: list[ReceptiveField] = []
    breaks: list[str] = []
    seen: list[str] = []
    inferred: list[str] = []
    history: list[tuple[str, list[int], int, _Chain]] = []
    for ident in sorted(layers, key=lambda i: i.index):
        if ident.name not in shapes or ident.dims != nd or ident.stride is None:
            continue
        inp, res = shapes[ident.name]
        sp_in, sp_out = [int(v) for v in inp[2:]], [int(v) for v in res[2:]]
        for p in (pools or {}).get(ident.name, []):
            if len(p.kernel) != nd:
                continue
            span = [dd * (k - 1) + 1 for k, dd in zip(p.kernel, p.dilation, strict=True)]
            chain.step(span, list(p.stride), list(p.padding))
            prev = list(p.output)
            seen.append(p.name)
        if sp_in != prev:
            text = _gap(chain, prev, sp_in)
            back = None if text is not None else _resume(history, sp_in, int(inp[1]))
            if text is not None:
                inferred.append(f"before {ident.name} ({text})")
            elif back is not None:
                breaks.append(f"{ident.name} reads {sp_in}: resumed from {back[0]}'s output")
                chain, prev_c = back[1], int(inp[1])
            elif all(a <= b < 2 * a for a, b in zip(prev, sp_in, strict=True)):
                breaks.append(f"padding before {ident.name} ({prev} -> {sp_in}; start not shifted)")
            else:
                breaks.append(f"{ident.name} reads {sp_in} after {prev}")
                break
        if prev_c is not None and int(inp[1]) != prev_c:
            breaks.append(f"{ident.name} reads {inp[1]} channels, the previous conv gave {prev_c}")
        span = [
            dd * (k - 1) + 1
            for k, dd in zip(ident.kernel_size, ident.dilation or [1] * nd, strict=True)
        ]
        chain.step(span, list(ident.stride), _pad_lo(ident, sp_in))
        out.append(_field(ident, chain, sp_out, input_spatial))
        prev, prev_c = sp_out, int(res[1])
        history.append((ident.name, sp_out, prev_c, chain))
        chain = _Chain.copy(chain)
    return out, _chain_note(input_spatial, seen, inferred, breaks, out)


def _chain_note(
    input_spatial: tuple[int, ...],
    seen: list[str],
    inferred: list[str],
    breaks: list[str],
    fields: list[ReceptiveField] | None = None,
) -> str:
    def first(items: list[str]) -> str:
        return ", ".join(items[:5]) + (" ..." if len(items) > 5 else "")

    extent = "x".join(map(str, input_spatial))
    note = CHAIN_RULE + f"; input {extent}"
    if seen:
        note += "; pooling layers traced: " + first(seen)
    if inferred:
        note += "; pooling inferred " + first(inferred)
    rejoins = [b for b in breaks if ": resumed from " in b]
    pads = [b for b in breaks if b.startswith("padding before ")]
    breaks = [b for b in breaks if b not in rejoins and b not in pads]
    if pads:
        note += "; input grown by less than double, taken as " + first(pads)
    spatial = [b for b in breaks if " channels, " not in b]
    if rejoins:
        note += "; branches rejoin (each resumes the chain from the latest conv output of its "
        note += "shape and channels): " + first(rejoins)
    if breaks:
        note += "; NOT a chain at " + "; ".join(breaks[:5]) + (" ..." if len(breaks) > 5 else "")
        if spatial:
            note += ": no shape seen before explains it, so no figures from there on"
        else:
            note += (
                ": the figures from there on assume the chain anyway (upper bounds for branches)"
            )
    reach = [a >= n for f in fields or [] for a, n in zip(f.size, input_spatial, strict=True)]
    if any(reach):
        note += f"; sizes are clipped at the input extent {extent} ('global': the whole input)"
    return note
