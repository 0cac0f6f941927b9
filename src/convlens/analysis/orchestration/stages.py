"""The analysis stages every path shares: a new result, the weight analysis (``analyze_weights``,
``match_layers``), the call checks and the activation distribution attached to the result.

Every number in the report comes from here, and every step is reproducible with
``convlens analyze`` (same seed, same null). Each stage is one small function that fills its
part of the result; layers are identified once (:mod:`convlens.analysis.model.layers`) and
everything per layer is attached to that identity.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.evidence.verdicts import headline, verdicts
from convlens.analysis.measure import caveats, matching
from convlens.analysis.measure.units import sees_colour
from convlens.analysis.model.loading import conv_weights
from convlens.analysis.model.weights_only import WeightsOnly
from convlens.analysis.orchestration.options import check_settings
from convlens.analysis.result import (
    SCHEMA_VERSION,
    AnalysisError,
    AnalysisResult,
    Headline,
    LayerCheck,
    LayerIdentity,
    LayerResult,
    Settings,
    Source,
    Verdicts,
)
from convlens.errors import ConvlensError

if TYPE_CHECKING:  # torch only where a model runs: a weights-only analysis never imports it
    from torch import nn

    from convlens.analysis.model.forward import SetActivations


class Timer:
    """Wall time of each named stage, in seconds (``timings_s`` of the result)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = round(time.perf_counter() - t0, 4)


def new_result(
    source: Source, settings: Settings, identities: list[LayerIdentity]
) -> AnalysisResult:
    layers = [
        LayerResult(identity=i, n_kernels=i.weight_shape[0] * i.weight_shape[1])
        for i in sorted(identities, key=lambda i: i.index)
    ]
    return AnalysisResult(SCHEMA_VERSION, source, settings, layers, Headline(), Verdicts())


def finish(result: AnalysisResult, timer: Timer) -> AnalysisResult:
    result.headline = headline(result)
    result.verdicts = verdicts(result)
    result.timings_s = timer.times
    return result


def by_name(result: AnalysisResult) -> dict[str, LayerResult]:
    return {r.name: r for r in result.layers}


