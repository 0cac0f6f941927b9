"""The channel stage (issue 24): what each channel of each conv layer responds to.

:func:`channels_stage` runs :func:`convlens.analysis.measure.exemplars.exemplar_pass` over the
analysed image sets, cuts each exemplar's receptive-field crop from its image, optimises a
maximising input per channel (torch models), and returns the typed records
(``AnalysisResult.channels``) and the arrays that go into ``channels.safetensors`` beside the
analysis (crops and maximising inputs, keyed ``LAYER/CHANNEL/top``, ``.../bottom``,
``.../maximising``). :func:`~convlens.analysis.result.channels.attach_arrays` /
:func:`~convlens.analysis.result.channels.pending_arrays` carry the arrays from the
analysis to the writer without putting them in ``analysis.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from convlens.analysis.model.onnxrun import OnnxModel

ARRAY_BUDGET = 64 * 2**20
"""Bytes of crops and maximising inputs kept for ``channels.safetensors``, layer by layer in
network order: a deep layer of a 224 px model has 3x400x400 px fields, so its 512 channels' 12 crops
each would be 3.5 GB (the analysis of a real orientation classifier ran out of 24 GB). A layer whose
arrays would pass the budget keeps its exemplars (images, values, positions, boxes) but no arrays,
and its rule says so."""

_NULL_CACHE: dict[str, list[dict[str, dict[str, float]]]] = {}
"""The last untrained null of :func:`concepts_stage`, keyed by the caller (architecture, seed and
the face images) and the number of initialisations: a pure function of the key, so a second analysis of the
same model and data (a test suite, a notebook) does not rebuild its initialisations."""


def channels_stage(
    result: AnalysisResult,
    model: nn.Module | None,
    sets: list[tuple[str, NDArray[Any]]],
    receptive: list[ReceptiveField] | None,
    *,
    maximise: bool = True,
    seed: int = 0,
    k: int = exemplars.K,
    batch: int = 64,
    runner: OnnxModel | None = None,
    layout: str = "NCHW",
) -> dict[str, NDArray[Any]]:
    """Attach ``result.channels`` for every conv layer of ``model`` on the images of ``sets`` (in
    the network's input units) and return the arrays for ``channels.safetensors``. With an ONNX
    ``runner`` (``model`` is then ``None``) the maps come from onnxruntime and no maximising input
    is made; ``layout`` ``NHWC`` says the images are channels-last (crops are cut channels-first)."""
    arrays_in = [np.asarray(x) for _, x in sets]
    n_total = sum(len(x) for x in arrays_in)
    if n_total == 0:
        return {}
    starts = np.cumsum([0] + [len(x) for x in arrays_in])

    def image(i: int) -> NDArray[Any]:  # the i-th analysed image, without copying the sets
        s = int(np.searchsorted(starts, i, side="right")) - 1
        a = arrays_in[s][i - starts[s]]
        return np.moveaxis(a, -1, 0) if layout == "NHWC" else a

    shape = tuple(arrays_in[0].shape[1:])
    found = _sharded_pass(model, runner, sets, k, batch)
    if found is None:  # a rank other than 0 under torchrun: its shard is merged on rank 0
        return {}
    rfs = {r.name: r for r in receptive or []}
    arrays: dict[str, NDArray[Any]] = {}
    out: list[LayerChannels] = []
    dims = {r.name: r.identity.dims for r in result.layers}
    used = 0
    colours = shape[-1] if layout == "NHWC" else shape[0]
    for layer, ext in found.layers.items():
        rec = LayerChannels(
            layer=layer,
            n_images=n_total,
            sets=list(dict.fromkeys(found.sets)),
            k=k,
            rule=exemplars.RULE,
        )
        rf = rfs.get(layer)
        maxi = None
        crops_rf = rf if dims.get(layer) != 3 else None  # a 3-D layer's exemplars get no crops
        need = _array_bytes(
            ext.top.values.shape[0], k, colours, shape, crops_rf, maximise and not runner
        )
        keep = used + need <= ARRAY_BUDGET
        if keep:
            used += need
        else:
            rec.rule += (
                f"; crops and maximising inputs not kept for this layer: they would take "
                f"{need / 2**20:.0f} MiB, past the {ARRAY_BUDGET // 2**20} MiB budget of the "
                f"analysis (exemplars, positions and boxes are kept)"
            )
        if runner is not None:
            rec.maximising_rule = (
                "not computed: an ONNX graph runs in onnxruntime, which gives no gradients"
            )
        elif not keep:
            rec.maximising_rule = "not computed: past the array budget (see the rule)"
        elif maximise and model is not None:
            try:
                x, reached, _secs = exemplars.maximising_inputs(model, layer, shape, seed=seed)
                maxi = (x, reached)
                rec.maximising_rule = exemplars.MAXIMISE_RULE
            except (KeyError, RuntimeError, ValueError) as exc:
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
                    if box and keep:
                        crops.append(exemplars.cut(_as_3d(image(int(index))), box))
                setattr(ch, direction, rows)
                if crops:
                    key = f"{layer}/{c}/{direction}"
                    arrays[key] = np.stack(crops)
                    ch.arrays[direction] = key
            if maxi is not None:
                x, reached = maxi
                key = f"{layer}/{c}/maximising"
                arrays[key] = x[c]
                ch.arrays["maximising"] = key
                ch.maximising_input = MaximisingInput(
                    activation=float(reached[c]),
                    best_image_activation=float(ext.best_mean[c]),
                    steps=exemplars.STEPS,
                )
            rec.channels.append(ch)
        if dims.get(layer) == 1:
            rec.rule += "; a 1-D layer's positions and boxes are (row 0, sample)"
        out.append(rec)
    for layer, what in found.not_maps.items():
        out.append(LayerChannels(layer, n_total, [], k, exemplars.RULE, skipped=f"returned {what}"))
    result.channels = out
    return arrays


def _array_bytes(
    channels: int,
    k: int,
    colours: int,
    shape: tuple[int, ...],
    rf: ReceptiveField | None,
    maximising: bool,
) -> int:
    """Bytes of one layer's arrays: ``2 k`` float32 crops per channel of the receptive field's
    size (``colours`` input channels), plus a maximising input of the input's shape."""
    per = 0
    if rf is not None:
        per += 2 * k * colours * int(np.prod(rf.size[-2:])) * 4
    if maximising:
        per += int(np.prod(shape)) * 4
    return channels * per


def _sharded_pass(
    model: nn.Module | None,
    runner: OnnxModel | None,
    sets: list[tuple[str, NDArray[Any]]],
    k: int,
    batch: int,
) -> exemplars.ExemplarPass | None:
    """The exemplar pass over ``sets``; under torchrun each rank takes a contiguous share of every
    set and rank 0 merges the tables exactly (other ranks get ``None``)."""
    from convlens.parallel import dist

    ctx = dist.context()
    w, r = (ctx.world_size, ctx.rank) if ctx.distributed else (1, 0)
    # shares of whole batches for a model with a fixed batch size, so every rank count sees the
    # same images (the last partial batch of a set is left out, as in one process)
    unit = runner.batch if runner is not None and runner.batch else 1
    chunks, starts, offset = [], [], 0
    for name, x in sets:
        blocks = len(x) // unit if unit > 1 else len(x)
        lo, hi = blocks * r // w * unit, blocks * (r + 1) // w * unit
        chunks.append((name, x[lo:hi]))
        starts.append(offset + lo)
        offset += len(x)

    def local() -> exemplars.ExemplarPass:
        if runner is not None:

            def onnx_batches(x: NDArray[Any]) -> Any:  # a share smaller than a fixed batch: none
                return runner.batches(x)[0] if len(x) >= (runner.batch or 1) else []

            return exemplars.exemplar_pass_maps(
                runner.conv_maps, chunks, onnx_batches, k=k, starts=starts
            )
        assert model is not None, "a torch model or an ONNX runner"
        return exemplars.exemplar_pass(
            model, [(n, batches_of(x, batch)) for n, x in chunks], k=k, starts=starts
        )

    parts = dist.checked(local, "the channel exemplars", to_main=True)
    if ctx.distributed and not ctx.is_main:
        return None
    return exemplars.merge_passes(parts, [n for n, x in sets for _ in range(len(x))])


def _as_3d(image: NDArray[Any]) -> NDArray[Any]:
    """An image ``(C, H, W)``; a 1-D signal ``(C, L)`` as ``(C, 1, L)``."""
    a = np.asarray(image)
    return a[:, None, :] if a.ndim == 2 else a


@torch.no_grad()
def layer_maps(model: nn.Module, x: NDArray[Any], batch: int = 128) -> dict[str, NDArray[Any]]:
    """Every 2-D conv layer's output ``(N, C, h, w)`` on ``x`` (pre-activation), float64."""
    parts: dict[str, list[NDArray[Any]]] = {}

    def hook(name: str) -> Any:
        def fn(_m: nn.Module, _i: Any, z: Any) -> None:
            if isinstance(z, torch.Tensor) and z.ndim == 4:
                parts.setdefault(name, []).append(z.detach().double().numpy())

        return fn

    with exemplars.conv_hooks(model, hook):
        for xb in batches_of(x, batch):
            model(xb)
    return {k: np.concatenate(v) for k, v in parts.items()}


def concepts_stage(
    result: AnalysisResult,
    model: nn.Module,
    faces: NDArray[Any],
    receptive: list[ReceptiveField] | None,
    *,
    untrained: list[nn.Module] | Callable[[int], list[nn.Module]] | None = None,
    null_key: str | None = None,
    snapshots: dict[int, nn.Module] | None = None,
    random_labels: nn.Module | None = None,
) -> None:
    """Which channels of each 2-D conv layer detect the eyes, nose or mouth of aligned faces
    (:mod:`convlens.analysis.evidence.concepts`), against the shift and untrained nulls, over the
    snapshot epochs and in the random-label network; written into ``result.channels``."""
    from convlens.analysis.evidence import concepts
    from convlens.analysis.result import ConceptMatch

    if not result.channels or receptive is None or len(faces) == 0 or faces.shape[1] < 1:
        return
    rfs = {r.name: r for r in receptive}
    shape = (int(faces.shape[-2]), int(faces.shape[-1]))
    masks = concepts.part_masks(faces[:, 0].mean(axis=0))

    def table(net: nn.Module) -> dict[str, tuple[Any, Any]]:
        out = {}
        for name, maps in layer_maps(net, faces).items():
            if name in rfs:
                out[name] = concepts.iou_table(concepts.upsample(maps, rfs[name], shape), masks)
        return out

    trained = table(model)
    # the untrained null (network-level, Bonferroni over the layers and parts tested): a callable
    # is asked for as many initialisations as that level needs
    tests = len(trained) * len(concepts.PARTS)
    needed = concepts.untrained_needed(tests)
    key = None if null_key is None else f"{null_key}|{needed}"
    inits = _NULL_CACHE.get(key) if key is not None else None
    if inits is None:
        nets = untrained(needed) if callable(untrained) else untrained
        inits = untrained_bests(nets or [], faces, rfs, masks)
        if key is not None:
            _NULL_CACHE.clear()  # one entry: the untrained null of the last architecture and data
            _NULL_CACHE[key] = inits
    init_max = {
        layer: {
            p: concepts.untrained_floor([t[layer][p] for t in inits], tests) for p in concepts.PARTS
        }
        for layer in trained
        if inits and all(layer in t for t in inits)
    }
    concept_rule = concepts.RULE + (
        f"; K = {len(inits)} here"
        if inits and len(inits) >= needed
        else f"; no detector can be shown: {len(inits or [])} untrained initialisations, "
        f"{needed} needed for {tests} tests"
    )
    epochs = {e: table(m) for e, m in sorted((snapshots or {}).items())}
    rl = table(random_labels) if random_labels is not None else None
    for rec in result.channels:
        if rec.layer not in trained:
            continue
        ious, shift = trained[rec.layer]
        init_p95 = {
            p: init_max[rec.layer][p] if rec.layer in init_max else None for p in concepts.PARTS
        }

        for ch in rec.channels:
            c = ch.channel
            ch.concepts = []
            for part in concepts.PARTS:
                over = {
                    str(e): float(t[rec.layer][0][part][c])
                    for e, t in epochs.items()
                    if rec.layer in t
                }
                first = next(
                    (
                        e
                        for e, t in epochs.items()
                        if rec.layer in t
                        and _detects(
                            float(t[rec.layer][0][part][c]),
                            float(t[rec.layer][1][part][c]),
                            init_p95[part],
                        )
                    ),
                    None,
                )
                value, null = float(ious[part][c]), float(shift[part][c])
                ch.concepts.append(
                    ConceptMatch(
                        part,
                        value,
                        null,
                        init_p95[part],
                        _detects(value, null, init_p95[part]),
                        first,
                        over,
                    )
                )
        rec.concept_rule = concept_rule
        rec.concept_images = len(faces)
        if rl is not None and rec.layer in rl:
            r_ious, r_shift = rl[rec.layer]
            rec.random_label_detectors = {
                part: int(
                    sum(
                        _detects(float(r_ious[part][c]), float(r_shift[part][c]), init_p95[part])
                        for c in range(len(r_ious[part]))
                    )
                )
                for part in concepts.PARTS
            }


def untrained_bests(
    nets: list[nn.Module],
    x: NDArray[Any],
    rfs: dict[str, ReceptiveField],
    masks: dict[str, NDArray[np.bool_]],
) -> list[dict[str, dict[str, float]]]:
    """The untrained null's sample: per network, per 2-D conv layer with a receptive field in
    ``rfs``, each part's best-channel pooled IoU on the images ``x`` (no shift null)."""
    from convlens.analysis.evidence import concepts

    shape = (int(x.shape[-2]), int(x.shape[-1]))
    return [
        {
            n: concepts.best_iou(concepts.upsample(m, rfs[n], shape), masks)
            for n, m in layer_maps(u, x).items()
            if n in rfs
        }
        for u in nets
    ]


def _detects(iou: float, shift_p95: float, untrained_p95: float | None) -> bool:
    """The detector rule (:data:`convlens.analysis.evidence.concepts.RULE`)."""
    from convlens.analysis.evidence import concepts

    return bool(
        iou >= concepts.MIN_IOU
        and iou > shift_p95
        and (untrained_p95 is None or iou > untrained_p95)
    )
