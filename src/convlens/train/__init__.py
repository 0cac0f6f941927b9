"""Training runs with per-epoch snapshots (torch)."""

from convlens.train.rundir import RunDir
from convlens.train.trainer import TrainConfig, Trainer, TrainingError, TrainResult

__all__ = ["RunDir", "TrainConfig", "TrainResult", "Trainer", "TrainingError"]
