"""The channel stage (issue 24): what each channel of each conv layer responds to.

:func:`channels_stage` runs :func:`convlens.analysis.measure.exemplars.exemplar_pass` over the
analysed image sets, cuts each exemplar's receptive-field crop from its image, optimises a
maximising input per channel (torch models), and returns the typed records
(``AnalysisResult.channels``) and the arrays that go into ``channels.safetensors`` beside the
analysis (crops and maximising inputs, keyed ``LAYER/CHANNEL/top``, ``.../bottom``,
``.../maximising``). :func:`attach_arrays` / :func:`pending_arrays` carry the arrays from the
analysis to the writer without putting them in ``analysis.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from convlens.analysis.measure import exemplars
from convlens.analysis.model.forward import batches_of
from convlens.analysis.result import (
    AnalysisResult,
    ChannelRecord,
    Exemplar,
    LayerChannels,
    MaximisingInput,
)
from convlens.ops.geometry import ReceptiveField

_ARRAYS = "_convlens_channel_arrays"
"""Attribute of an :class:`AnalysisResult` holding the channel arrays until they are written (not
a dataclass field: never serialised)."""


def attach_arrays(result: AnalysisResult, arrays: dict[str, NDArray[Any]]) -> None:
    result.__dict__[_ARRAYS] = arrays


def pending_arrays(result: AnalysisResult) -> dict[str, NDArray[Any]] | None:
    """The channel arrays of a fresh analysis (``None`` when it computed none or was read back)."""
    value = result.__dict__.get(_ARRAYS)
    return value if value else None


def channels_stage(
    result: AnalysisResult,
    model: nn.Module,
    sets: list[tuple[str, NDArray[Any]]],
    receptive: list[ReceptiveField] | None,
    *,
    maximise: bool = True,
    seed: int = 0,
    k: int = exemplars.K,
    batch: int = 64,
) -> dict[str, NDArray[Any]]:
    """Attach ``result.channels`` for every conv layer of ``model`` on the images of ``sets`` (in
    the network's input units) and return the arrays for ``channels.safetensors``."""
    images = np.concatenate([np.asarray(x) for _, x in sets]) if sets else None
    if images is None or len(images) == 0:
        return {}
    found = exemplars.exemplar_pass(model, [(name, batches_of(x, batch)) for name, x in sets], k=k)
    rfs = {r.name: r for r in receptive or []}
    arrays: dict[str, NDArray[Any]] = {}
    out: list[LayerChannels] = []
    dims = {r.name: r.identity.dims for r in result.layers}
    best_mean = _best_mean(model, images, batch)
    for layer, ext in found.layers.items():
        rec = LayerChannels(
            layer=layer,
            n_images=len(images),
            sets=list(dict.fromkeys(found.sets)),
            k=k,
            rule=exemplars.RULE,
        )
        rf = rfs.get(layer)
        maxi = None
        if maximise:
            try:
                x, reached, secs = exemplars.maximising_inputs(
                    model, layer, tuple(images.shape[1:]), seed=seed
                )
                maxi = (x, reached, secs)
                rec.maximising_rule = exemplars.MAXIMISE_RULE
            except (KeyError, RuntimeError) as exc:
                rec.maximising_rule = f"not computed: {type(exc).__name__}: {exc}"[:300]
        for c in range(ext.top.values.shape[0]):
            ch = ChannelRecord(channel=c)
            for direction, table, sign in (("top", ext.top, 1.0), ("bottom", ext.bottom, -1.0)):
                rows, crops = [], []
                for value, index, pos in zip(
                    table.values[c], table.index[c], table.pos[c], strict=True
                ):
                    if index < 0:
                        continue
                    position = exemplars.unravel(int(pos), ext.map_shape)
                    box = exemplars.crop_box(rf, tuple(position)) if rf is not None else []
                    rows.append(
                        Exemplar(int(index), found.sets[index], float(sign * value), position, box)
                    )
                    if box:
                        crops.append(exemplars.cut(_as_3d(images[index]), box))
                setattr(ch, direction, rows)
                if crops:
                    key = f"{layer}/{c}/{direction}"
                    arrays[key] = np.stack(crops)
                    ch.arrays[direction] = key
            if maxi is not None:
                x, reached, secs = maxi
                key = f"{layer}/{c}/maximising"
                arrays[key] = x[c]
                ch.arrays["maximising"] = key
                ch.maximising_input = MaximisingInput(
                    activation=float(reached[c]),
                    best_image_activation=float(best_mean.get(layer, np.full(c + 1, np.nan))[c]),
                    steps=exemplars.STEPS,
                    seconds=round(secs / len(reached), 4),
                )
            rec.channels.append(ch)
        if dims.get(layer) == 1:
            rec.rule += "; a 1-D layer's positions and boxes are (row 0, sample)"
        out.append(rec)
    for layer, what in found.not_maps.items():
        out.append(
            LayerChannels(layer, len(images), [], k, exemplars.RULE, skipped=f"returned {what}")
        )
    result.channels = out
    return arrays


def _as_3d(image: NDArray[Any]) -> NDArray[Any]:
    """An image ``(C, H, W)``; a 1-D signal ``(C, L)`` as ``(C, 1, L)``."""
    a = np.asarray(image)
    return a[:, None, :] if a.ndim == 2 else a


@torch.no_grad()
def _best_mean(model: nn.Module, images: NDArray[Any], batch: int) -> dict[str, NDArray[Any]]:
    """Per layer and channel, the largest spatial-mean output over the images (the scale a
    maximising input is read against)."""
    from convlens.analysis.model.verify import conv_layers

    best: dict[str, NDArray[Any]] = {}

    def hook(name: str) -> Any:
        def fn(_m: nn.Module, _i: Any, z: Any) -> None:
            if isinstance(z, torch.Tensor) and z.ndim >= 3:
                m = z.detach().double().flatten(2).mean(dim=2).amax(dim=0).numpy()
                best[name] = m if name not in best else np.maximum(best[name], m)

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in conv_layers(model)]
    was = model.training
    model.eval()
    try:
        for xb in batches_of(images, batch):
            model(xb)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return best
