"""``convlens export RUN --tensorboard DIR``: a run directory as TensorBoard event files.

What is written (``step`` = epoch everywhere), into ``DIR/<run folder name>/``:

- scalars ``train/loss``, ``train/accuracy``, ``val/loss``, ``val/accuracy`` for every epoch of
  ``metrics.jsonl``;
- when ``analysis.json`` holds the evolution, per snapshot epoch
  ``evolution/fraction_above_null95`` and ``evolution/median_score`` (first layer, random-null rule
  of the analysis) and ``evolution/distance_from_init/<layer>``;
- ``kernels/<first layer>``: the first conv layer's kernels as one image grid per snapshot (rows =
  output channels, columns = input channels; each kernel scaled by its own max |w| so 0 is mid-grey);
- ``weights/<tensor>``: a histogram of every snapshot tensor (weights and biases) per snapshot,
  and of every tensor of the final weights (``model.safetensors``) that no snapshot holds (the
  dense layers; everything in a run without snapshots, whose first-layer kernel grid is then drawn
  from them) at the last epoch;
- ``feature_maps/<layer>``: every channel of each layer's output for the first probe image, one
  grid per probe epoch (each channel scaled to its own min..max).

TensorBoard keeps only 10 images per tag by default; start it with
``tensorboard --logdir DIR --samples_per_plugin images=100`` to see every snapshot.

The events are written into a temporary folder beside the target and renamed into place, so an
interrupted export leaves no half-written run; an existing non-empty target is refused.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError
from convlens.runs import read
from convlens.runs.layout import CHANNELS_FILE, RunLayout
from convlens.runs.records import MetricsRow

PIXELS_PER_TAP = 8
"""Each kernel tap is drawn as a PIXELS_PER_TAP x PIXELS_PER_TAP block (nearest neighbour)."""


@dataclass
class ExportSummary:
    """What an export wrote (the CLI prints it)."""

    out: Path
    scalars: dict[str, int] = field(default_factory=dict)  # tag -> number of points
    images: dict[str, int] = field(default_factory=dict)
    histograms: dict[str, int] = field(default_factory=dict)
    non_finite: dict[str, int] = field(default_factory=dict)
    """Tensor name -> non-finite values left out of its histograms (all of them: no histogram)."""

    def lines(self) -> list[str]:
        n_img = max(self.images.values(), default=0)
        out = [
            f"wrote TensorBoard events to {self.out}",
            f"  {len(self.scalars)} scalar tags, {len(self.images)} image tags "
            f"({sum(self.images.values())} images), {len(self.histograms)} histogram tags",
        ]
        if self.non_finite:
            named = ", ".join(f"{k} ({n})" for k, n in sorted(self.non_finite.items()))
            out.append(f"  non-finite weights left out of the histograms: {named}")
        out.append(
            f"  view: tensorboard --logdir {self.out.parent} --samples_per_plugin images={max(n_img, 10)}"
        )
        return out


def _tile(tiles: list[list[NDArray[Any]]], pad: int = 1) -> NDArray[np.float32]:
    """A grid image (H, W) in [0, 1] from rows of equally shaped 2-D tiles, 1-pixel white gaps."""
    th, tw = tiles[0][0].shape
    rows, cols = len(tiles), max(len(r) for r in tiles)
    img = np.ones((rows * (th + pad) + pad, cols * (tw + pad) + pad), np.float32)
    for i, row in enumerate(tiles):
        for j, t in enumerate(row):
            y, x = pad + i * (th + pad), pad + j * (tw + pad)
            img[y : y + th, x : x + tw] = t
    return img


def _as_2d(a: NDArray[Any]) -> NDArray[np.float64]:
    """A kernel or map as a 2-D array: 1-D becomes one row, 3-D its middle slice; non-finite
    values (a diverged run) are drawn as 0 (mid grey in a kernel, the minimum in a map)."""
    a = np.nan_to_num(np.asarray(a, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if a.ndim == 1:
        return a[None, :]
    if a.ndim == 3:
        return a[a.shape[0] // 2]
    return a


def kernel_grid(weight: NDArray[Any]) -> NDArray[np.float32]:
    """``(O, C, *k)`` kernels as a grey grid (H, W) in [0, 1], 0 at 0.5, upscaled for viewing."""
    tiles = []
    for o in range(weight.shape[0]):
        row = []
        for c in range(weight.shape[1]):
            k = _as_2d(weight[o, c])
            m = float(np.abs(k).max()) or 1.0
            t = 0.5 + 0.5 * k / m
            row.append(np.kron(t, np.ones((PIXELS_PER_TAP, PIXELS_PER_TAP))))
        tiles.append(row)
    return _tile(tiles)


def map_grid(maps: NDArray[Any], per_row: int = 8) -> NDArray[np.float32]:
    """One probe's ``(C, *spatial)`` maps as a grid (H, W) in [0, 1], each channel min..max."""
    chans = []
    for c in range(maps.shape[0]):
        m = _as_2d(maps[c])
        lo, hi = float(m.min()), float(m.max())
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        if m.shape[0] == 1:  # a 1-D map: a strip tall enough to see
            m = np.repeat(m, PIXELS_PER_TAP, axis=0)
        chans.append(m)
    return _tile([chans[i : i + per_row] for i in range(0, len(chans), per_row)])