def match_layers(
    result: AnalysisResult,
    weights: dict[str, NDArray[Any]],
    *,
    init: dict[str, NDArray[Any]] | None = None,
    first_only_gabor: bool = True,
    detail_limit: int = matching.DETAIL_LIMIT,
    detail_total: int = matching.DETAIL_TOTAL,
) -> None:
    """Kernel matching for every layer (weights looked up by the layer's weight key or name).

    One random null per kernel size (cached); the Gabor fit for the first layer only unless
    ``first_only_gabor`` is false. A layer whose weights hold NaN or Inf is not matched: its
    ``matching`` stays ``None`` and ``result.errors`` says why; when that is every layer with
    weights, a :class:`ConvlensError` is raised instead (nothing would be left to analyse).

    Per-kernel records (``LayerMatch.kernels``, ``channel_summed``) are kept for a layer with at most
    ``detail_limit`` kernels while the analysis holds at most ``detail_total`` such records in all
    (layers taken in execution order, so the first layer comes first); the other layers keep their
    summaries (fractions, nulls, categories) and a note names them."""
    n_null, seed = result.settings.n_null, result.settings.seed
    check_settings(n_null, seed)
    for what, v in (("detail_limit", detail_limit), ("detail_total", detail_total)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConvlensError(f"{what} must be a non-negative integer, got {v!r}")
    bad = nonfinite_layers(result, weights)
    budget = detail_total
    summary_only: list[str] = []
    for pos, layer in enumerate(result.layers):
        ident = layer.identity
        w = weights.get(ident.weight_key, weights.get(ident.name))
        if w is None:
            continue
        w = np.asarray(w)
        if ident.name in bad:
            layer.matching = None
            message = matching.nonfinite_message(ident.name, w) or ident.name
            result.errors.append(AnalysisError(stage="matching", message=message))
            continue
        skipped = matching.skip_reason(w)
        null = matching.random_null(int(w.shape[-1]), n_null, seed) if skipped is None else None
        init_w = None if init is None else init.get(ident.weight_key, init.get(ident.name))
        if init_w is not None and np.shape(init_w) != w.shape:
            result.notes.append(
                f"layer {ident.name}: epoch-000 weights have shape {list(np.shape(init_w))}, "
                f"not {list(w.shape)}; no epoch-000 null"
            )
            init_w = None
        layer.matching = matching.match_layer(
            ident.name,
            w,
            init_weight=init_w,
            n_null=n_null,
            null_scores=null,
            seed=seed,
            gabor=(pos == 0) or not first_only_gabor,
            detail_limit=min(detail_limit, budget),
            # the weight's channels: a space-to-depth stem's de-interleaved kernels read 3 colours
            colour=sees_colour(ident.index, int(w.shape[1]) if w.ndim == 4 else 0, ident.groups),
            spectra=pos == 0,
        )
        m = layer.matching
        caveats.add_quantisation_note(m, w)
        if m.skipped is None:
            if m.kernels:
                budget -= len(m.kernels)
            elif m.n_kernels:
                summary_only.append(ident.name)
    if summary_only:
        result.notes.append(
            f"per-kernel records kept only for layers with at most {detail_limit} kernels and "
            f"{detail_total} kernels in all; summaries only for {len(summary_only)} layer(s): "
            + ", ".join(summary_only)
        )


def nonfinite_layers(result: AnalysisResult, weights: dict[str, Any]) -> list[str]:
    """Names of the layers whose weights hold NaN or Inf. Raises :class:`ConvlensError` when no
    layer with weights has any to analyse (each is non-finite or zero-sized): one rule for both, as
    a model with nothing real to analyse is an error, while a model with *some* such layers is
    analysed and says which were skipped."""
    found, bad, messages, empty = 0, [], [], []
    for layer in result.layers:
        ident = layer.identity
        w = weights.get(ident.weight_key, weights.get(ident.name))
        if w is None:
            continue
        found += 1
        a = np.asarray(w)
        if a.size == 0:
            empty.append(f"{ident.name}: zero-sized weight {tuple(a.shape)}")
            continue
        msg = matching.nonfinite_message(ident.name, a)
        if msg is not None:
            bad.append(ident.name)
            messages.append(msg)
    if found and len(bad) == found:
        raise ConvlensError(
            f"every conv layer's weights hold NaN or Inf; nothing to analyse ({'; '.join(messages)})"
        )
    if found and len(bad) + len(empty) == found:
        raise ConvlensError(
            "no conv layer has weights to analyse (each is zero-sized or holds NaN/Inf): "
            + "; ".join(empty + messages)
        )
    return bad


def skip_for_nonfinite(result: AnalysisResult, stage: str, bad: list[str]) -> bool:
    """Record that ``stage`` is not run because layers ``bad`` hold NaN/Inf weights (True if so)."""
    if not bad:
        return False
    result.errors.append(
        AnalysisError(
            stage=stage,
            message=f"not run: layer(s) {', '.join(bad)} hold NaN or Inf weights, so the "
            "activations from them on are undefined",
        )
    )
    return True


def call_checks(
    result: AnalysisResult,
    modules: list[tuple[LayerIdentity, nn.Module]],
    bad: list[str],
    seed: int,
) -> None:
    for ident, _ in modules:
        if ident.name in bad:
            result.errors.append(
                AnalysisError(
                    stage="verify",
                    message=f"layer {ident.name}: weights hold NaN or Inf; not verified",
                )
            )
    from convlens.analysis.model import verify

    checks = [verify.check_layer(i.name, m, seed=seed) for i, m in modules if i.name not in bad]
    record_failed(result, checks)
    attach_checks(result, checks)


def record_failed(result: AnalysisResult, checks: list[LayerCheck]) -> None:
    for c in checks:
        if c.status == "failed":
            result.errors.append(
                AnalysisError(stage="verify", message=f"layer {c.layer}: not verified: {c.message}")
            )


def analyze_weights(
    weights: dict[str, Any],
    *,
    n_null: int = 2000,
    seed: int = 0,
    init: dict[str, Any] | None = None,
    first_only_gabor: bool = True,
    detail_limit: int = matching.DETAIL_LIMIT,
    detail_total: int = matching.DETAIL_TOTAL,
) -> list[LayerResult]:
    """Kernel matching for every conv weight (no architecture needed): layers in file order, the
    stem-like layer first (:data:`convlens.analysis.model.layers.STEM_RULE`)."""
    check_settings(n_null, seed)
    convs = conv_weights(weights)
    if not convs:
        raise ConvlensError(
            "no conv layers found (no tensors shaped (O, C, k), (O, C, k, k) or (O, C, k, k, k))"
        )
    adapter = WeightsOnly(convs)
    result = new_result(Source("model_file", ""), Settings(n_null, seed), adapter.layers())
    match_layers(
        result,
        adapter.weights(),
        init=init,
        first_only_gabor=first_only_gabor,
        detail_limit=detail_limit,
        detail_total=detail_total,
    )
    return result.layers


def attach_checks(result: AnalysisResult, checks: list[LayerCheck]) -> None:
    layers = by_name(result)
    for c in checks:
        if c.layer in layers:
            layers[c.layer].check = c
        else:
            result.notes.append(f"verification of {c.layer!r}: no such conv layer in the result")


def attach_distribution(
    result: AnalysisResult,
    id_set: SetActivations,
    ood_sets: list[SetActivations],
    descriptions: dict[str, str] | None = None,
    **extra: Any,
) -> None:
    """ID vs OOD per layer (``extra``: the keyword arguments of :func:`activations.compare`:
    ``sources``, ``others``, ``controls``, ``control_descriptions``)."""
    from convlens.analysis.measure import activations
    from convlens.parallel.dist import is_main

    if not is_main():  # under torchrun only rank 0 computes the bootstrap and AUROC
        return
    info, per_layer = activations.compare(
        id_set, ood_sets, seed=result.settings.seed, descriptions=descriptions, **extra
    )
    result.distribution = info
    layers = by_name(result)
    for name, dist in per_layer.items():
        if name in layers:
            layers[name].distribution = dist
    silent = [n for n, d in per_layer.items() if d.id_mean is not None and d.id_mean <= 0]
    if silent:
        result.notes.append(
            f"mean ID activation 0 at {', '.join(silent[:5])}{' ...' if len(silent) > 5 else ''}: "
            "the OOD/ID activation ratio is undefined there (no ratio, no interval)"
        )


# ----------------------------------------------------------------------------- training runs
