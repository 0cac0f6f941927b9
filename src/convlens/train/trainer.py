"""Train a reference CNN on in-memory tensors, snapshotting its conv layers at log-spaced epochs.

The probe feature maps at the snapshot epochs are derived from the snapshots when the run is read
(:mod:`convlens.analysis.measure.probemaps`). Deterministic on CPU: the model is initialised from
``torch.manual_seed(seed)``, batches are drawn from a ``torch.Generator`` seeded with ``seed`` whose
state goes into every checkpoint, so a run killed at any point and resumed ends with bit-identical
weights.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from convlens.data.datasets import Dataset
from convlens.data.ood import OODSet, default_ood_names, make_oods
from convlens.errors import ConvlensError
from convlens.models import DEFAULT_MODEL, ModelSpec, build_model, make_spec
from convlens.runs.records import RunConfig, TrainOutcome
from convlens.train.rundir import RunDir
from convlens.train.state import LABEL_SEED_TAG, checkpoint_state, run_record
from convlens.train.writer import InlineWriter, OrderedWriter

TrainConfig = RunConfig
"""The training configuration is :class:`convlens.runs.records.RunConfig` (torch-free; the one
definition of its fields, their validation and the command line)."""


def permuted_labels(y: np.ndarray, seed: int) -> np.ndarray:
    """The random-label control's training labels: ``y`` permuted with the stated seed
    (:data:`~convlens.train.state.LABEL_SEED_TAG`)."""
    return np.asarray(y)[np.random.default_rng([seed, LABEL_SEED_TAG]).permutation(len(y))]


CHECKPOINT_SECONDS = 60.0
"""Besides the scheduled epochs, an epoch that ends this many seconds of wall time after the last
checkpoint also writes metrics and a checkpoint, so a killed long run loses at most about this much."""

CHECKPOINT_MIN_SECONDS = 1.0
"""The default least wall time between two checkpoints written at snapshot epochs (``convlens
train --checkpoint-seconds``). A checkpoint (model and optimizer state, with ``metrics.jsonl``)
costs ~3 ms; short epochs at the early, dense snapshot epochs would otherwise pay it every epoch.
The last epoch always checkpoints; epoch 0's checkpoint is kept in memory and written only when
training fails before the first one is due (or with ``checkpoint_seconds`` 0). A kill loses the
epochs since the last checkpoint: at most the gap to the next snapshot epoch that is due, and never
more than ``CHECKPOINT_SECONDS`` (resume is bit-identical from any checkpoint)."""


class TrainingError(ConvlensError):
    """Training cannot go on (e.g. the loss became non-finite)."""


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConvlensError(
            "device 'cuda' was requested but CUDA is not available on this machine",
            hint_key="cuda_unavailable",
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class TrainResult:
    run_dir: Path
    test_accuracy: float
    test_loss: float
    epochs: int
    seconds: float
    metrics: list[dict[str, Any]] = field(default_factory=list)


def _make_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def conv_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights and biases of every conv layer, keyed ``conv1.weight``, ``conv1.bias``, ..."""
    out: dict[str, torch.Tensor] = {}
    for name, conv in model.named_convs():  # type: ignore[operator]
        out[f"{name}.weight"] = conv.weight.detach().clone()
        if conv.bias is not None:
            out[f"{name}.bias"] = conv.bias.detach().clone()
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over ``x``."""
    was_training = model.training
    model.eval()
    try:
        loss_sum, correct = 0.0, 0
        for i in range(0, len(x), batch):
            logits = model(x[i : i + batch])
            loss_sum += float(
                nn.functional.cross_entropy(logits, y[i : i + batch], reduction="sum")
            )
            correct += int((logits.argmax(1) == y[i : i + batch]).sum())
        return loss_sum / len(x), correct / len(x)
    finally:
        model.train(was_training)


_Job = tuple[Callable[..., Any], tuple[Any, ...]]
"""A write the training loop defers: a function and its arguments."""


class Trainer:
    """Runs one training job into a run directory (``train()``), or resumes one (``resume()``)."""

    def __init__(
        self,
        cfg: RunConfig,
        dataset: Dataset,
        out: str | Path,
        *,
        progress: bool = True,
        checkpoint_seconds: float = CHECKPOINT_MIN_SECONDS,
    ) -> None:
        cfg.validate()
        if (
            isinstance(checkpoint_seconds, bool)
            or not isinstance(checkpoint_seconds, int | float)
            or not (math.isfinite(checkpoint_seconds) and checkpoint_seconds >= 0)
        ):
            raise ConvlensError(
                f"checkpoint interval must be a number of seconds >= 0, got {checkpoint_seconds!r}"
            )
        self.checkpoint_seconds = float(checkpoint_seconds)
        self.cfg = cfg
        self.dataset = dataset
        self._checkpointed = -1  # the epoch of the last checkpoint submitted (for error messages)
        self.device = resolve_device(cfg.device)
        # under torchrun: DDP steps, rank 0 writes (convlens.train.ddp); else the identity
        from convlens.parallel import dist
        from convlens.train import ddp

        self._step = ddp.Step(dist.init(self.device.type))
        self.run: RunDir = ddp.rank_run_dir(out)
        self.progress = progress and self._step.ctx.is_main
        if len(dataset.shape) != 3:  # npz volumes (N, C, D, H, W) are for analysing 3-D models
            raise ConvlensError(
                f"{dataset.name}: training needs images (N, C, H, W), got items of shape "
                f"{list(dataset.shape)}"
            )
        c, h, w = dataset.shape
        # signals (height 1, e.g. an npz of (N, C, L)) get the 1-D preset unless told otherwise
        model_name = cfg.model or DEFAULT_MODEL.get(
            dataset.name, "signals-cnn" if h == 1 else "small-cnn"
        )
        self.spec: ModelSpec = make_spec(
            model_name, c, (h, w), len(dataset.classes), cfg.first_kernel
        )
        names = cfg.ood if cfg.ood is not None else default_ood_names(dataset)
        # training needs the recipes (name, size, seed: the analysis rebuilds whole sets from them)
        # and, only when it computes probe maps itself (probes without snapshots), the OOD probe
        # images; otherwise those are rebuilt from their recipes when read (analysis/measure/probemaps.py)
        first = cfg.probes_per_set if cfg.probes and not cfg.snapshots else 0
        self.ood_sets: list[OODSet] = make_oods(names, dataset, cfg.ood_size, cfg.seed, first=first)

    # -- set-up ---------------------------------------------------------------------------------
    def _tensors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for split in ("train", "val", "test"):
            x, y = self.dataset.split(split)
            if split == "train" and self.cfg.shuffle_labels:
                y = permuted_labels(y, self.cfg.seed)
            out[split] = (torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device))
        return out

    def _probe_inputs(self) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        k = self.cfg.probes_per_set
        x_train, y_train = self.dataset.split("train")
        pick: list[int] = []
        per_class = max(1, k // len(self.dataset.classes))
        for cls in range(len(self.dataset.classes)):
            pick += np.flatnonzero(y_train == cls)[:per_class].tolist()
        xs = [x_train[pick]]
        meta = [
            {"set": "train", "index": int(i), "label": self.dataset.classes[int(y_train[i])]}
            for i in pick
        ]
        for s in self.ood_sets:
            count = min(k, len(s.x) if s.size is None else s.size)
            if len(s.x) >= count:  # built here (probes without snapshots)
                xs.append(s.x[:count])
            meta += [{"set": s.name, "index": i, "label": None} for i in range(count)]
        return torch.from_numpy(np.concatenate(xs)), meta

    def _run_record(self, status: str, result: TrainOutcome | None = None) -> dict[str, Any]:
        """The ``run.json`` object (:func:`convlens.train.state.run_record`)."""
        ctx = self._step.ctx
        return run_record(
            self.cfg,
            self.dataset,
            self.spec,
            self.ood_sets,
            self._probe_meta,
            status=status,
            device=str(self.device),
            world_size=ctx.world_size,
            backend=ctx.backend,
            result=result,
        ).to_dict()

    # -- snapshots -----------------------------------------------------------------------------
    def _snapshot(self, model: nn.Module, epoch: int, probe_x: torch.Tensor) -> list[_Job]:
        """The writes of epoch ``epoch``'s snapshot, with copies of the conv weights taken now. The
        probe feature maps are derived from the snapshot when read
        (:mod:`convlens.analysis.measure.probemaps`); only a run with probes but no snapshots computes them
        here."""
        meta = {"epoch": str(epoch)}
        if self.cfg.snapshots:
            return [(self.run.save_tensors, (self.run.snapshot(epoch), conv_state(model), meta))]
        if self.cfg.probes:
            was = model.training
            model.eval()
            try:
                with torch.no_grad():
                    _, maps = model.forward_with_convs(probe_x.to(self.device))  # type: ignore[operator]
            finally:
                model.train(was)
            return [(self.run.save_tensors, (self.run.probe(epoch), maps, meta))]
        return []

    def _state(
        self,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        gen: torch.Generator,
        epoch: int,
        seconds: float,
    ) -> dict[str, Any]:
        """A detached copy of everything resume needs (safe to write later from another thread)."""
        return checkpoint_state(model, opt, gen, epoch, seconds, self._step.state(epoch))

    # -- the loop ------------------------------------------------------------------------------
    def train(self, *, force: bool = False, keep: tuple[str, ...] = ()) -> TrainResult:
        """A new run in the run directory (holding its lock); ``force`` replaces a previous run's
        files but the names in ``keep`` (foreign files always stay)."""
        with self.run.lock():
            self.run.prepare_new(force, keep)
            return self._train()

    def _train(self) -> TrainResult:
        torch.manual_seed(self.cfg.seed)
        model = build_model(self.spec).to(self.device)
        opt = _make_optimizer(self.cfg, model)
        gen = torch.Generator().manual_seed(self.cfg.seed)
        probe_x, self._probe_meta = self._probe_inputs()
        self.run.write_run(self._run_record("running"))
        if self.cfg.probes:
            note = (
                {
                    "probes": "the first len(x) probes of run.json; the rest are rebuilt from their "
                    "recipes when read (convlens.analysis.measure.probemaps)"
                }
                if len(probe_x) < len(self._probe_meta)
                else None
            )
            self.run.save_tensors(self.run.probe_inputs, {"x": probe_x}, note)
        return self._loop(model, opt, gen, start_epoch=0, metrics=[], probe_x=probe_x, elapsed=0.0)

    def resume(self) -> TrainResult:
        """Continue the run from its checkpoint (holding its lock); temporary files a killed
        writer left behind are removed first."""
        with self.run.lock():
            self.run.clean_tmp()
            return self._resume()

    def _resume(self) -> TrainResult:
        state = self.run.load_checkpoint()
        self._step.check_resume(state, str(self.run.root))
        torch.manual_seed(self.cfg.seed)
        model = build_model(self.spec).to(self.device)
        opt = _make_optimizer(self.cfg, model)
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            gen = torch.Generator()
            gen.set_state(state["generator"])
            epoch = int(state["epoch"])
            elapsed = float(state.get("seconds", 0.0))
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise ConvlensError(
                f"checkpoint in {str(self.run.root)!r} does not match this run: {exc}"
            ) from None
        probe_x, self._probe_meta = self._probe_inputs()
        metrics = [m for m in self.run.read_metrics() if int(m["epoch"]) <= epoch]
        self.run.write_metrics(metrics)
        return self._loop(
            model,
            opt,
            gen,
            start_epoch=epoch + 1,
            metrics=metrics,
            probe_x=probe_x,
            elapsed=elapsed,
        )

    def _loop(
        self,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        gen: torch.Generator,
        *,
        start_epoch: int,
        metrics: list[dict[str, Any]],
        probe_x: torch.Tensor,
        elapsed: float,
    ) -> TrainResult:
        """Epochs ``start_epoch..epochs`` (epoch 0 = snapshot of the initialisation only)."""
        from tqdm import tqdm

        data = self._tensors()
        # on CUDA a background thread writes while the GPU trains; on the CPU it would take a core
        # from torch's own threads, so the (few, small) writes are made at once (writer.py)
        writer = OrderedWriter() if self.device.type == "cuda" else InlineWriter()
        tty = sys.stderr.isatty()  # a bar redraws itself: only on a terminal; else plain lines
        bar = tqdm(
            total=self.cfg.epochs,
            initial=max(start_epoch - 1, 0),
            desc=f"train {self.dataset.name}",
            unit="epoch",
            disable=not (self.progress and tty),
            leave=False,
        )
        every = max(1, self.cfg.epochs // 10)
        model.train()
        self._fwd = self._step.wrap(model)  # DistributedDataParallel under torchrun
        # Writes wait in `pending` (copies taken when due) and go out in order with the next
        # checkpoint: snapshots, then metrics, then the checkpoint. Whatever a kill leaves on disk
        # is then a prefix of the run, and the epochs after its last checkpoint are redone (and
        # their snapshots rewritten, bit-identical) on resume. The epoch-0 state is written with
        # the first checkpoint that is due, or when training fails before one; a run killed before
        # its first checkpoint starts again from epoch 0, which is the same.
        pending: list[_Job] = []
        try:
            self._checkpointed, initial = start_epoch - 1, None
            if start_epoch == 0:
                pending += self._snapshot(model, 0, probe_x)
                initial = self._state(model, opt, gen, 0, 0.0)
                if self.checkpoint_seconds == 0:  # every scheduled epoch checkpoints, 0 too
                    pending.append((self.run.save_checkpoint, (initial,)))
                    self._submit(pending, writer)
                    initial = None
                self._checkpointed, start_epoch = 0, 1
            schedule = set(self.cfg.schedule())
            last_write = time.perf_counter()
            for epoch in range(start_epoch, self.cfg.epochs + 1):
                try:
                    row = self._epoch(model, opt, gen, data, epoch)
                except TrainingError:
                    if initial is not None:  # the last good checkpoint the message names
                        pending.append((self.run.save_checkpoint, (initial,)))
                    raise
                elapsed += row["seconds"]
                metrics.append(row)
                # Only scheduled epochs snapshot; metrics and a checkpoint go with the last epoch,
                # a scheduled epoch at least checkpoint_seconds after the last checkpoint, and any
                # epoch CHECKPOINT_SECONDS after it, so short epochs do not pay for file writes.
                if epoch in schedule:
                    pending += self._snapshot(model, epoch, probe_x)
                since = time.perf_counter() - last_write
                if (
                    epoch == self.cfg.epochs
                    or since >= CHECKPOINT_SECONDS
                    or (epoch in schedule and since >= self.checkpoint_seconds)
                ):
                    pending.append((self.run.write_metrics, (list(metrics),)))
                    pending.append(
                        (self.run.save_checkpoint, (self._state(model, opt, gen, epoch, elapsed),))
                    )
                    self._submit(pending, writer)
                    self._checkpointed, last_write, initial = epoch, time.perf_counter(), None
                if not bar.disable:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_acc']:.3f}"
                    )
                if self.progress and not tty and (epoch % every == 0 or epoch == self.cfg.epochs):
                    print(
                        f"train {self.dataset.name}: epoch {epoch}/{self.cfg.epochs}, loss "
                        f"{row['train_loss']:.3f}, val_acc {row['val_acc']:.3f}",
                        file=sys.stderr,
                        flush=True,
                    )
        except BaseException as exc:
            bar.close()
            # snapshots taken since the last checkpoint (and epoch 0's deferred checkpoint after a
            # training error) are kept; a write failing now must not hide the error that stopped
            # training
            try:
                self._flush(pending, writer)
            except Exception as err:
                exc.add_note(f"convlens: writing the run directory also failed: {err}")
            raise
        bar.close()
        self._flush(pending, writer)  # everything submitted reaches the disk
        return self._finish(model, data, metrics, elapsed)

    @staticmethod
    def _submit(pending: list[_Job], writer: OrderedWriter | InlineWriter) -> None:
        """Hand the deferred writes to ``writer`` in order, each taken off ``pending`` as it goes
        (so none is handed over twice when one fails)."""
        while pending:
            fn, args = pending.pop(0)
            try:
                writer.submit(fn, *args)
            except BaseException:
                pending.clear()  # nothing after a failed write may reach the disk
                raise

    @classmethod
    def _flush(cls, pending: list[_Job], writer: OrderedWriter | InlineWriter) -> None:
        """Submit what is pending, then close the writer (also when a submit fails)."""
        try:
            cls._submit(pending, writer)
        finally:
            writer.close()

    def _epoch(
        self,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        gen: torch.Generator,
        data: dict[str, tuple[torch.Tensor, torch.Tensor]],
        epoch: int,
    ) -> dict[str, Any]:
        x_tr, y_tr = data["train"]
        n, bs = len(x_tr), self.cfg.batch_size
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(self.device)
        loss_sum = 0.0
        predicted: list[torch.Tensor] = []
        labels: list[torch.Tensor] = []
        for b, (idx, m) in enumerate(self._step.batches(perm, bs)):
            yb = y_tr[idx]
            logits = self._fwd(x_tr[idx])
            loss = self._step.loss(logits, yb, m)
            # one device sync per batch, for the check and the loss sum (all ranks' under DDP);
            # the training accuracy is counted once per epoch from the kept predictions
            value = self._step.batch_loss(loss)
            if not math.isfinite(value):
                raise TrainingError(
                    f"the training loss became {value} at epoch {epoch}, batch {b} "
                    f"(learning rate {self.cfg.lr}); stopped. The last good checkpoint (epoch {self._checkpointed}) "
                    f"is in {str(self.run.checkpoint)!r}"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += value * m
            predicted.append(logits.argmax(1))
            labels.append(yb)
        correct = self._step.correct(predicted, labels)
        val_loss, val_acc = evaluate(model, *data["val"])
        if not (math.isfinite(loss_sum) and math.isfinite(val_loss)):
            raise TrainingError(
                f"the loss became non-finite at epoch {epoch}; the last good checkpoint "
                f"(epoch {self._checkpointed}) is in {str(self.run.checkpoint)!r}"
            )
        return {
            "epoch": epoch,
            "train_loss": loss_sum / n,
            "train_acc": correct / n,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "seconds": round(time.perf_counter() - t0, 4),
        }

    def _finish(
        self,
        model: nn.Module,
        data: dict[str, tuple[torch.Tensor, torch.Tensor]],
        metrics: list[dict[str, Any]],
        elapsed: float,
    ) -> TrainResult:
        test_loss, test_acc = evaluate(model, *data["test"])
        self.run.save_tensors(
            self.run.model, model.state_dict(), {"format": "convlens SmallCNN state dict"}
        )
        result = TrainOutcome(
            test_loss=test_loss,
            test_accuracy=test_acc,
            epochs_completed=self.cfg.epochs,
            train_seconds=round(elapsed, 3),
            final_val_accuracy=metrics[-1]["val_acc"] if metrics else None,
        )
        self.run.write_run(self._run_record("complete", result))
        return TrainResult(self.run.root, test_acc, test_loss, self.cfg.epochs, elapsed, metrics)
