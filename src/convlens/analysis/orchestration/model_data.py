"""The data of a model-file analysis (:func:`prepare_data`): the ID set and the OOD sets, loaded
and fitted to the model by one plan (:mod:`convlens.data.fit`), or a folder streamed as it is
read; the OOD sets of large items shrunk to a memory budget (:func:`ood_count`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.model.weights_only import ModelAdapter
from convlens.data.fit import FitOptions
from convlens.errors import ConvlensError

OOD_PER_SET = 100
"""Items in each OOD set built for a model file ..."""
OOD_SET_BYTES = 64 * 2**20
"""... unless that many items of the data's shape (float32) pass this many bytes: then as many as
fit, at least :data:`OOD_MIN_PER_SET` (416 px RGB: 32 a set; eight sets of 100 took 1.7 GB)."""
OOD_MIN_PER_SET = 16


def ood_count(item_shape: tuple[int, ...]) -> int:
    """Items per OOD set for data items of ``item_shape`` (:data:`OOD_SET_BYTES`)."""
    fit = OOD_SET_BYTES // max(1, int(np.prod(item_shape)) * 4)
    return int(min(OOD_PER_SET, max(OOD_MIN_PER_SET, fit)))


def ood_size(item_shape: tuple[int, ...], fixed_batch: int | None = None) -> tuple[int, str | None]:
    """Items per OOD set for items of ``item_shape`` as the model reads them (:func:`ood_count`,
    rounded up to whole batches of a model with a fixed batch size, at least one), and the note
    that says so when the sets are smaller than :data:`OOD_PER_SET`."""
    n = ood_count(item_shape)
    if fixed_batch:
        n = max(fixed_batch, -(-n // fixed_batch) * fixed_batch)
    if n >= OOD_PER_SET:
        return n, None
    return n, (
        f"OOD sets of {n} items each, not {OOD_PER_SET}: one set of {OOD_PER_SET} items of "
        f"{list(item_shape)} would hold {OOD_PER_SET * np.prod(item_shape) * 4 / 2**20:.0f} MiB "
        f"(budget {OOD_SET_BYTES // 2**20} MiB a set)"
    )


@dataclass
class Prepared:
    """The data of a model-file analysis, fitted to the model (see :mod:`convlens.data.fit`)."""

    id_name: str
    x_id: NDArray[np.float32]
    sets: list[tuple[str, NDArray[np.float32], str]]
    notes: list[str]
    layout: str
    id_description: str = ""
    others: list[tuple[str, NDArray[np.float32], str]] = field(default_factory=list)
    sources: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    id_stream: Any = None
    """A streamed folder (``stream:DIR``): the ID set read lazily; ``x_id`` is then its sample."""


def _prepare_stream(
    adapter: ModelAdapter, root: str, ood: tuple[str, ...] | None, options: FitOptions, seed: int
) -> Prepared:
    """A streamed image folder (:mod:`convlens.parallel.stream`): the ID set is every image of the
    folder, decoded lazily (sharded across ranks under torchrun); the OOD sets are made from the
    seeded normalisation sample. Images are fed as read: grey repeated to the model's channels,
    resized to the model's fixed input size (else the first image's, capped), standardised by the
    folder's own mean/std."""
    from dataclasses import replace

    from convlens.analysis.model.adapters import TorchModel
    from convlens.data.ood import default_ood_names, make_oods
    from convlens.parallel.stream import open_folder

    if not isinstance(adapter, TorchModel):
        raise ConvlensError(
            f"data 'stream:{root}': streamed folders run with PyTorch models (a factory); give "
            "the folder itself (DIR) for an ONNX model"
        )
    if replace(options, output=None, output_kind="auto") != FitOptions():
        raise ConvlensError(
            f"data 'stream:{root}': a streamed folder is fed as read (grey repeated to the "
            "model's channels, standardised by the folder's own mean/std); --layout, "
            "--normalize, --scale and --input-size apply to data loaded whole"
        )
    expect = adapter.expectation()
    fixed = [v for v in (expect.spatial or ()) if v is not None]
    model_size = (
        (int(fixed[0]), int(fixed[1])) if len(fixed) == 2 == len(expect.spatial or ()) else None
    )
    ds = open_folder(root, seed, channels=expect.channels or 1, model_size=model_size)
    names = list(ood) if ood is not None else default_ood_names(ds)
    per_set, size_note = ood_size(tuple(ds.x.shape[1:]))
    oods = make_oods(names, ds, per_set, seed)
    return Prepared(
        f"{ds.name} (all {len(ds.stream)} images, streamed)",
        ds.x,
        [(o.name, o.x, o.description) for o in oods],
        [f"data: {ds.source}; {ds.normalisation['rule']}"] + ([size_note] if size_note else []),
        "NCHW",
        f"ID: every image of the streamed folder {root!r}",
        [],
        {o.name: o.sources for o in oods},
        list(ds.classes),
        ds.stream,
    )


