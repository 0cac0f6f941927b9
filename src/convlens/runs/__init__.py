"""The run directory, torch-free: where every file is (:mod:`~convlens.runs.layout`), what the
JSON records hold (:mod:`~convlens.runs.records`: :class:`RunConfig`, the specs, ``run.json``,
metrics rows), the snapshot cadence (:mod:`~convlens.runs.schedule`) and the one set of readers
(:mod:`~convlens.runs.read`). Imports only ``convlens.errors``/``_serde`` and numpy
(``safetensors.numpy`` when a tensor file is read); the trainer writes what is described here
(``train.rundir.RunDir``), the analysis, report, export and notebook display read it."""

from convlens.runs.layout import RunLayout
from convlens.runs.records import (
    DatasetSpec,
    MetricsRow,
    ModelSpec,
    OodRecord,
    ProbeRecord,
    RunConfig,
    RunRecord,
    TrainOutcome,
)

__all__ = [
    "DatasetSpec",
    "MetricsRow",
    "ModelSpec",
    "OodRecord",
    "ProbeRecord",
    "RunConfig",
    "RunLayout",
    "RunRecord",
    "TrainOutcome",
]
