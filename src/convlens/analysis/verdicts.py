"""Verdicts on the seed's claims, computed from measured figures by stated thresholds.

1. "The layer computes cross-correlation": **exact** when every conv layer matches
   :func:`convlens.ops.correlate` within ``1e-9`` relative (float64) and differs from true convolution.
2. "A CNN learns approximations of classical kernels in its first layer": the number ``x`` of ``n``
   first-layer kernels above the random null's 95th percentile is compared with chance (5%) by a
   one-sided binomial tail ``P(X >= x | n, 0.05)``: **yes** when ``x/n >= 20%`` and the tail < 0.01;
   **weak** when the tail < 0.05; otherwise **no evidence**.
3. "A face-trained net barely reacts to bicycles": per layer and OOD set, from
   :func:`convlens.analysis.activations.verdict` (AUROC and bootstrap CI rule).
"""

from __future__ import annotations

import math
from typing import Any

KERNEL_MIN_FRACTION = 0.2
KERNEL_P_STRONG = 0.01
KERNEL_P_WEAK = 0.05
CHANCE = 0.05


def binomial_tail(x: int, n: int, p: float = CHANCE) -> float:
    """``P(X >= x)`` for ``X ~ Binomial(n, p)``."""
    if x <= 0:
        return 1.0
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(x, n + 1)))


def kernel_verdict(fraction: float | None, n: int) -> dict[str, Any]:
    if fraction is None or n == 0:
        return {"verdict": "not measured", "p_value": None, "above": None, "n": n}
    x = round(fraction * n)
    p = binomial_tail(x, n)
    if fraction >= KERNEL_MIN_FRACTION and p < KERNEL_P_STRONG:
        v = "yes"
    elif p < KERNEL_P_WEAK:
        v = "weak"
    else:
        v = "no evidence"
    return {
        "verdict": v,
        "p_value": p,
        "above": x,
        "n": n,
        "fraction": fraction,
        "chance": CHANCE,
        "rule": f"yes: fraction >= {KERNEL_MIN_FRACTION:.0%} and binomial tail vs {CHANCE:.0%} chance "
        f"< {KERNEL_P_STRONG}; weak: tail < {KERNEL_P_WEAK}; else no evidence",
    }


def verdicts(a: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    checks = a.get("verify") or []
    if checks:
        exact = all(c["is_cross_correlation"] for c in checks)
        flips = all(c["max_abs_diff_convolve"] > 1e-6 * max(c["output_scale"], 1.0) for c in checks)
        out["cross_correlation"] = {
            "verdict": "exact" if exact else "not exact",
            "differs_from_convolution": flips,
            "max_abs_diff": max(c["max_abs_diff_correlate"] for c in checks),
            "rule": "exact: every conv layer equals convlens.ops.correlate within 1e-9 (relative, float64)",
        }
    matching = a.get("matching") or []
    if matching and not matching[0].get("skipped"):
        m = matching[0]
        out["classical_kernels"] = {
            "layer": m["layer"],
            **kernel_verdict(m["fraction_above_null95"], m["n_kernels"]),
        }
        out["classical_kernels_spectrum_null"] = {
            "layer": m["layer"],
            **kernel_verdict(m.get("fraction_above_spectrum_null95"), m["n_kernels"]),
        }
    dist = a.get("distribution")
    if dist:
        out["ood_activation"] = {
            layer: {o: v["verdict"] for o, v in e["ood"].items()}
            for layer, e in dist["layers"].items()
        }
        out["ood_rule"] = dist.get("rule")
    return out