def _summary_writer(log_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConvlensError(
            f"the TensorBoard export needs the 'tensorboard' package ({exc}); install it with "
            "pip install 'convlens[tensorboard]'"
        ) from None
    return SummaryWriter(log_dir=str(log_dir))


@dataclass
class _RunData:
    """Everything an export writes, read (and so checked) before anything is written."""

    metrics: list[MetricsRow]
    analysis: Any  # AnalysisResult | None
    snapshots: dict[int, dict[str, NDArray[Any]]]
    final: dict[str, NDArray[Any]]  # model.safetensors ({} in a partial run)
    last_epoch: int
    conv_layers: list[str]
    probe_maps: dict[int, dict[str, NDArray[Any]]]
    channels: dict[str, NDArray[Any]] = field(default_factory=dict)
    """``channels.safetensors``: each channel's exemplar crops and maximising input."""


def _read_run(root: Path) -> _RunData:
    """The run's records, tensors and analysis through :mod:`convlens.runs.read`: a truncated or
    corrupt file is one clear error naming it, before the target folder is touched."""
    from convlens.analysis.measure.featuremaps import load_probes
    from convlens.analysis.result import AnalysisResult

    run = RunLayout(root)
    rec = read.run_record(run)
    last = rec.result.epochs_completed if rec.result is not None else None
    return _RunData(
        metrics=read.metrics(run),
        analysis=AnalysisResult.read(run.analysis) if run.analysis.is_file() else None,
        snapshots=read.snapshots(run),
        final=read.model_weights(run) if run.model.is_file() else {},
        last_epoch=last if last is not None else rec.config.epochs,
        conv_layers=list(rec.conv_layers),
        probe_maps=load_probes(run.probes_dir)[1] if run.probes_dir.is_dir() else {},
        channels=read.read_tensors(run.root / CHANNELS_FILE)
        if (run.root / CHANNELS_FILE).is_file()
        else {},
    )


def _scalars(w: Any, run: _RunData, s: ExportSummary) -> None:
    names = {
        "train_loss": "train/loss",
        "train_acc": "train/accuracy",
        "val_loss": "val/loss",
        "val_acc": "val/accuracy",
    }
    for row in run.metrics:
        for key, tag in names.items():
            w.add_scalar(tag, float(getattr(row, key)), row.epoch)
            s.scalars[tag] = s.scalars.get(tag, 0) + 1
    evo = run.analysis.evolution if run.analysis is not None else None
    for r in evo.epochs if evo is not None else []:
        values = {
            "evolution/fraction_above_null95": r.first_layer_fraction_above_null95,
            "evolution/median_score": r.first_layer_median_score,
            **{f"evolution/distance_from_init/{k}": v for k, v in r.distance_from_init.items()},
        }
        for tag, v in values.items():
            if v is not None:
                w.add_scalar(tag, float(v), r.epoch)
                s.scalars[tag] = s.scalars.get(tag, 0) + 1


def _first_weight_key(tensors: dict[str, NDArray[Any]], run: _RunData) -> str | None:
    """The first conv layer's weight key: from analysis.json when present, else the first conv
    layer the run recorded (``conv1``...), else the first ``*.weight`` (shortest name)."""
    a = run.analysis
    if a is not None and a.first_layer is not None and a.first_layer.identity.weight_key in tensors:
        return str(a.first_layer.identity.weight_key)
    recorded = [f"{c}.weight" for c in run.conv_layers if f"{c}.weight" in tensors]
    if recorded:
        return recorded[0]
    keys = [k for k in tensors if k.endswith(".weight")]
    return sorted(keys, key=lambda k: (len(k), k))[0] if keys else None


def _images(w: Any, run: _RunData, s: ExportSummary) -> None:
    snaps = run.snapshots
    key = _first_weight_key(next(iter(snaps.values())), run) if snaps else None
    for epoch, snap in sorted(snaps.items()):
        if key is not None:
            _kernels(w, s, key, snap[key], epoch)
        _histograms(w, s, snap, epoch)
    if run.final:  # the final weights no snapshot holds: the dense layers, or all of them
        if not snaps and (key := _first_weight_key(run.final, run)) is not None:
            _kernels(w, s, key, run.final[key], run.last_epoch)
        held: set[str] = set().union(*snaps.values()) if snaps else set()
        rest = {k: v for k, v in run.final.items() if k not in held}
        _histograms(w, s, rest, run.last_epoch)
    for epoch, maps in sorted(run.probe_maps.items()):
        for layer, m in maps.items():
            if len(m):
                tag = f"feature_maps/{layer}"
                w.add_image(tag, map_grid(m[0]), epoch, dataformats="HW")
                s.images[tag] = s.images.get(tag, 0) + 1
    _channels(w, run, s)


def channel_grids(arrays: dict[str, NDArray[Any]], layer: str) -> dict[str, NDArray[np.float32]]:
    """A layer's ``channels.safetensors`` entries as grey grids in [0, 1] (input channel 0, one
    shared range per grid, padding drawn at the minimum): ``top_exemplars`` (a row of crops per
    channel), ``bottom_exemplars`` and ``maximising_inputs`` (one per channel, in a row)."""
    out: dict[str, NDArray[np.float32]] = {}
    chans = sorted({int(k.split("/")[1]) for k in arrays if k.startswith(f"{layer}/")})
    for direction, tag in (("top", "top_exemplars"), ("bottom", "bottom_exemplars")):
        rows = [
            [_as_2d(c[0]) for c in arrays[f"{layer}/{ch}/{direction}"]]
            for ch in chans
            if f"{layer}/{ch}/{direction}" in arrays
        ]
        if rows:
            out[tag] = _scaled(rows)
    maxi = [
        [
            _as_2d(arrays[f"{layer}/{ch}/maximising"][0])
            for ch in chans
            if f"{layer}/{ch}/maximising" in arrays
        ]
    ]
    if maxi[0]:
        out["maximising_inputs"] = _scaled(maxi)
    return out


def _scaled(rows: list[list[NDArray[Any]]]) -> NDArray[np.float32]:
    finite = np.concatenate([t[np.isfinite(t)].ravel() for r in rows for t in r] or [np.zeros(1)])
    lo, hi = float(finite.min()), float(finite.max())
    span = (hi - lo) or 1.0
    big = [
        [np.kron((np.nan_to_num(t, nan=lo) - lo) / span, np.ones((4, 4))) for t in r] for r in rows
    ]
    return _tile(big)


def _channels(w: Any, run: _RunData, s: ExportSummary) -> None:
    """Each layer's exemplar crops and maximising inputs (``convlens analyze`` wrote them)."""
    if not run.channels or run.analysis is None or not run.analysis.channels:
        return
    for rec in run.analysis.channels:
        for name, grid in channel_grids(run.channels, rec.layer).items():
            tag = f"channels/{rec.layer}/{name}"
            w.add_image(tag, grid, run.last_epoch, dataformats="HW")
            s.images[tag] = s.images.get(tag, 0) + 1


def _kernels(w: Any, s: ExportSummary, key: str, weight: NDArray[Any], epoch: int) -> None:
    tag = f"kernels/{key.removesuffix('.weight')}"
    w.add_image(tag, kernel_grid(weight), epoch, dataformats="HW")
    s.images[tag] = s.images.get(tag, 0) + 1


def _histograms(w: Any, s: ExportSummary, tensors: dict[str, NDArray[Any]], epoch: int) -> None:
    for name, t in tensors.items():
        a = np.asarray(t, np.float64).ravel()
        finite = a[np.isfinite(a)]
        if finite.size < a.size:  # NaN/inf weights (a diverged run): histogram the rest, say so
            s.non_finite[name] = s.non_finite.get(name, 0) + int(a.size - finite.size)
        if finite.size:
            w.add_histogram(f"weights/{name}", finite, epoch)
            s.histograms[f"weights/{name}"] = s.histograms.get(f"weights/{name}", 0) + 1


@contextlib.contextmanager
def _writer_thread_errors() -> Iterator[list[BaseException]]:
    """Collect the exceptions of TensorBoard's background writer thread instead of letting Python
    print their tracebacks (the export then fails with one line, from the first of them)."""
    errors: list[BaseException] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            errors.append(args.exc_value)

    threading.excepthook = hook
    try:
        yield errors
    finally:
        threading.excepthook = previous


def export_tensorboard(run_dir: str | Path, out_dir: str | Path) -> ExportSummary:
    """Write the run in ``run_dir`` as TensorBoard events under ``out_dir/<run folder name>``.

    Refuses a path that is not a convlens run and a target that already holds files; reads the
    whole run first, so a corrupt file is refused before anything is written."""
    root = Path(run_dir)
    if not RunLayout(root).is_run():
        raise ConvlensError(f"{str(root)!r} is not a convlens run directory (no run.json)")
    name = root.resolve().name or "run"
    out = Path(out_dir)
    target = out / name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConvlensError(
            f"{str(target)!r} already exists and is not empty; choose another TensorBoard folder"
        )
    run = _read_run(root)
    created = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=out))
    try:
        s = ExportSummary(target)
        with _writer_thread_errors() as thread_errors:
            w = _summary_writer(tmp)
            try:
                _scalars(w, run, s)
                _images(w, run, s)
            finally:
                w.close()
        if thread_errors:  # e.g. a full disk met by TensorBoard's writer thread
            raise thread_errors[0]
        if target.is_dir():
            target.rmdir()  # empty (checked above)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # the folders this export made, innermost first, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return s


def read_events(log_dir: str | Path) -> dict[str, Any]:
    """Every scalar, image and histogram in ``log_dir`` read back with TensorBoard's own
    ``EventAccumulator`` (no sample limit): ``{"scalars": {tag: [(step, value)]}, "images":
    {tag: [(step, width, height)]}, "histograms": {tag: [(step, count)]}}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(
        str(log_dir), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0}
    )
    acc.Reload()
    tags = acc.Tags()
    return {
        "scalars": {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]},
        "images": {t: [(e.step, e.width, e.height) for e in acc.Images(t)] for t in tags["images"]},
        "histograms": {
            t: [(e.step, e.histogram_value.num) for e in acc.Histograms(t)]
            for t in tags["histograms"]
        },
    }
