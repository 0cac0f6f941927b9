"""The typed records of a run directory: its configuration, the specs it records, ``run.json``
itself and the rows of ``metrics.jsonl``.

- :class:`RunConfig`: the training configuration (``run.json`` ``config``; what ``convlens
  train`` takes). The one definition of its fields, their validation, and the one mapping to and
  from the command line: :meth:`RunConfig.to_cli_args` (every reproduce or control command convlens
  prints is built from it, through :meth:`RunConfig.command`) and :meth:`RunConfig.from_cli` (what
  the ``train`` command builds its config with).
- :class:`ModelSpec` (``model``), :class:`DatasetSpec` (``dataset``), :class:`OodRecord`,
  :class:`ProbeRecord`, :class:`TrainOutcome` (``result``) and :class:`RunRecord`, the whole file.
- :class:`MetricsRow`: one epoch of ``metrics.jsonl``.

Records read from disk are untrusted: :func:`parse` checks every field's type (a missing field
with a default takes it) and every failure is one :class:`ConvlensError` naming the file and field.
Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

from convlens._serde import SchemaError, from_jsonable, to_jsonable
from convlens.errors import ConvlensError
from convlens.runs.schedule import parse_epochs, snapshot_schedule

T = TypeVar("T")

RUN_FORMAT = "convlens-run/1"
"""``run.json`` ``format``."""

OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
#: seeds go to torch.manual_seed, torch.Generator and numpy, which all take 0 .. 2**32 - 1
MAX_SEED = 2**32 - 1
MAX_LR = 1e30
"""Learning rates above this are refused: torch converts them to float32 (max ~3.4e38) inside the
optimizer step, which raises instead of training. Large but representable rates are allowed; a loss
that becomes NaN/Inf stops the run with a clear error."""
MAX_WEIGHT_DECAY = 1e30
"""Weight decay above this is refused, and so is ``lr * weight_decay`` above it (AdamW and SGD use
the product as a float32 factor)."""

# integer fields of RunConfig: (smallest, largest, name in messages)
_INT_FIELDS = {
    "epochs": (1, 1_000_000, "epochs"),
    "batch_size": (1, 2**31 - 1, "batch size"),
    "seed": (0, MAX_SEED, "seed"),
    "ood_size": (1, 1_000_000, "OOD set size"),
    "probes_per_set": (1, 100_000, "probes per set"),
    "first_kernel": (1, 1_000, "first-layer kernel size"),
}
_SET_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
NO_SETS = "none"
"""``--ood none``: no OOD sets at all (``ood = []``)."""

FEATURE_MAPS_DERIVED = (
    "derived on read from snapshots/epoch-NNN.safetensors and the probe images: each conv layer's "
    "output before ReLU (cross-correlation + bias, zero padding kernel // 2), the next conv reading "
    "it after ReLU and max-pooling; exact engine in float64, stored as float32. "
    "probes/inputs.safetensors holds the training probes; the OOD probes are rebuilt from their "
    "recipes (make_ood with this run's seed, set size and training mean/std)"
)
"""How a run with snapshots keeps its probe feature maps (run.json ``feature_maps``): derived when
read by :mod:`convlens.analysis.measure.probemaps`."""
FEATURE_MAPS_WRITTEN = (
    "probes/epoch-NNN.safetensors hold each conv layer's output before ReLU "
    "(cross-correlation + bias), float32, keyed by layer name"
)
"""... and a run with probes but no snapshots, which writes them during training."""


# ----------------------------------------------------------------------------- the config
@dataclass
class RunConfig:
    """A training run's configuration: what ``convlens train`` takes and ``run.json`` records as
    ``config``. ``None`` means "the default": the dataset's model, every bundled OOD set but the
    data itself, the preset's first-layer kernel size, the log-spaced snapshot cadence."""

    data: str = "faces"
    model: str | None = None  # None: the dataset's default
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    seed: int = 0
    device: str = "auto"
    ood: list[str] | None = None  # None: every bundled OOD set except the dataset itself
    ood_size: int = 100
    probes_per_set: int = 4
    snapshots: bool = True
    probes: bool = True
    first_kernel: int | None = None  # None: the model preset's first-layer kernel size
    shuffle_labels: bool = False  # random-label control: training labels permuted
    # snapshot (and checkpoint) cadence, see runs/schedule.py; both None: log-spaced epochs
    snapshot_every: int | None = None
    snapshot_epochs: list[int] | None = None

    def validate(self) -> None:
        """Raise :class:`ConvlensError` naming the first field with a bad type or value (a config
        can come from a hand-edited ``run.json``)."""
        for name, (lo, hi, what) in _INT_FIELDS.items():
            v = getattr(self, name)
            if v is None and name == "first_kernel":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not (lo <= v <= hi):
                raise ConvlensError(f"{what} must be an integer from {lo} to {hi}, got {v!r}")
        for name, what in (("lr", "learning rate"), ("weight_decay", "weight decay")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ConvlensError(f"{what} must be a finite number, got {v!r}")
        if not self.snapshots and (self.snapshot_every is not None or self.snapshot_epochs):
            which = "--snapshot-every" if self.snapshot_every is not None else "--snapshot-epochs"
            raise ConvlensError(
                f"{which} sets when snapshots are taken, but snapshots are off (--no-snapshots); "
                "drop one of the two"
            )
        if not 0 < self.lr <= MAX_LR:
            raise ConvlensError(f"learning rate must be in (0, {MAX_LR:g}], got {self.lr}")
        if not 0 <= self.weight_decay <= MAX_WEIGHT_DECAY:
            raise ConvlensError(
                f"weight decay must be in [0, {MAX_WEIGHT_DECAY:g}], got {self.weight_decay}"
            )
        if self.lr * self.weight_decay > MAX_WEIGHT_DECAY:
            raise ConvlensError(
                f"learning rate x weight decay must be <= {MAX_WEIGHT_DECAY:g}, got "
                f"{self.lr} x {self.weight_decay}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConvlensError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.device not in DEVICES:
            raise ConvlensError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if not isinstance(self.data, str) or (
            self.model is not None and not isinstance(self.model, str)
        ):
            raise ConvlensError(f"data and model must be text, got {self.data!r}, {self.model!r}")
        if self.ood is not None and not (
            isinstance(self.ood, list)
            and all(isinstance(o, str) and _SET_NAME.match(o) and o != NO_SETS for o in self.ood)
        ):
            raise ConvlensError(
                f"ood must be a list of set names (letters, digits, . _ + -), got {self.ood!r}"
            )
        for name in ("snapshots", "probes", "shuffle_labels"):
            if not isinstance(getattr(self, name), bool):
                raise ConvlensError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.snapshot_epochs is not None and not (
            isinstance(self.snapshot_epochs, list) and self.snapshot_epochs
        ):
            raise ConvlensError(
                f"snapshot epochs must be a non-empty list, got {self.snapshot_epochs!r}"
            )
        self.schedule()

    def schedule(self) -> list[int]:
        """The epochs that get a weight snapshot (their probe maps are derived from it); metrics
        and checkpoints are written at some of them (see ``Trainer._loop``)."""
        return snapshot_schedule(self.epochs, self.snapshot_every, self.snapshot_epochs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "run.json config") -> RunConfig:
        """The config recorded in ``data`` (a missing field takes its default; an unknown field
        or a bad value is an error naming ``where``)."""
        if not isinstance(data, dict):
            raise ConvlensError(f"{where} is not a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConvlensError(f"{where} has unknown field {unknown[0]!r}")
        cfg = cls(**data)
        try:
            cfg.validate()
        except ConvlensError as exc:
            raise ConvlensError(f"{where}: {exc}") from None
        return cfg

    # -- the command line ---------------------------------------------------------------------
    def to_cli_args(self) -> list[str]:
        """The ``convlens train`` options that rebuild exactly this config (every field; a
        ``None`` field is the option left out, which is its default)."""
        args: list[str] = []
        for name, flag in _VALUE_OPTIONS.items():
            v = getattr(self, name)
            if v is None:
                continue
            if name == "ood":
                args += [flag, ",".join(v) if v else NO_SETS]
            elif name == "snapshot_epochs":
                args += [flag, ",".join(str(e) for e in v)]
            else:
                args += [flag, repr(v) if isinstance(v, float) else str(v)]
        if self.shuffle_labels:
            args.append("--shuffle-labels")
        if not self.snapshots:
            args.append("--no-snapshots")
        if self.probes != self.snapshots:  # --no-snapshots also drops the probes unless told
            args.append("--probes" if self.probes else "--no-probes")
        return args

    def command(self, out: str | Path, *, world_size: int = 1) -> str:
        """The shell line (``shlex.join``) that trains this config into ``out``: ``convlens
        train ...``, or under torchrun with ``world_size`` ranks when the run was trained so
        (``--batch-size`` is per rank)."""
        launch = ["convlens", "train"]
        if world_size > 1:
            launch = ["torchrun", "--nproc_per_node", str(world_size), "-m", "convlens", "train"]
        return shlex.join([*launch, *self.to_cli_args(), "--out", str(out)])

    @classmethod
    def from_cli(cls, params: Mapping[str, Any]) -> RunConfig:
        """The config of the ``train`` command's parsed options (click's parameter names: the
        field names, ``ood`` and ``snapshot_epochs`` as typed, ``no_snapshots`` and ``probes``
        (``None``: as the snapshots)). Not validated: the training validates."""
        d = cls()
        kw: dict[str, Any] = {
            name: params.get(name, getattr(d, name))
            for name in _VALUE_OPTIONS
            if name not in ("ood", "snapshot_epochs")
        }
        ood, listed = params.get("ood"), params.get("snapshot_epochs")
        kw["ood"] = parse_set_names(ood) if isinstance(ood, str) else ood
        kw["snapshot_epochs"] = parse_epochs(listed) if isinstance(listed, str) else listed
        kw["shuffle_labels"] = bool(params.get("shuffle_labels", False))
        kw["snapshots"] = not params.get("no_snapshots", False)
        probes = params.get("probes")
        kw["probes"] = kw["snapshots"] if probes is None else bool(probes)
        return cls(**kw)


#: fields given as ``--flag VALUE`` (in this order on a rebuilt command line)
_VALUE_OPTIONS = {
    name: "--" + name.replace("_", "-")
    for name in (
        "data",
        "model",
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "optimizer",
        "seed",
        "device",
        "ood",
        "ood_size",
        "probes_per_set",
        "first_kernel",
        "snapshot_every",
        "snapshot_epochs",
    )
}

CLI_PARAMS: dict[str, str] = {
    **{name: name for name in _VALUE_OPTIONS},
    "shuffle_labels": "shuffle_labels",
    "no_snapshots": "snapshots",
    "probes": "probes",
}
"""The ``train`` command's parameter (click's name) -> the config field it sets."""


def cli_option(name: str, value: Any) -> str:
    """How config field ``name`` with ``value`` is typed on the command line (for messages)."""
    if name == "snapshots":
        return "--snapshots" if value else "--no-snapshots"
    if name == "probes":
        return "--probes" if value else "--no-probes"
    if name == "shuffle_labels":
        return "--shuffle-labels" if value else "(no --shuffle-labels)"
    flag = _VALUE_OPTIONS[name]
    if name == "ood" and isinstance(value, list):
        return f"{flag} {','.join(value) or NO_SETS}"
    if name == "snapshot_epochs" and isinstance(value, list):
        return f"{flag} {','.join(map(str, value))}"
    return f"{flag} {value!r}"


def parse_set_names(text: str) -> list[str]:
    """``--ood``: ``"motorcycle,noise"`` -> ``["motorcycle", "noise"]``; ``"none"`` -> ``[]``."""
    if text.strip() == NO_SETS:
        return []
    names = [n.strip() for n in text.split(",")]
    for n in names:
        if not _SET_NAME.match(n) or n == NO_SETS:
            raise ConvlensError(
                f"OOD sets must be a comma-separated list of set names (or {NO_SETS}), got {text!r}"
            )
    return names


# ----------------------------------------------------------------------------- the specs
@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network (saved in ``run.json``)."""

    name: str
    in_channels: int
    input_hw: tuple[int, int]
    n_classes: int
    channels: tuple[int, ...] = (8, 16)
    kernels: tuple[int, ...] = (5, 3)
    pool: tuple[int, ...] = (2, 2)
    hidden: int = 32
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_hw"] = list(self.input_hw)
        for k in ("channels", "kernels", "pool"):
            d[k] = list(d[k])
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ModelSpec:
        try:
            return ModelSpec(
                name=str(d["name"]),
                in_channels=int(d["in_channels"]),
                input_hw=(int(d["input_hw"][0]), int(d["input_hw"][1])),
                n_classes=int(d["n_classes"]),
                channels=tuple(int(v) for v in d["channels"]),
                kernels=tuple(int(v) for v in d["kernels"]),
                pool=tuple(int(v) for v in d["pool"]),
                hidden=int(d["hidden"]),
                extra=dict(d.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConvlensError(f"invalid model spec {d!r:.200}: {exc}") from None


@dataclass
class DatasetSpec:
    """The training data as recorded (``run.json`` ``dataset``): name, source, item shape, counts
    per class and split, and the normalisation applied."""

    name: str
    source: str
    shape: list[int]
    n: int
    classes: list[str]
    class_counts: dict[str, int]
    splits: dict[str, int]
    normalisation: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class OodRecord:
    """One OOD set of the run: name, size and how it is made."""

    name: str
    n: int
    description: str


@dataclass
class ProbeRecord:
    """One probe image: the set it comes from, its index there and (training probes) its class."""

    set: str
    index: int
    label: str | None = None


@dataclass
class TrainOutcome:
    """How the training run ended (from ``run.json``)."""

    test_accuracy: float | None = None
    test_loss: float | None = None
    epochs_completed: int | None = None
    train_seconds: float | None = None
    final_val_accuracy: float | None = None


@dataclass(kw_only=True)
class RunRecord:
    """``run.json``: the run's config and what the trainer recorded about it; ``status``
    ``running`` until training ends, then ``complete`` with ``result``."""

    format: str = RUN_FORMAT
    status: str = "complete"
    config: RunConfig
    dataset: DatasetSpec
    model: ModelSpec
    ood: list[OodRecord] = field(default_factory=list)
    seed: int = 0
    device: str | None = None  # the device it trained on, e.g. "cpu", "cuda:0"
    world_size: int = 1  # ranks that trained it (torchrun; --batch-size is per rank)
    backend: str = "none"
    versions: dict[str, str] = field(default_factory=dict)
    conv_layers: list[str] = field(default_factory=list)
    probes: list[ProbeRecord] = field(default_factory=list)
    snapshot_epochs: list[int] = field(default_factory=list)
    feature_maps: str | None = None
    label_permutation: str | None = None
    result: TrainOutcome | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written as ``run.json`` (``label_permutation``, ``result`` and the
        dataset's ``extra`` only when there is one)."""
        d: dict[str, Any] = to_jsonable(self)
        for key in ("label_permutation", "result"):
            if d[key] is None:
                del d[key]
        if not d["dataset"]["extra"]:
            del d["dataset"]["extra"]
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str = "run.json") -> RunRecord:
        """A ``run.json`` object, every field checked; a clear error naming ``where``."""
        if not isinstance(data, dict):
            raise ConvlensError(f"{where} does not hold a JSON object")
        fmt = data.get("format", RUN_FORMAT)
        if fmt != RUN_FORMAT:
            raise ConvlensError(f"{where} has format {fmt!r}; this version reads {RUN_FORMAT!r}")
        return parse(cls, data, where)


@dataclass
class MetricsRow:
    """One epoch of ``metrics.jsonl``."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- reading records
@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def parse(cls: type[T], data: Any, where: str) -> T:
    """A record dataclass from untrusted JSON ``data`` read from ``where`` (a file, a line):
    every field's type checked, a missing field with a default takes it; unknown fields are
    ignored at the top and refused inside (the specs convlens writes). A :class:`RunConfig` is read
    by :meth:`RunConfig.from_dict` (validated, unknown fields refused). Every failure is one
    :class:`ConvlensError` naming ``where`` and the field."""
    return typing.cast(T, _record(cls, data, where, "", top=True))


def _record(cls: type, data: Any, where: str, path: str, *, top: bool = False) -> Any:
    if cls is RunConfig:
        return RunConfig.from_dict(data, f"{where}: {path or 'config'}")
    if not isinstance(data, dict):
        what = f"{where}: {path}" if path else where
        raise ConvlensError(f"{what}: expected a JSON object, got {type(data).__name__}")
    fields = dataclasses.fields(cls)
    extra = sorted(set(data) - {f.name for f in fields})
    if extra and not top:
        raise ConvlensError(f"{where}: {path}: unexpected field {extra[0]!r}")
    kwargs: dict[str, Any] = {}
    hints = _hints(cls)
    for f in fields:
        sub = f"{path}.{f.name}" if path else f.name
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConvlensError(f"{where}: {sub}: missing")
            continue
        kwargs[f.name] = _value(hints[f.name], data[f.name], where, sub)
    return cls(**kwargs)


def _value(tp: Any, value: Any, where: str, path: str) -> Any:
    """``value`` as ``tp``: nested records through :func:`_record`, the rest by ``_serde``."""
    if get_origin(tp) in (Union, types.UnionType) and value is not None:
        arms = [a for a in get_args(tp) if a is not type(None)]
        if len(arms) == 1:
            tp = arms[0]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _record(tp, value, where, path)
    if get_origin(tp) is list and dataclasses.is_dataclass(get_args(tp)[0]):
        if not isinstance(value, list):
            raise ConvlensError(
                f"{where}: {path}: expected a JSON array, got {type(value).__name__}"
            )
        sub = get_args(tp)[0]
        return [_record(sub, v, where, f"{path}[{i}]") for i, v in enumerate(value)]
    try:
        return from_jsonable(tp, value, path)
    except SchemaError as exc:
        raise ConvlensError(f"{where}: {exc}") from None