def prepare_data(
    adapter: ModelAdapter, data: str, ood: tuple[str, ...] | None, options: FitOptions, seed: int
) -> Prepared:
    """Load ``data`` and its OOD sets and fit them to the model: one plan for every set."""
    from convlens.analysis.model.adapters import OnnxModel
    from convlens.data.fit import SIGNAL_OOD, SIGNAL_OOD_TEXT, plan_fit, signal_like

    if data.startswith("stream:"):
        return _prepare_stream(adapter, data[len("stream:") :], ood, options, seed)
    from convlens.data.loaders import load_dataset
    from convlens.data.ood import default_ood_names, id_split, make_ood

    ds = load_dataset(data, seed)
    expect = adapter.expectation()
    x_test, _ = ds.split("test")
    plan = plan_fit(
        x_test.shape[1:],
        expect,
        options,
        ds.normalisation,
        repr(ds.name),
        source_rank=ds.extra.get("x_rank"),
    )
    images = len(ds.shape) == 3 and expect.dims == 2 and not plan.column
    one_d = expect.dims == 1 or plan.column  # 1-D data may be held as (N, C, 1, L)
    made = list(SIGNAL_OOD) if one_d else ["noise"]
    names = ood if ood is not None else (default_ood_names(ds) if images else made)
    sets = []
    sources: dict[str, NDArray[np.int64]] = {}
    fitted = tuple(plan.apply(x_test[:1]).shape[1:])  # an item as the model reads it
    per_set, size_note = ood_size(
        fitted, adapter.runner.batch if isinstance(adapter, OnnxModel) else None
    )
    for n in names:
        if images:
            o = make_ood(n, ds, per_set, seed)
            sets.append((o.name, plan.apply(o.x), o.description))
            sources[o.name] = o.sources
        elif n in made:
            x = signal_like(n, x_test.shape[1:], per_set, seed, ds.normalisation)
            desc = f"{SIGNAL_OOD_TEXT[n]}, in the data's shape; standardised like {ds.name}"
            sets.append((n, plan.apply(x), desc))
        else:
            raise ConvlensError(
                f"OOD set {n!r} is made of images; for {expect.dims}-D data the sets are "
                f"{', '.join(made)}"
            )
    split = id_split(ds)  # the face class only for face data; the other classes compared apart
    x_id = plan.apply(split.x)
    if isinstance(adapter, OnnxModel):  # dtype; fixed dims were checked by the plan
        spec = adapter.runner.input_spec
        known = spec.layout if spec is not None and spec.layout != "unknown" else plan.layout
        adapter.runner.check_data(x_id, repr(ds.name), known)
    others = [(o.name, plan.apply(o.x), o.description) for o in split.others]
    sources.update({o.name: o.sources for o in split.others})
    return Prepared(
        split.name,
        x_id,
        sets,
        list(plan.notes) + ([size_note] if size_note else []),
        plan.layout,
        "ID: " + split.description,
        others,
        sources,
        list(split.classes),
    )
