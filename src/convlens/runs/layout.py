"""Every name in a run directory, in one place.

```
RUN/
  run.json                          the run record (records.RunRecord)
  metrics.jsonl                     one records.MetricsRow per epoch
  snapshots/epoch-NNN.safetensors   conv weights at the snapshot epochs (000 = initialisation)
  probes/inputs.safetensors         the fixed probe images
  probes/epoch-NNN.safetensors      probe feature maps (runs with probes but no snapshots)
  model.safetensors                 final weights (its absence: a partial run)
  checkpoint/state.pt               resumable state
  analysis.json, report.html        written by `convlens analyze` / `convlens report`
  seeds.json, seeds/seed-N/, seeds/random-labels-seed-N/, seeds/no-weight-decay-seed-N/, demo.json   the demo's
  .lock                             held by the process writing the run
```

:class:`RunLayout` gives the paths of one run directory; the writer (``train.rundir.RunDir``)
and every reader build their paths from it, so no other module spells these names.
"""

from __future__ import annotations

import re
from pathlib import Path

from convlens.errors import ConvlensError

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.safetensors"
ANALYSIS_FILE = "analysis.json"
REPORT_FILE = "report.html"
SEEDS_FILE = "seeds.json"
DEMO_FILE = "demo.json"
LOCK_FILE = ".lock"
SNAPSHOTS_DIR = "snapshots"
PROBES_DIR = "probes"
PROBE_INPUTS_FILE = "inputs.safetensors"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"
FIGURES_DIR = "figures"
SEEDS_DIR = "seeds"

MODEL_ANALYSIS_SUFFIX = ".analysis.json"
"""A model file's analysis is written beside it as ``MODEL.analysis.json``."""
MODEL_REPORT_SUFFIX = ".report.html"
"""... and its report as ``MODEL.report.html``."""
MODEL_KERNELS_SUFFIX = ".kernels.safetensors"
"""... and, for a file that is not safetensors (``.pt``, ``.onnx``, ...), its conv kernels as
``MODEL.kernels.safetensors``: the report draws them without torch or onnx."""


CHANNELS_FILE = "channels.safetensors"
"""The exemplar crops and maximising inputs of an analysis (``AnalysisResult.channels``), beside
its JSON: ``RUN/channels.safetensors``, or ``MODEL.channels.safetensors``."""


def channels_path(analysis: Path) -> Path:
    """Where the channel arrays of the analysis at ``analysis`` are."""
    name = analysis.name
    if name == "analysis.json":
        return analysis.with_name(CHANNELS_FILE)
    stem = (
        name[: -len(MODEL_ANALYSIS_SUFFIX)]
        if name.endswith(MODEL_ANALYSIS_SUFFIX)
        else analysis.stem
    )
    return analysis.with_name(f"{stem}.{CHANNELS_FILE}")


def model_kernels_path(analysis: Path) -> Path:
    """The conv kernels written beside a model file's analysis (``MODEL.analysis.json`` ->
    ``MODEL.kernels.safetensors``; another name gets the suffix appended to its stem)."""
    name = analysis.name
    stem = (
        name[: -len(MODEL_ANALYSIS_SUFFIX)]
        if name.endswith(MODEL_ANALYSIS_SUFFIX)
        else analysis.stem
    )
    return analysis.with_name(stem + MODEL_KERNELS_SUFFIX)


EPOCH_GLOB = "epoch-*.safetensors"
_EPOCH_NAME = re.compile(r"^epoch-([0-9]+)\.safetensors$")

#: files convlens writes at the top of a run directory (train, analyze, report, demo)
OWN_FILES = (RUN_FILE, METRICS_FILE, MODEL_FILE, ANALYSIS_FILE, REPORT_FILE, SEEDS_FILE, DEMO_FILE)
#: folders convlens writes, with the names it writes inside them
OWN_FOLDERS = {
    SNAPSHOTS_DIR: re.compile(r"^epoch-\d{3,}\.safetensors$"),
    PROBES_DIR: re.compile(r"^(epoch-\d{3,}|inputs)\.safetensors$"),
    CHECKPOINT_DIR: re.compile(r"^state\.pt$"),
    FIGURES_DIR: re.compile(r"^[A-Za-z0-9_.-]+\.png$"),
}
SEED_RUN = re.compile(r"^(random-labels-|no-weight-decay-)?seed-\d+$")
"""The demo's other runs under ``seeds/``: ``seed-N``, their controls ``random-labels-seed-N`` and the
reference ``no-weight-decay-seed-N``."""


def epoch_name(epoch: int) -> str:
    """``epoch-NNN.safetensors`` (at least three digits)."""
    return f"epoch-{epoch:03d}.safetensors"


def epoch_of(path: Path) -> int:
    """The epoch of ``epoch-NNN.safetensors`` (a clear error for any other name)."""
    m = _EPOCH_NAME.match(path.name)
    if m is None:
        raise ConvlensError(f"{str(path)!r}: expected a file named epoch-NNN.safetensors")
    return int(m.group(1))


def epoch_files(folder: Path) -> dict[int, Path]:
    """Every ``epoch-*.safetensors`` in ``folder`` by epoch, ascending; empty without the folder.
    A file of that pattern that is not ``epoch-NNN`` is a clear error."""
    if not folder.is_dir():
        return {}
    found = {epoch_of(f): f for f in sorted(folder.glob(EPOCH_GLOB))}
    return dict(sorted(found.items()))


class RunLayout:
    """The paths of one run directory (nothing is read or written here)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def run_json(self) -> Path:
        return self.root / RUN_FILE

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def model(self) -> Path:
        return self.root / MODEL_FILE

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT_DIR / CHECKPOINT_FILE

    @property
    def snapshots_dir(self) -> Path:
        return self.root / SNAPSHOTS_DIR

    @property
    def probes_dir(self) -> Path:
        return self.root / PROBES_DIR

    def snapshot(self, epoch: int) -> Path:
        return self.snapshots_dir / epoch_name(epoch)

    def probe(self, epoch: int) -> Path:
        return self.probes_dir / epoch_name(epoch)

    @property
    def probe_inputs(self) -> Path:
        return self.probes_dir / PROBE_INPUTS_FILE

    @property
    def analysis(self) -> Path:
        return self.root / ANALYSIS_FILE

    @property
    def report(self) -> Path:
        return self.root / REPORT_FILE

    @property
    def seeds_json(self) -> Path:
        return self.root / SEEDS_FILE

    @property
    def demo(self) -> Path:
        return self.root / DEMO_FILE

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def seeds_dir(self) -> Path:
        return self.root / SEEDS_DIR

    def seed_run(self, seed: int) -> Path:
        """The demo's run of another seed: ``seeds/seed-N``."""
        return self.seeds_dir / f"seed-{seed}"

    def random_labels_run(self, seed: int) -> Path:
        """The demo's random-label control of a seed: ``seeds/random-labels-seed-N``."""
        return self.seeds_dir / f"random-labels-seed-{seed}"

    def reference_run(self, seed: int) -> Path:
        """The demo's reference run of a seed without weight decay: ``seeds/no-weight-decay-seed-N``."""
        return self.seeds_dir / f"no-weight-decay-seed-{seed}"

    def snapshot_files(self) -> dict[int, Path]:
        """The weight snapshots on disk by epoch, ascending (not necessarily contiguous)."""
        return epoch_files(self.snapshots_dir)

    def probe_files(self) -> dict[int, Path]:
        """The probe feature-map files on disk by epoch, ascending."""
        return epoch_files(self.probes_dir)

    def is_run(self) -> bool:
        return self.run_json.is_file()
