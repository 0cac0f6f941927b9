"""What a training run records besides its tensors: the ``run.json`` record
(:class:`~convlens.runs.records.RunRecord`, built from the trainer's config, data, model and OOD
sets) and the checkpoint state resume needs (detached copies, safe to write from another thread)."""

from __future__ import annotations

import copy
import platform
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from convlens import __version__
from convlens.runs.records import (
    FEATURE_MAPS_DERIVED,
    FEATURE_MAPS_WRITTEN,
    DatasetSpec,
    OodRecord,
    ProbeRecord,
    RunConfig,
    RunRecord,
    TrainOutcome,
    parse,
)

if TYPE_CHECKING:
    from convlens.data.datasets import Dataset
    from convlens.data.ood import OODSet
    from convlens.runs.records import ModelSpec

LABEL_SEED_TAG = 1402
"""With ``shuffle_labels``, the training labels are permuted by
``numpy.random.default_rng([seed, LABEL_SEED_TAG]).permutation`` (validation and test labels stay
true, so their accuracy shows that nothing about the classes was learned)."""


def versions() -> dict[str, str]:
    import scipy
    import skimage
    import sklearn

    return {
        "convlens": __version__,
        "python": platform.python_version(),
        "torch": str(getattr(torch, "__version__", "?")),
        "numpy": np.__version__,
        "scipy": str(getattr(scipy, "__version__", "?")),
        "scikit-image": str(getattr(skimage, "__version__", "?")),
        "scikit-learn": str(getattr(sklearn, "__version__", "?")),
        "platform": platform.platform(),
    }


def feature_maps_rule(cfg: RunConfig) -> str | None:
    """How the probe feature maps of a run are kept (run.json ``feature_maps``)."""
    if not cfg.probes:
        return None
    return FEATURE_MAPS_DERIVED if cfg.snapshots else FEATURE_MAPS_WRITTEN


def run_record(
    cfg: RunConfig,
    dataset: Dataset,
    spec: ModelSpec,
    ood_sets: list[OODSet],
    probes: list[dict[str, Any]],
    *,
    status: str,
    device: str,
    world_size: int,
    backend: str,
    result: TrainOutcome | None = None,
) -> RunRecord:
    """The ``run.json`` record of a run (``result`` once it is complete)."""
    permutation = None
    if cfg.shuffle_labels:
        permutation = (
            f"training labels permuted by numpy.random.default_rng([{cfg.seed}, "
            f"{LABEL_SEED_TAG}]).permutation; validation and test labels are the true ones"
        )
    return RunRecord(
        status=status,
        config=cfg,
        dataset=parse(DatasetSpec, dataset.to_dict(), f"dataset {dataset.name!r}"),
        model=spec,
        ood=[OodRecord(**s.to_dict()) for s in ood_sets],
        seed=cfg.seed,
        device=device,
        world_size=world_size,
        backend=backend,
        versions=versions(),
        conv_layers=[f"conv{i + 1}" for i in range(len(spec.channels))],
        probes=[ProbeRecord(**p) for p in probes],
        snapshot_epochs=cfg.schedule(),
        feature_maps=feature_maps_rule(cfg),
        label_permutation=permutation,
        result=result,
    )


def detached_copy(obj: Any) -> Any:
    """A copy of a (nested) state dict: tensors cloned, containers rebuilt, other leaves copied.

    Like ``copy.deepcopy`` for what optimizers put in ``state_dict()`` (tensors, numbers, lists,
    dicts), without deepcopy's per-object bookkeeping.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: detached_copy(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(detached_copy(v) for v in obj)
    return copy.copy(obj)


def checkpoint_state(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    epoch: int,
    seconds: float,
    sharding: dict[str, Any],
) -> dict[str, Any]:
    """A detached copy of everything resume needs (safe to write later from another thread):
    model and optimizer state, the batch generator's state, the epoch, the training seconds so
    far and ``sharding`` (world size, backend, sampler: ``train.ddp.Step.state``)."""
    return {
        "model": detached_copy(model.state_dict()),
        "optimizer": detached_copy(opt.state_dict()),
        "generator": gen.get_state(),
        "epoch": epoch,
        "seconds": seconds,
        **sharding,
    }
