"""The activation pass of ``convlens analyze``, sharded across ranks and merged exactly.

Sharding: ``DistributedSampler(shuffle=False, drop_last=False)`` gives rank ``r`` the images
``r, r + W, r + 2W, ...``. When ``W`` does not divide ``N`` it pads by repeating the first images;
those padded positions (global position ``r + k * W >= N``) are dropped here, so every image is
counted exactly once (:func:`convlens.parallel.merge.place` checks it). With ``W = 1`` the indices
are ``0..N-1`` in order and the pass is the single-process one, batch for batch.

Each rank reduces its images with :func:`convlens.analysis.model.forward.collect`; the parts are
gathered (:func:`convlens.parallel.dist.checked`), the per-channel statistics merged with
:func:`convlens.parallel.merge.combine_all` and the per-image scores put back in dataset order, on
rank 0 only, which alone computes the bootstrap and AUROC.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from convlens.analysis.model.forward import SetActivations, collect
from convlens.errors import ConvlensError
from convlens.parallel import dist
from convlens.parallel.merge import combine_all, from_state, place, state
from convlens.parallel.running import GrowingArray

BATCH = 256


def shard_indices(n: int, ctx: dist.Context) -> NDArray[np.int64]:
    """This rank's image indices: ``DistributedSampler``'s, without its padding."""
    if not ctx.distributed:
        return np.arange(n, dtype=np.int64)
    from torch.utils.data import DistributedSampler

    sampler: DistributedSampler[int] = DistributedSampler(
        range(n),  # type: ignore[arg-type]
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=False,
        drop_last=False,
    )
    idx = list(sampler)
    keep = [i for k, i in enumerate(idx) if ctx.rank + k * ctx.world_size < n]
    return np.asarray(keep, dtype=np.int64)


def _batches(
    data: Any, idx: NDArray[np.int64], batch: int, progress: str | None
) -> Iterator[torch.Tensor]:
    from tqdm import tqdm

    bar = tqdm(total=len(idx), desc=progress, unit="img", disable=None if progress else True)
    try:
        if isinstance(data, torch.utils.data.Dataset):
            from convlens.parallel.stream import workers

            n_workers = workers()
            loader = torch.utils.data.DataLoader(
                torch.utils.data.Subset(data, idx.tolist()),
                batch_size=batch,
                shuffle=False,
                num_workers=n_workers,
                persistent_workers=False,
            )
            batches = iter(loader)
            try:
                for xb in batches:
                    bar.update(len(xb))
                    yield xb
            except ConvlensError as exc:
                raise ConvlensError(worker_message(exc), hint_key=exc.hint_key) from None
            finally:  # the workers stop now, not when the traceback holding them is collected
                del batches
        else:
            x = torch.as_tensor(data)
            for i in range(0, len(idx), batch):
                part = idx[i : i + batch]
                contiguous = len(part) and part[-1] - part[0] == len(part) - 1
                yield x[int(part[0]) : int(part[-1]) + 1] if contiguous else x[part]
                bar.update(len(part))
    finally:
        bar.close()


def worker_message(exc: BaseException) -> str:
    """The original one-line message of an error a ``DataLoader`` worker re-raised (the worker
    prefixes it with "Caught ... in DataLoader worker" and a traceback)."""
    text = str(exc).strip()
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    _, sep, message = last.partition(": ")
    return message if sep else last


def _payload(s: SetActivations, idx: NDArray[np.int64]) -> dict[str, Any]:
    return {
        "idx": idx,
        "layers": list(s.layer_scores),
        "stats": {k: state(v) for k, v in s.channel_stats.items()},
        "scores": {k: v.values.copy() for k, v in s.layer_scores.items()},
        "max": {k: v.values.copy() for k, v in s.layer_max.items()},
        "msp": s.msp.values.copy(),
        "energy": s.energy.values.copy(),
        "pred": s.pred.values.copy(),
        "n_outputs": s.n_outputs,
        "output_kind": s.output_kind,
        "not_maps": dict(s.not_maps),
    }


def _grown(values: NDArray[np.float64]) -> GrowingArray:
    g = GrowingArray(max(1, len(values)))
    g.extend(values)
    return g


def merge_parts(name: str, n: int, parts: list[dict[str, Any]]) -> SetActivations:
    """One :class:`SetActivations` from every rank's part, as if one process had seen all ``n``."""
    out = SetActivations(name, n=n)
    for p in parts:
        out.not_maps.update(p.get("not_maps", {}))
    layers: list[str] = next((p["layers"] for p in parts if p["layers"]), [])
    for layer in layers:
        have = [p for p in parts if layer in p["stats"]]
        out.channel_stats[layer] = combine_all([from_state(p["stats"][layer]) for p in have])
        out.layer_scores[layer] = _grown(place(n, [(p["idx"], p["scores"][layer]) for p in have]))
        out.layer_max[layer] = _grown(place(n, [(p["idx"], p["max"][layer]) for p in have]))
    if any(len(p["msp"]) for p in parts):  # output-level scores: only when the output is used
        out.msp = _grown(place(n, [(p["idx"], p["msp"]) for p in parts]))
        out.energy = _grown(place(n, [(p["idx"], p["energy"]) for p in parts]))
        out.pred = _grown(place(n, [(p["idx"], p["pred"]) for p in parts]))
        out.n_outputs = max(int(p["n_outputs"]) for p in parts)
        out.output_kind = next((p["output_kind"] for p in parts if p.get("output_kind")), None)
    return out


