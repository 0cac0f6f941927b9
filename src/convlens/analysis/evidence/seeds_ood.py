"""The OOD "learned" verdict decided on all seeds at once, with the **networks** as the unit.

One run's verdict (:func:`convlens.analysis.evidence.verdicts.ood_learned_verdict`) compares one
trained network with one random-label network by a bootstrap over *images*: it cannot see how much
two networks trained alike differ anyway, and on planted truths it called a random-label network
"learned from the task" in 2 of 20 draws at conv2. With several seeds (each its own data split, its
own random-label run and its own untrained initialisations) the networks themselves are compared:

- **trained vs untrained**: within each seed, the trained network is exchanged with any of that
  seed's untrained initialisations (stratified by seed, so seeds with different images are never
  mixed); statistic: the sum over seeds of the trained AUROC; one-sided p, exact when the
  assignments are few, else from ``N_PERM`` random ones;
- **trained vs random labels**: paired by seed, signs of the differences flipped (exact over the
  ``2^S`` assignments: the smallest p with 5 seeds is 1/32);
- **random labels vs untrained**: as the first, for the random-label networks.

>>> stratified_p([0.9, 0.8], [[0.1, 0.2], [0.3]])
0.16666666666666666
"""

from __future__ import annotations

from itertools import product
from math import prod

import numpy as np

from convlens.analysis.result import OodComparison, OodSeedsVerdict

ALPHA = 0.05
N_PERM = 9999
RULE = (
    "decided on all seeds at once with the networks as the unit. Per seed: the trained AUROC, the "
    "random-label network's AUROC and the untrained initialisations' AUROCs (on that seed's own "
    "images). p(untrained): one-sided permutation test of 'trained above untrained', the trained "
    "network exchanged with that seed's initialisations (statistic: sum over seeds of the AUROC; "
    f"exact when there are at most {N_PERM + 1} assignments, else {N_PERM} random ones; an "
    "undefined untrained AUROC counts as 1). p(random labels): the same with each seed's random-"
    "label network (signs flipped per seed: with S seeds the smallest p is 1/2^S). Fixed sequence "
    f"at {ALPHA}: not supported = the activation difference holds in half of the seeds or fewer; "
    "present before training = p(untrained) > "
    f"{ALPHA}; learned from the task = p(untrained) and p(random labels) <= {ALPHA}; learned from "
    "training on these images = not above the random-label networks, and the random-label "
    "networks themselves above the untrained ones; otherwise learned from training but task "
    "unresolved"
)


def stratified_p(
    values: list[float], others: list[list[float]], n_perm: int = N_PERM, seed: int = 0
) -> float:
    """One-sided p of "``values`` are high": within stratum ``s`` the value ``values[s]`` is
    exchanged with any of ``others[s]``; statistic the sum over strata; ``p = #{assignments with a
    sum >= observed} / #assignments`` (exact) or ``(1 + #{...}) / (1 + n_perm)`` (random)."""
    strata = [np.asarray([v, *o], dtype=np.float64) for v, o in zip(values, others, strict=True)]
    observed = float(sum(values))
    total = prod(len(s) for s in strata)
    tol = 1e-12
    if total <= n_perm + 1:
        sums = np.fromiter((sum(c) for c in product(*strata)), np.float64, count=total)
        return float((sums >= observed - tol).mean())
    rng = np.random.default_rng([seed, 9001])
    sums = np.zeros(n_perm)
    for s in strata:
        sums += s[rng.integers(0, len(s), n_perm)]
    return float((1 + (sums >= observed - tol).sum()) / (1 + n_perm))


def _finite(v: float | None) -> bool:
    return v is not None and bool(np.isfinite(v))


def _untrained(c: OodComparison) -> list[float]:
    u = c.untrained
    if u is None:
        return []
    return [float(a) if _finite(a) else 1.0 for a in u.aurocs]  # type: ignore[arg-type]


def ood_learned_across_seeds(per_seed: list[OodComparison]) -> OodSeedsVerdict:
    """The verdict of :data:`RULE` for one layer and OOD set, from each seed's comparison."""
    n = len(per_seed)
    holds = sum(c.verdict == "holds" for c in per_seed)
    trained = [c.auroc for c in per_seed]
    rl = [c.random_labels.auroc if c.random_labels is not None else None for c in per_seed]
    unt = [_untrained(c) for c in per_seed]
    pooled = [a for u in unt for a in u]
    out = OodSeedsVerdict(
        "not supported",
        n,
        holds,
        trained=trained,
        random_labels=rl,
        untrained_median=float(np.median(pooled)) if pooled else None,
    )
    if not all(_finite(t) for t in trained):
        out.verdict = "not measured"
        return out
    t = [float(x) for x in trained]  # type: ignore[arg-type]
    if all(unt):
        out.p_untrained = stratified_p(t, unt)
    rl_ok = all(_finite(r) for r in rl)
    if rl_ok:
        r = [float(x) for x in rl]  # type: ignore[arg-type]
        out.p_random_labels = stratified_p(t, [[x] for x in r])
        if all(unt):
            out.p_rl_untrained = stratified_p(r, unt)
    if 2 * holds <= n:
        return out
    if out.p_untrained is None:
        out.verdict = "no untrained control"
    elif out.p_untrained > ALPHA:
        out.verdict = "present before training"
    elif not rl_ok:
        out.verdict = "no random-label control"
    elif out.p_random_labels is not None and out.p_random_labels <= ALPHA:
        out.verdict = "learned from the task"
    elif out.p_rl_untrained is not None and out.p_rl_untrained <= ALPHA:
        out.verdict = "learned from training on these images"
    else:
        out.verdict = "learned from training but task unresolved"
    return out
