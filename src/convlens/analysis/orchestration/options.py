"""What an analysis is asked to do: :class:`AnalyzeOptions`, one frozen value built once (by the
``analyze`` command, the demo or a Python caller) and read by every step, instead of the same dozen
keyword arguments passed down each call. Torch-free: the CLI builds it without loading the
analysis."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convlens.analysis.evidence.verdicts import OOD_ALPHA, OOD_N_UNTRAINED
from convlens.analysis.measure import matching
from convlens.data.fit import FitOptions
from convlens.errors import ConvlensError

MIN_UNTRAINED = round(1 / OOD_ALPHA) - 1
"""The fewest untrained initialisations with which the empirical p ``(1 + k) / (1 + N)`` can reach
the OOD verdict's level (``1 / (1 + N) <= OOD_ALPHA``)."""
MAX_UNTRAINED = 1000


def check_untrained(n: int) -> None:
    """Refuse a number of untrained initialisations outside ``MIN_UNTRAINED..MAX_UNTRAINED``."""
    if isinstance(n, bool) or not isinstance(n, int) or not MIN_UNTRAINED <= n <= MAX_UNTRAINED:
        raise ConvlensError(
            f"untrained initialisations must be an integer in {MIN_UNTRAINED}..{MAX_UNTRAINED} "
            f"(with fewer, the empirical p (1 + k)/(1 + N) can never reach {OOD_ALPHA}), got {n!r}"
        )


def check_settings(n_null: int, seed: int) -> None:
    """Refuse a null size outside ``1..MAX_NULL_SIZE`` or a seed outside ``0..2**63-1``."""
    matching.check_null_size(n_null)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConvlensError(f"seed must be an integer in 0..2**63-1, got {seed!r}")


@dataclass(frozen=True)
class AnalyzeOptions:
    """The options of an analysis (``convlens analyze`` and its Python API).

    Every analysis reads ``n_null`` (random kernels in the null baseline), ``seed`` (of the null
    and the bootstraps) and ``detail_limit``/``detail_total`` (the per-kernel records kept,
    :func:`convlens.analysis.orchestration.stages.match_layers`) and ``n_untrained`` (untrained
    initialisations in the OOD verdict's untrained arm, :data:`MIN_UNTRAINED` at least). A training
    run directory also
    reads ``control_runs`` (random-label runs of the same recipe) and ``reference_runs`` (runs of
    the same model and data with another recipe); a model file reads ``factory``
    (``package.module:function`` building the model), ``data`` (run through the model), ``ood``
    (OOD set names; ``None``: the defaults) and ``fit`` (how the data are fitted to the model's
    input, :class:`convlens.data.fit.FitOptions`). :meth:`check_for` refuses an option the target
    does not read. Sequences are stored as tuples (a list given is converted)."""

    n_null: int = 2000
    seed: int = 0
    factory: str | None = None
    data: str | None = None
    ood: tuple[str, ...] | None = None
    control_runs: tuple[str | Path, ...] = ()
    reference_runs: tuple[str | Path, ...] = ()
    fit: FitOptions = field(default_factory=FitOptions)
    detail_limit: int = matching.DETAIL_LIMIT
    detail_total: int = matching.DETAIL_TOTAL
    n_untrained: int = OOD_N_UNTRAINED
    channels: bool = True
    """What each channel responds to (exemplars, maximising inputs; ``AnalysisResult.channels``)."""

    def __post_init__(self) -> None:
        if self.ood is not None and not isinstance(self.ood, tuple):
            object.__setattr__(self, "ood", tuple(self.ood))
        for name in ("control_runs", "reference_runs"):
            if not isinstance(getattr(self, name), tuple):
                object.__setattr__(self, name, tuple(getattr(self, name) or ()))
        if self.fit is None:
            object.__setattr__(self, "fit", FitOptions())

    @classmethod
    def of(cls, options: AnalyzeOptions | None, kw: dict[str, Any]) -> AnalyzeOptions:
        """``options``, or one built from the keyword arguments ``kw`` of a Python call (both at
        once is refused: which would win is not obvious)."""
        if options is None:
            return cls(**kw)
        if kw:
            raise TypeError(f"give AnalyzeOptions or keyword arguments, not both ({', '.join(kw)})")
        return options

    @property
    def fits_data(self) -> bool:
        """Whether any data fitting option differs from its default."""
        return self.fit != FitOptions()

    def check(self) -> None:
        """Refuse a bad null size, seed, number of untrained initialisations, layout, scale,
        normalisation or input size (one line)."""
        check_settings(self.n_null, self.seed)
        check_untrained(self.n_untrained)
        self.fit.check()

    def check_for(self, target: str | Path) -> None:
        """:meth:`check`, then refuse the options that ``target`` (a run directory or a model
        file) does not read, or that need another option given with them."""
        self.check()
        path = Path(target)
        if not path.exists():
            return  # reading it says what is wrong
        if path.is_dir():
            given = [n for n, v in (("factory", self.factory), ("data", self.data)) if v]
            given += ["ood"] if self.ood else []
            given += ["the data fitting options"] if self.fits_data else []
            if given:
                raise ConvlensError(
                    f"{str(target)!r} is a run directory: its model, data and OOD sets are the "
                    f"ones recorded in its run.json ({', '.join(given)}: for model files only)"
                )
            return
        if self.control_runs or self.reference_runs:
            raise ConvlensError(
                f"{str(target)!r} is a model file: a control or reference run is compared with a "
                "training run directory of the same model and data"
            )
        if self.fit.inputs and path.suffix.lower() != ".onnx":
            raise ConvlensError(
                f"--input feeds an ONNX graph's other inputs; {str(target)!r} is not an .onnx file"
            )
        runnable = self.factory is not None or path.suffix.lower() == ".onnx"
        if not runnable and (self.data is not None or self.ood):
            raise ConvlensError(
                f"{str(target)!r} holds weights only: activations on data need the architecture "
                "(a factory building the model) or an .onnx file",
                hint_key="needs_factory",
            )
        if self.ood and self.data is None:
            raise ConvlensError("OOD sets are compared with a dataset: give the data as well")
        if self.data is None and self.fits_data:
            raise ConvlensError(
                "the data fitting options (layout, normalisation, scale, input size, output) "
                "apply to data run through the model: give the data as well"
            )
