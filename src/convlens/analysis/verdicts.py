"""Verdicts on the seed's claims, computed from measured figures by stated thresholds.

1. "The layer computes cross-correlation": **exact** when every conv layer matches
   :func:`convlens.ops.correlate` within ``1e-9`` relative (float64) and differs from true convolution.
2. "A CNN learns approximations of classical kernels in its first layer": the number ``x`` of ``n``
   first-layer kernels above the random null's 95th percentile is compared with chance (5%) by a
   one-sided binomial tail ``P(X >= x | n, 0.05)``: **yes** when ``x/n >= 20%`` and the tail < 0.01;
   **weak** when the tail < 0.05; otherwise **no evidence**.
3. "A face-trained net barely reacts to bicycles": per layer and OOD set, from
   :func:`convlens.analysis.activations.verdict` (AUROC and bootstrap CI rule).

"First layer" is the first conv layer in execution order (``AnalysisResult.first_layer``).
"""

from __future__ import annotations

import math

from convlens.analysis.result import (
    AnalysisResult,
    CrossCorrelationVerdict,
    Headline,
    KernelVerdict,
    Verdicts,
)

KERNEL_MIN_FRACTION = 0.2
KERNEL_P_STRONG = 0.01
KERNEL_P_WEAK = 0.05
CHANCE = 0.05


def binomial_tail(x: int, n: int, p: float = CHANCE) -> float:
    """``P(X >= x)`` for ``X ~ Binomial(n, p)``."""
    if x <= 0:
        return 1.0
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(x, n + 1)))


def kernel_verdict(fraction: float | None, n: int, layer: str | None = None) -> KernelVerdict:
    if fraction is None or n == 0:
        return KernelVerdict(verdict="not measured", n=n, layer=layer)
    x = round(fraction * n)
    p = binomial_tail(x, n)
    if fraction >= KERNEL_MIN_FRACTION and p < KERNEL_P_STRONG:
        v = "yes"
    elif p < KERNEL_P_WEAK:
        v = "weak"
    else:
        v = "no evidence"
    return KernelVerdict(
        verdict=v,
        n=n,
        p_value=p,
        above=x,
        fraction=fraction,
        chance=CHANCE,
        rule=f"yes: fraction >= {KERNEL_MIN_FRACTION:.0%} and binomial tail vs {CHANCE:.0%} chance "
        f"< {KERNEL_P_STRONG}; weak: tail < {KERNEL_P_WEAK}; else no evidence",
        layer=layer,
    )


def verdicts(a: AnalysisResult) -> Verdicts:
    out = Verdicts()
    checks = [r.check for r in a.layers if r.check is not None]
    if checks:
        exact = all(c.is_cross_correlation for c in checks)
        flips = all(c.max_abs_diff_convolve > 1e-6 * max(c.output_scale, 1.0) for c in checks)
        out.cross_correlation = CrossCorrelationVerdict(
            verdict="exact" if exact else "not exact",
            differs_from_convolution=flips,
            max_abs_diff=max(c.max_abs_diff_correlate for c in checks),
            rule="exact: every conv layer equals convlens.ops.correlate within 1e-9 (relative, float64)",
        )
    first = a.first_layer
    m = first.matching if first is not None else None
    if m is not None and not m.skipped:
        out.classical_kernels = kernel_verdict(m.fraction_above_null95, m.n_kernels, m.layer)
        out.classical_kernels_spectrum_null = kernel_verdict(
            m.fraction_above_spectrum_null95, m.n_kernels, m.layer
        )
    if a.distribution is not None:
        out.ood_activation = {
            r.name: {o: v.verdict for o, v in r.distribution.ood.items()}
            for r in a.layers
            if r.distribution is not None
        }
        out.ood_rule = a.distribution.rule
    return out


def headline(a: AnalysisResult) -> Headline:
    """The few figures printed first (from the layers and the run, nothing recomputed)."""
    h = Headline()
    if a.run is not None and a.run.result is not None:
        h.test_accuracy = a.run.result.test_accuracy
    first = a.first_layer
    m = first.matching if first is not None else None
    if first is not None and m is not None:
        h.first_layer = first.name
        h.first_layer_fraction_above_null95 = m.fraction_above_null95
        h.first_layer_init_fraction_above_null95 = m.init_fraction_above_null95
        h.null_p95 = m.null.p95 if m.null is not None else None
    checks = [r.check for r in a.layers if r.check is not None]
    if checks:
        h.max_abs_diff_correlate = max(c.max_abs_diff_correlate for c in checks)
        h.min_abs_diff_convolve = min(c.max_abs_diff_convolve for c in checks)
        h.all_layers_cross_correlation = all(c.is_cross_correlation for c in checks)
    for r in a.layers:
        if r.distribution is not None:
            h.auroc[r.name] = {o: v.auroc for o, v in r.distribution.ood.items()}
            h.ood_verdicts[r.name] = {o: v.verdict for o, v in r.distribution.ood.items()}
    return h