def collect_sharded(
    model: nn.Module,
    data: Any,
    name: str,
    *,
    batch: int = BATCH,
    progress: bool | None = None,
    call: Any = None,
    pick: Any = None,
) -> SetActivations:
    """:func:`~convlens.analysis.model.forward.collect` over ``data`` (an array ``(N, C, H, W)`` or a
    ``torch`` ``Dataset`` of images), this rank's shard only, merged on rank 0.

    Without torchrun this is exactly ``collect(model, batches_of(data), name)``. Under torchrun
    rank 0 returns the merged set; other ranks return their own part (not used: rank 0 alone
    attaches the distribution). A failure on any rank ends the job with one line (``dist``)."""
    ctx = dist.context()
    n = len(data)
    idx = shard_indices(n, ctx)
    show = progress if progress is not None else isinstance(data, torch.utils.data.Dataset)
    label = f"activations {name}" if show and ctx.is_main else None

    def local() -> dict[str, Any] | SetActivations:
        s = collect(model, _batches(data, idx, batch, label), name, call=call, pick=pick)
        return _payload(s, idx) if ctx.distributed else s

    parts = dist.checked(local, f"the activations of {name!r}", to_main=True)
    if not ctx.distributed:
        return cast(SetActivations, parts[0])
    if not ctx.is_main:
        return SetActivations(name)
    return merge_parts(name, n, [p for p in parts if isinstance(p, dict)])


def collect_each(
    models: list[nn.Module], data: Any, name: str, *, batch: int = BATCH
) -> list[SetActivations]:
    """:func:`collect_sharded` for several models of one architecture over the same ``data``:
    this rank's batches are cut once and every model reads the same batches (an array's batches
    are views of it; a streamed ``Dataset`` is read once per model). Rank 0 gets every model's
    merged set; other ranks their own parts (not used)."""
    if isinstance(data, torch.utils.data.Dataset):
        return [collect_sharded(m, data, name, batch=batch) for m in models]
    ctx = dist.context()
    n = len(data)
    idx = shard_indices(n, ctx)

    def local() -> list[dict[str, Any]] | list[SetActivations]:
        batches = list(_batches(data, idx, batch, None))
        sets = [collect(m, batches, name) for m in models]
        return [_payload(s, idx) for s in sets] if ctx.distributed else sets

    parts = dist.checked(local, f"the untrained activations of {name!r}", to_main=True)
    if not ctx.distributed:
        return cast(list[SetActivations], parts[0])
    if not ctx.is_main:
        return [SetActivations(name) for _ in models]
    per_rank = [cast(list[dict[str, Any]], p) for p in parts if isinstance(p, list)]
    return [merge_parts(name, n, [r[i] for r in per_rank]) for i in range(len(models))]
