"""Distribution dependence: do conv layers respond more weakly to out-of-distribution inputs?

For every conv layer a forward hook reads the layer's output ``z``; the **activation** is
``relu(z)`` (what a ReLU network passes on). Per image and channel we take the spatial mean of
``relu(z)`` ("mean activation") and the spatial max ("max activation"). Per layer:

- streaming per-channel statistics (:class:`~convlens.parallel.running.RunningStats`, one pass, float64);
- a per-image **activation strength score** = the mean over channels of the per-image mean activation;
  its mean with a bootstrap 95% CI for the in-distribution set (ID: the test split, only its ``face``
  class for face data, see :func:`convlens.data.ood.id_split`; the other classes are compared with it
  separately) and for each OOD set; the ratio OOD / ID with a bootstrap CI;
- AUROC (``sklearn.metrics.roc_auc_score``) of that score separating ID (positive) from OOD: above 0.5
  means ID inputs activate the layer more;
- the standard output-level baselines on the same data: max-softmax probability and energy
  (``logsumexp`` of the logits), as AUROCs.

Verdict per layer and OOD set on the seed's claim ("a face-trained net's convolutions will not register
strong activations on bicycles"): **holds** when AUROC >= 0.7 and the bootstrap CI of
``mean(ID) - mean(OOD)`` lies above 0; **reversed** when AUROC <= 0.3 and the CI lies below 0;
otherwise **not supported**.

**Intervals resample source images.** An OOD set of 100 crops of one photo is one example of its
category, not 100: every interval (means, ratio, difference, AUROC) is a percentile bootstrap that
draws *source images* with replacement and keeps all their crops
(:func:`~convlens.analysis.evidence.stats.cluster_weights`, ``N_BOOT`` resamples, seeded); a one-photo set
resamples its crops and is labelled as such.

**Controls: three arms.** The same measurements go through the same code for (1) the run's own
epoch-000 network, given trained, untrained and trained minus untrained with a paired bootstrap
interval (same images, same resamples); (2) ``N`` untrained initialisations of the architecture
(stated seeds): per layer and set the distribution of their AUROCs (median, 2.5/97.5 percentiles)
and the trained AUROC's empirical p among them, ``(1 + k) / (1 + N)`` (point AUROCs only: no
bootstrap per initialisation); (3) the random-label network of the same recipe, paired like (1).
:func:`~convlens.analysis.evidence.verdicts.ood_learned_verdict` judges the three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens._serde import finite
from convlens.analysis.evidence.stats import (
    bootstrap_p_positive,
    cluster_weights,
    empirical_p_above,
    percentile_ci,
    proportion_ci,
    resampling_text,
    untrained_distribution,
    weighted_auroc,
    weighted_means,
)
from convlens.analysis.evidence.verdicts import OOD_LEARNED_RULE, ood_learned_verdict
from convlens.analysis.model.forward import OUTPUT_KIND_RULE, SetActivations
from convlens.analysis.result import (
    ChannelStats,
    ControlComparison,
    ControlLevel,
    DataSet,
    DistributionInfo,
    LayerDistribution,
    OodComparison,
    OutputBaseline,
    Predictions,
    SetPrediction,
)
from convlens.parallel.running import RunningStats

AUROC_HOLDS = 0.7
AUROC_REVERSED = 0.3
RULE = (
    f"holds: AUROC >= {AUROC_HOLDS} and 95% CI of mean(ID) - mean(OOD) > 0; "
    f"reversed: AUROC <= {AUROC_REVERSED} and CI < 0; else not supported"
)


def _auroc(id_scores: NDArray[Any], ood_scores: NDArray[Any]) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    return float(roc_auc_score(y, np.r_[id_scores, ood_scores]))


def point_auroc(id_scores: NDArray[Any], ood_scores: NDArray[Any]) -> float:
    """The AUROC of ID (positive) vs OOD, equal to :func:`_auroc` (``roc_auc_score``) but without
    sklearn's per-call overhead (used for the many untrained initialisations); ``nan`` when a set
    is empty."""
    if not len(id_scores) or not len(ood_scores):
        return float("nan")
    one = np.ones((1, len(id_scores))), np.ones((1, len(ood_scores)))
    return float(weighted_auroc(id_scores, ood_scores, *one)[0])


def verdict(auroc: float, diff_ci: tuple[float, float]) -> str:
    if auroc >= AUROC_HOLDS and diff_ci[0] > 0:
        return "holds"
    if auroc <= AUROC_REVERSED and diff_ci[1] < 0:
        return "reversed"
    return "not supported"


def _ci(ci: tuple[float, float]) -> tuple[float | None, float | None]:
    return finite(ci[0]), finite(ci[1])


def _channel_stats(stats: RunningStats) -> ChannelStats:
    d = stats.to_dict()
    return ChannelStats(
        n=int(d["n"]),
        **{k: [finite(v) for v in d[k]] for k in ("mean", "std", "min", "max")},
    )


RANDOM_LABELS = "random labels"
"""The name of the random-label arm (``OodComparison.random_labels.control``, predictions)."""

N_BOOT = 2000
"""Bootstrap resamples for every interval of the activation comparison."""

Sets = dict[str, SetActivations]
"""Activations of one network keyed by set name (the ID set's name included)."""


@dataclass
class _Boot:
    """Shared bootstrap weights per set (paired: the same resamples for every layer and network)."""

    weights: dict[str, NDArray[np.float64]]
    n_sources: dict[str, int]
    text: dict[str, str]


def _boot(
    sets: list[SetActivations], sources: dict[str, NDArray[Any]], seed: int, n_boot: int
) -> _Boot:
    w, k, t = {}, {}, {}
    for i, s in enumerate(sets):
        src = sources.get(s.name)
        src = np.arange(s.n) if src is None or len(src) != s.n else np.asarray(src)
        w[s.name] = cluster_weights(src, n_boot, np.random.default_rng([seed, 14, i]))
        k[s.name] = len(np.unique(src))
        t[s.name] = resampling_text(k[s.name], s.n, n_boot)
    return _Boot(w, k, t)


def _control_one(
    name: str,
    layer: str,
    ref: tuple[NDArray[Any], NDArray[Any]],
    ctrl: Sets,
    id_name: str,
    set_name: str,
    wi: NDArray[Any],
    wo: NDArray[Any],
) -> ControlComparison | None:
    """Trained minus one untrained control on the same images and resamples."""
    if layer not in ctrl[id_name].layer_scores or layer not in ctrl[set_name].layer_scores:
        return None
    auroc_b, mean_b = ref
    cid, coo = ctrl[id_name].scores(layer), ctrl[set_name].scores(layer)
    c_auroc_b = weighted_auroc(cid, coo, wi, wo)
    c_mean_b = weighted_means(coo, wo)
    c_auroc = _auroc(cid, coo)
    return ControlComparison(
        control=name,
        auroc=finite(c_auroc),
        auroc_ci=_ci(percentile_ci(c_auroc_b)),
        auroc_diff=None,  # filled by the caller (needs the trained point estimate)
        auroc_diff_ci=_ci(percentile_ci(auroc_b - c_auroc_b)),
        auroc_diff_p=finite(bootstrap_p_positive(auroc_b - c_auroc_b)),
        mean=finite(coo.mean()),
        mean_ci=_ci(percentile_ci(c_mean_b)),
        mean_diff=None,
        mean_diff_ci=_ci(percentile_ci(mean_b - c_mean_b)),
    )


@dataclass
class _Arms:
    """The networks the trained one is compared with, each as its sets by name: the paired
    untrained ``controls`` (the epoch-000 network), the ``untrained`` initialisations and the
    ``random_labels`` network."""

    controls: dict[str, Sets]
    untrained: list[Sets]
    random_labels: Sets | None

    def __bool__(self) -> bool:
        return bool(self.controls or self.untrained or self.random_labels is not None)


def _paired(
    name: str,
    layer: str,
    ref: tuple[NDArray[Any], NDArray[Any], float, float],
    ctrl: Sets,
    names: tuple[str, str],
    weights: tuple[NDArray[Any], NDArray[Any]],
    untrained: NDArray[Any] | None,
) -> ControlComparison | None:
    """:func:`_control_one` with the point differences and, given the untrained AUROCs, the
    control's own position among them."""
    id_name, set_name = names
    if set_name not in ctrl or id_name not in ctrl:
        return None
    auroc_b, mean_b, auroc, mean = ref
    c = _control_one(name, layer, (auroc_b, mean_b), ctrl, id_name, set_name, *weights)
    if c is None:
        return None
    c.auroc_diff = finite(auroc - c.auroc) if c.auroc is not None else None
    c.mean_diff = finite(mean - c.mean) if c.mean is not None else None
    if untrained is not None:  # the same AUROC code as the initialisations' (exact ties)
        point = point_auroc(ctrl[id_name].scores(layer), ctrl[set_name].scores(layer))
        c.untrained_p = empirical_p_above(point, untrained)[1]
    return c


def _untrained_aurocs(layer: str, names: tuple[str, str], untrained: list[Sets]) -> NDArray[Any]:
    """The AUROC of each untrained initialisation (``nan`` where the layer did not run)."""
    out = []
    for u in untrained:
        a, b = u.get(names[0]), u.get(names[1])
        ok = a is not None and b is not None and layer in a.layer_scores and layer in b.layer_scores
        out.append(point_auroc(a.scores(layer), b.scores(layer)) if ok else np.nan)  # type: ignore[union-attr]
    return np.asarray(out, dtype=np.float64)


def _compare_one(
    layer: str,
    id_set: SetActivations,
    s: SetActivations,
    boot: _Boot,
    arms: _Arms,
) -> OodComparison:
    ids, oo, om = id_set.scores(layer), s.scores(layer), s.maxes(layer)
    wi, wo = boot.weights[id_set.name], boot.weights[s.name]
    id_b, mean_b = weighted_means(ids, wi), weighted_means(oo, wo)
    auroc_b = weighted_auroc(ids, oo, wi, wo)
    auroc = _auroc(ids, oo)
    dci = percentile_ci(id_b - mean_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio_b = np.where(id_b == 0, np.nan, mean_b / id_b)
    out = OodComparison(
        n=s.n,
        mean=finite(oo.mean()),
        mean_ci=_ci(percentile_ci(mean_b)),
        max=finite(om.mean()),
        max_ci=_ci(percentile_ci(weighted_means(om, wo))),
        ratio=finite(oo.mean() / ids.mean()) if ids.mean() > 0 else None,
        ratio_ci=_ci(percentile_ci(ratio_b)),
        diff_ci=_ci(dci),
        auroc=finite(auroc),
        verdict=verdict(auroc, dci),
        channel_stats=_channel_stats(s.channel_stats[layer]),
        auroc_ci=_ci(percentile_ci(auroc_b)),
        n_sources=boot.n_sources[s.name],
        resampling=boot.text[s.name],
    )
    names = (id_set.name, s.name)
    u_aurocs = _untrained_aurocs(layer, names, arms.untrained) if arms.untrained else None
    if u_aurocs is not None:
        out.untrained = untrained_distribution(point_auroc(ids, oo), u_aurocs)
    ref = (auroc_b, mean_b, auroc, float(oo.mean()))
    for cname, ctrl in arms.controls.items():
        c = _paired(cname, layer, ref, ctrl, names, (wi, wo), u_aurocs)
        if c is not None:
            out.controls.append(c)
    if arms.random_labels is not None:
        out.random_labels = _paired(
            RANDOM_LABELS, layer, ref, arms.random_labels, names, (wi, wo), u_aurocs
        )
    if arms:
        out.learned_verdict = ood_learned_verdict(
            out.verdict, out.untrained, out.controls, out.random_labels
        )
    return out


def _control_levels(
    layer: str, id_set: SetActivations, boot: _Boot, controls: dict[str, Sets]
) -> list[ControlLevel]:
    ids, wi = id_set.scores(layer), boot.weights[id_set.name]
    id_b = weighted_means(ids, wi)
    out = []
    for cname, ctrl in controls.items():
        c = ctrl.get(id_set.name)
        if c is None or layer not in c.layer_scores:
            continue
        cid = c.scores(layer)
        c_b = weighted_means(cid, wi)
        out.append(
            ControlLevel(
                control=cname,
                id_mean=finite(cid.mean()),
                id_mean_ci=_ci(percentile_ci(c_b)),
                id_mean_diff=finite(ids.mean() - cid.mean()),
                id_mean_diff_ci=_ci(percentile_ci(id_b - c_b)),
            )
        )
    return out


def _baseline(id_set: SetActivations, s: SetActivations) -> OutputBaseline:
    logits = id_set.output_kind in (None, "logits") and s.output_kind in (None, "logits")
    return OutputBaseline(
        max_softmax_auroc=finite(_auroc(id_set.msp.values, s.msp.values)),
        # the energy score needs logits: not defined for probability outputs
        energy_auroc=finite(_auroc(id_set.energy.values, s.energy.values)) if logits else None,
    )


def compare(
    id_set: SetActivations,
    ood_sets: list[SetActivations],
    *,
    seed: int = 0,
    descriptions: dict[str, str] | None = None,
    sources: dict[str, NDArray[Any]] | None = None,
    others: list[SetActivations] | None = None,
    controls: dict[str, Sets] | None = None,
    control_descriptions: dict[str, str] | None = None,
    untrained: list[Sets] | None = None,
    untrained_seeds: list[int] | None = None,
    untrained_description: str | None = None,
    random_labels: Sets | None = None,
    random_labels_description: str | None = None,
    n_boot: int = N_BOOT,
) -> tuple[DistributionInfo, dict[str, LayerDistribution]]:
    """Per layer: ID vs each OOD set (and vs each of the training data's ``others`` classes), with
    cluster-bootstrap CIs over ``sources`` (source image id per member, by set name; each member its
    own source when absent), AUROC, ratio and verdict; plus output baselines. The arms of the
    learned verdict, each a network's sets by name: ``controls`` (paired untrained controls by
    name: trained minus each with paired intervals), ``untrained`` (initialisations made under
    ``untrained_seeds``: the distribution of their AUROCs) and ``random_labels`` (paired)."""
    desc = descriptions or {}
    extra = others or []
    ctrls = controls or {}
    arms = _Arms(ctrls, list(untrained or []), random_labels)
    boot = _boot([id_set, *ood_sets, *extra], sources or {}, seed, n_boot)
    layers: dict[str, LayerDistribution] = {}
    for layer in id_set.layer_scores:
        ids, idm = id_set.scores(layer), id_set.maxes(layer)
        wi = boot.weights[id_set.name]
        layers[layer] = LayerDistribution(
            id_mean=finite(ids.mean()),
            id_mean_ci=_ci(percentile_ci(weighted_means(ids, wi))),
            id_max=finite(idm.mean()),
            id_max_ci=_ci(percentile_ci(weighted_means(idm, wi))),
            id_channel_stats=_channel_stats(id_set.channel_stats[layer]),
            # a conv that ran on the ID set but not on an OOD set (input-dependent control flow)
            # has no comparison for that set
            ood={
                s.name: _compare_one(layer, id_set, s, boot, arms)
                for s in ood_sets
                if layer in s.layer_scores
            },
            other={
                s.name: _compare_one(layer, id_set, s, boot, arms)
                for s in extra
                if layer in s.layer_scores
            },
            controls=_control_levels(layer, id_set, boot, ctrls),
        )

    def dataset(s: SetActivations) -> DataSet:
        return DataSet(s.name, s.n, desc.get(s.name, ""), boot.n_sources[s.name])

    info = DistributionInfo(
        id=dataset(id_set),
        ood=[dataset(s) for s in ood_sets],
        baselines={
            s.name: _baseline(id_set, s)
            for s in ood_sets
            if len(id_set.msp.values) and len(s.msp.values)  # none when the output is not used
        },
        rule=RULE,
        other=[dataset(s) for s in extra],
        controls=dict(control_descriptions or {}),
        output_kind=id_set.output_kind,
        output_rule=OUTPUT_KIND_RULE if id_set.output_kind is not None else None,
        learned_rule=OOD_LEARNED_RULE if arms else None,
        n_boot=n_boot,
        control_baselines={
            c: {
                s.name: _baseline(sets[id_set.name], sets[s.name])
                for s in ood_sets
                if s.name in sets
                and len(sets[id_set.name].msp.values)
                and len(sets[s.name].msp.values)
            }
            for c, sets in {
                **ctrls,
                **({RANDOM_LABELS: random_labels} if random_labels is not None else {}),
            }.items()
            if id_set.name in sets
        },
        resampling="95% percentile bootstrap over source images (clusters): each resample draws "
        "the source images of every set with replacement and keeps all their members; a set "
        "from one photo resamples its crops (its interval describes that photo, not the "
        "category); the same resamples for the trained, untrained and random-label networks "
        "(paired)",
        untrained=untrained_description if arms.untrained else None,
        untrained_seeds=list(untrained_seeds or []) if arms.untrained else [],
        random_labels=random_labels_description if random_labels is not None else None,
    )
    return info, layers


# ----------------------------------------------------------------------------- predictions
PREDICTION_RULE = (
    "top class = argmax of the logits per image; class fractions with Clopper-Pearson 95% intervals "
    "over images (treats images as independent: crops of one photo are not, see n_sources); mean "
    "max-softmax with a 95% bootstrap interval over source images"
)
MAX_PREDICTION_CLASSES = 10
"""Class fractions are kept for at most this many classes per set (the most frequent ones, plus the
focus class)."""


def _prediction(
    s: SetActivations,
    model: str,
    classes: list[str],
    focus: str | None,
    weights: NDArray[Any],
    n_sources: int,
) -> SetPrediction:
    pred = s.pred.values.astype(np.int64)
    counts = np.bincount(pred, minlength=len(classes))
    keep = [int(i) for i in np.argsort(-counts, kind="stable")[:MAX_PREDICTION_CLASSES]]
    if focus is not None and classes.index(focus) not in keep:
        keep.append(classes.index(focus))
    name = {i: classes[i] if i < len(classes) else str(i) for i in keep}
    n = len(pred)
    return SetPrediction(
        set=s.name,
        model=model,
        n=n,
        top_class=name[keep[0]] if n else None,
        class_fractions={name[i]: float(counts[i] / n) if n else 0.0 for i in keep},
        class_fraction_ci={name[i]: proportion_ci(int(counts[i]), n) for i in keep},
        mean_max_softmax=finite(s.msp.values.mean()) if n else None,
        mean_max_softmax_ci=_ci(percentile_ci(weighted_means(s.msp.values, weights))),
        n_sources=n_sources,
    )


def predictions(
    models: dict[str, list[SetActivations]],
    classes: list[str],
    *,
    sources: dict[str, NDArray[Any]] | None = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> Predictions:
    """What each network (``models``: name -> its sets) predicts on each set: the fraction of images
    per predicted class (``face`` is the focus class when the classes have one) and the mean
    max-softmax, so "what does a face net do with a bicycle?" is answered trained and untrained.
    When the model's number of outputs differs from the dataset's classes, outputs are named
    ``output i`` (a pretrained model's classes are not the data's)."""
    first = next(iter(models.values()), [])
    n_out = max((s.n_outputs for s in first), default=len(classes))
    if n_out != len(classes):  # the model's outputs are not the dataset's classes
        classes = [f"output {i}" for i in range(n_out)]
    focus = "face" if "face" in classes else None
    boot = _boot(first, sources or {}, seed, n_boot)
    out = []
    for model, sets in models.items():
        for s in sets:
            w = boot.weights.get(s.name)
            k = boot.n_sources.get(s.name, s.n)
            if w is None or w.shape[1] != s.n:
                w, k = cluster_weights(np.arange(s.n), n_boot, np.random.default_rng(seed)), s.n
            out.append(_prediction(s, model, classes, focus, w, k))
    return Predictions(classes=list(classes), focus_class=focus, rule=PREDICTION_RULE, sets=out)
