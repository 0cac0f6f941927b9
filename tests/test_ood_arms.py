"""The OOD verdict's three arms (Evidence v2, item 6): the untrained initialisations as a
distribution, the run's epoch-000 network, and the random-label network; every verdict level on
synthetic AUROCs, on planted activation scores, and on planted images with trained networks
(``convlens validate``: power and false-positive rates over many draws are in docs/validation.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convlens.analysis.evidence.stats import empirical_p_above, untrained_distribution
from convlens.analysis.evidence.verdicts import (
    OOD_ALPHA,
    OOD_LEARNED_LEVELS,
    OOD_LEARNED_RULE,
    ood_learned_verdict,
)
from convlens.analysis.measure.activations import compare, point_auroc
from convlens.analysis.model.forward import SetActivations, accumulate
from convlens.analysis.result import ControlComparison, OodComparison
from convlens.errors import ConvlensError

N_BOOT = 400


def _paired(lo: float, untrained_p: float | None = None, name: str = "c") -> ControlComparison:
    """A paired comparison whose 95% CI of trained minus it starts at ``lo``."""
    return ControlComparison(
        name, 0.5, (0.4, 0.6), 0.3, (lo, lo + 0.3), 0.01, None, (None, None), None, (None, None),
        untrained_p,
    )  # fmt: skip


# ----------------------------------------------------------------------------- the p rule
def test_empirical_p_counts_ties_and_non_finite_against_the_trained_auroc():
    null = np.array([0.1, 0.5, 0.9, np.nan])
    assert empirical_p_above(0.95, null) == (1, 2 / 5)  # the nan counts against
    assert empirical_p_above(0.9, null) == (2, 3 / 5)  # a tie counts against
    assert empirical_p_above(None, null) == (4, None)
    assert empirical_p_above(1.0, np.zeros(20)) == (0, 1 / 21)  # the floor: 1/(1+N)
    assert 1 / 20 <= OOD_ALPHA < 1 / 19  # 19 initialisations can just reach it, 18 cannot


def test_untrained_distribution_median_percentiles_and_position():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.3, 0.7, 20)
    u = untrained_distribution(0.65, a)
    lo, med, hi = np.percentile(a, [2.5, 50, 97.5])
    assert u.n == 20 and u.median == pytest.approx(med) and u.interval == (lo, hi)
    k = int((a >= 0.65).sum())
    assert u.n_at_or_above == k and u.p_value == (1 + k) / 21
    assert u.aurocs == pytest.approx(list(a))


# ----------------------------------------------------------------------------- every level
HIGH = untrained_distribution(0.95, np.full(20, 0.5))  # trained above all 20: p = 1/21
LOW = untrained_distribution(0.95, np.r_[np.full(19, 0.5), 0.97])  # one at or above: p = 2/21


@pytest.mark.parametrize(
    ("trained", "untrained", "epoch0", "random_labels", "level"),
    [
        ("holds", HIGH, [_paired(0.2)], _paired(0.05, 0.5), "learned from the task"),
        ("holds", HIGH, [_paired(0.2)], _paired(-0.02, 1 / 21), "learned from training on these images"),
        ("holds", HIGH, [_paired(0.2)], _paired(0.0, 0.5), "learned from training but task unresolved"),
        ("holds", HIGH, [_paired(0.2)], None, "no random-label control"),
        ("holds", LOW, [_paired(0.2)], _paired(0.3, 0.5), "present before training"),
        ("holds", HIGH, [_paired(0.0)], _paired(0.3, 0.5), "present before training"),
        ("holds", None, [_paired(-0.1)], None, "present before training"),
        ("not supported", HIGH, [_paired(0.2)], _paired(0.3, 0.5), "not supported"),
        ("reversed", HIGH, [], None, "not supported"),
        ("holds", None, [], _paired(0.3, 0.5), "no untrained control"),
        ("holds", None, [_paired(0.2)], None, "no untrained control"),
    ],
)  # fmt: skip
def test_every_level_of_the_verdict(trained, untrained, epoch0, random_labels, level):
    assert ood_learned_verdict(trained, untrained, epoch0, random_labels) == level
    assert level in OOD_LEARNED_LEVELS and level in OOD_LEARNED_RULE


def test_the_rule_states_the_arms_and_the_threshold():
    for words in ("(1 + k) / (1 + N) <= 0.05", "epoch 000", "random labels", "seed + 1000 + i"):
        assert words in OOD_LEARNED_RULE


# ----------------------------------------------------------------------------- planted scores
def _set(name: str, scores: np.ndarray) -> SetActivations:
    s = SetActivations(name)
    x = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    accumulate(s, torch.zeros(len(x), 2), {"conv1": (x[:, None], x)})
    return s


def _net(rng: np.random.Generator, gap: float) -> dict[str, SetActivations]:
    """A network's ID scores ~ N(1, 0.1) and OOD scores ~ N(1 - gap, 0.1)."""
    return {
        "ID": _set("ID", rng.normal(1, 0.1, 40)),
        "far": _set("far", rng.normal(1 - gap, 0.1, 30)),
    }


@pytest.mark.parametrize(
    ("trained", "untrained", "random_labels", "level"),
    [
        (0.5, [0.0] * 20, 0.0, "learned from the task"),  # only the labels made the gap
        (0.5, [0.0] * 20, 0.5, "learned from training on these images"),  # random labels too
        (0.5, [0.0] * 19 + [0.5], 0.0, "present before training"),  # one initialisation has it
        (0.5, [0.0] * 20, None, "no random-label control"),
        (0.0, [0.0] * 20, 0.0, "not supported"),
    ],
)
def test_planted_scores_through_compare(trained, untrained, random_labels, level):
    rng = np.random.default_rng(3)
    t = _net(rng, trained)
    info, layers = compare(
        t["ID"],
        [t["far"]],
        untrained=[_net(rng, g) for g in untrained],
        untrained_seeds=list(range(1000, 1000 + len(untrained))),
        untrained_description="planted",
        random_labels=None if random_labels is None else _net(rng, random_labels),
        random_labels_description=None if random_labels is None else "planted random labels",
        n_boot=N_BOOT,
    )
    c = layers["conv1"].ood["far"]
    assert c.learned_verdict == level
    assert c.untrained is not None and c.untrained.n == len(untrained)
    assert info.untrained_seeds == list(range(1000, 1000 + len(untrained)))
    assert info.learned_rule == OOD_LEARNED_RULE and (info.random_labels is None) == (
        random_labels is None
    )
    if random_labels is not None:
        rl = c.random_labels
        assert rl is not None and rl.control == "random labels"
        assert rl.auroc_diff == pytest.approx(c.auroc - rl.auroc)
        assert rl.untrained_p is not None and set(info.control_baselines) == {"random labels"}


def test_point_auroc_is_sklearns():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 20).astype(float)
    want = roc_auc_score(np.r_[np.ones(30), np.zeros(20)], np.r_[a, b])
    assert point_auroc(a, b) == pytest.approx(want, abs=1e-12)
    assert np.isnan(point_auroc(a, b[:0]))


# ----------------------------------------------------------------------------- the passes
def test_untrained_passes_share_the_batches_and_equal_single_passes():
    from convlens.analysis.measure.untrained import fresh_seeds, initialisations
    from convlens.analysis.model.forward import batches_of, collect
    from convlens.analysis.model.shard import collect_each
    from convlens.models import make_spec

    spec = make_spec("small-cnn", 1, (12, 12), 2).to_dict()
    inits = initialisations(spec, 7, 3)
    assert [u.name for u in inits] == [f"fresh init (seed {s})" for s in fresh_seeds(7, 3)]
    assert fresh_seeds(7, 3) == [1007, 1008, 1009]
    x = np.random.default_rng(0).normal(size=(300, 1, 12, 12)).astype(np.float32)
    each = collect_each([u.model for u in inits], x, "x")
    for u, s in zip(inits, each, strict=True):
        one = collect(u.model, batches_of(x), "x")
        for layer in one.layer_scores:
            assert np.array_equal(s.scores(layer), one.scores(layer))
    w0 = next(iter(inits[0].model.parameters()))
    assert not torch.equal(w0, next(iter(inits[1].model.parameters())))


def test_untrained_count_is_checked():
    from convlens.analysis.orchestration.options import MIN_UNTRAINED, AnalyzeOptions

    assert MIN_UNTRAINED == 19 and AnalyzeOptions().n_untrained == 20
    AnalyzeOptions(n_untrained=19).check()
    for bad in (18, 1001, True, 20.0):
        with pytest.raises(ConvlensError, match="untrained initialisations must be an integer"):
            AnalyzeOptions(n_untrained=bad).check()


# ----------------------------------------------------------------------------- a real run
@pytest.mark.slow  # trains a random-label run: about 5 s
def test_run_analysis_with_a_random_label_run_has_all_three_arms(tiny_run, tmp_path):
    from convlens.analysis import analyze_run
    from convlens.data.datasets import load_bundled
    from convlens.summary import analysis_summary
    from convlens.train import TrainConfig, Trainer

    ctrl = tmp_path / "random-labels"
    cfg = TrainConfig(epochs=3, ood=["motorcycle", "noise"], ood_size=20, shuffle_labels=True)
    cfg.snapshots = cfg.probes = False
    Trainer(cfg, load_bundled("faces", 0), ctrl, progress=False).train()
    a = analyze_run(tiny_run, n_null=200, control_runs=(ctrl,), n_untrained=19)
    d = a.distribution
    assert d is not None and d.untrained_seeds == list(range(1000, 1019))
    assert d.random_labels is not None and str(ctrl) in d.random_labels
    assert "random labels" in d.control_baselines
    for r in a.layers:
        for name, c in {**r.distribution.ood, **r.distribution.other}.items():
            assert [x.control for x in c.controls] == ["epoch 000"]
            assert c.untrained is not None and c.untrained.n == 19
            assert c.random_labels is not None and c.random_labels.untrained_p is not None
            want = ood_learned_verdict(c.verdict, c.untrained, c.controls, c.random_labels)
            assert c.learned_verdict == want, (r.name, name)
        for name, level in a.verdicts.ood_learned[r.name].items():
            assert level == r.distribution.ood[name].learned_verdict
    (control,) = [c for c in a.controls if c.name == "untrained"]
    assert control.kind == "untrained" and control.seeds == d.untrained_seeds
    key = f"{a.layers[0].name}/noise"
    noise = a.layers[0].distribution.ood["noise"]
    assert control.figures[f"{key}/auroc_random_labels"] == noise.random_labels.auroc
    assert control.figures[f"{key}/untrained_p"] == noise.untrained.p_value
    line = next(ln for ln in analysis_summary(a) if ln.startswith(f"{a.layers[0].name} OOD AUROC"))
    assert "of 19 initialisations" in line and "random labels" in line and "epoch 000" in line


# ----------------------------------------------------------------------------- planted images
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder for the planted runs; one torch thread meanwhile, as ``convlens validate``
    trains them (restored after the module)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path_factory.mktemp("ood-arms")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def task_nets(work):
    from convlens.analysis.orchestration.validate_ood import networks

    return networks("task", 1, work / "task")


def test_planted_task_is_learned_from_the_task(task_nets):
    from convlens.analysis.orchestration.validate_ood import judge

    j = judge("task", 1, task_nets, n_boot=N_BOOT)
    assert j.levels["conv2"] == "learned from the task", j.figures
    f = j.figures["conv2"]
    assert f["auroc"] > 0.95 and f["diff_ci"][0] > 0 and f["untrained_interval"][1] < 0.9


def test_planted_present_before_training(task_nets):
    from convlens.analysis.orchestration.validate_ood import judge

    j = judge("before", 1, task_nets, n_boot=N_BOOT)
    assert set(j.levels.values()) == {"present before training"}, j.figures
    assert all(f["untrained_median"] > 0.95 for f in j.figures.values())


def test_planted_image_statistics_are_learned_from_training_on_the_images(work):
    from convlens.analysis.orchestration.validate_ood import judge, networks

    j = judge("images", 1, networks("images", 1, work / "images"), n_boot=N_BOOT)
    assert j.levels["conv2"] == "learned from training on these images", j.figures
    assert "learned from the task" not in j.levels.values()


@pytest.mark.slow  # about 1-2 s; the inner loop keeps the faster tests of this module
def test_planted_task_with_shuffled_labels_is_never_learned_from_the_task(work):
    from convlens.analysis.orchestration.validate_ood import judge, networks

    j = judge("task, shuffled", 1, networks("task, shuffled", 1, work / "shuffled"), n_boot=N_BOOT)
    assert "learned from the task" not in j.levels.values(), j.figures


# ----------------------------------------------------------------------------- across seeds
def _comparison(auroc, untrained, rl, verdict="holds"):
    from convlens.analysis.result import ChannelStats, UntrainedDistribution

    stats = ChannelStats(1, [0.0], [0.0], [0.0], [0.0])
    u = UntrainedDistribution(len(untrained), list(untrained), None, (None, None), 0, None)
    return OodComparison(
        n=10, mean=0.1, mean_ci=(0.0, 0.2), max=0.2, max_ci=(0.1, 0.3), ratio=0.5,
        ratio_ci=(0.4, 0.6), diff_ci=(0.1, 0.2), auroc=auroc, verdict=verdict,
        channel_stats=stats, untrained=u,
        random_labels=rl,
    )  # fmt: skip


def _rl(auroc):
    c = _paired(0.0, name="random labels")
    c.auroc = auroc
    return c


def _seed(auroc, untrained, rl, verdict="holds"):
    from dataclasses import replace

    base = _comparison(auroc, untrained, None, verdict)
    return replace(base, random_labels=None if rl is None else _rl(rl))


@pytest.mark.parametrize(
    ("trained", "rl", "untrained", "level"),
    [
        ([0.9] * 5, [0.5] * 5, [0.5] * 20, "learned from the task"),
        ([0.9] * 5, [0.9] * 5, [0.5] * 20, "learned from training on these images"),
        ([0.9] * 5, [0.95] * 5, [0.5] * 19 + [0.99], "learned from training on these images"),
        ([0.9] * 5, [0.5] * 5, [0.95] * 20, "present before training"),
        ([0.9] * 5, None, [0.5] * 20, "no random-label control"),
        ([0.9, 0.9, 0.9, 0.9, 0.4], [0.5] * 5, [0.5] * 20, "learned from training but task unresolved"),
    ],
)  # fmt: skip
def test_every_level_of_the_across_seeds_verdict(trained, rl, untrained, level):
    from convlens.analysis.evidence.seeds_ood import RULE, ood_learned_across_seeds

    per = [_seed(t, untrained, None if rl is None else rl[i]) for i, t in enumerate(trained)]
    v = ood_learned_across_seeds(per)
    assert v.verdict == level and v.n_seeds == 5 and v.holds == 5
    assert level in OOD_LEARNED_LEVELS and "networks as the unit" in RULE


def test_across_seeds_not_supported_when_the_difference_holds_in_half_or_fewer():
    from convlens.analysis.evidence.seeds_ood import ood_learned_across_seeds

    per = [_seed(0.9, [0.5] * 20, 0.5, "holds" if i < 2 else "not supported") for i in range(5)]
    assert ood_learned_across_seeds(per).verdict == "not supported"


def test_paired_floor_and_exactness():
    from convlens.analysis.evidence.seeds_ood import stratified_p

    assert stratified_p([0.9] * 5, [[0.5]] * 5) == pytest.approx(1 / 32)
    assert stratified_p([0.9] * 3, [[0.5] * 20] * 3) == pytest.approx(1 / 21**3)
    assert stratified_p([0.5] * 3, [[0.5] * 20] * 3) == 1.0  # ties count against


def test_network_variation_fools_one_run_but_not_the_seeds():
    # Planted null: trained and random-label networks draw their AUROC from one distribution
    # (network-to-network spread 0.08), every image bootstrap is tight. One run compares two
    # networks and calls the larger one "from the task" when its (image) interval clears 0; the
    # across-seeds verdict compares networks with networks and stays near its 5%.
    from convlens.analysis.evidence.seeds_ood import ood_learned_across_seeds

    rng = np.random.default_rng(11)
    reps, one_run, seeds = 200, 0, 0
    for _ in range(reps):
        t = rng.normal(0.85, 0.08, 5)
        r = rng.normal(0.85, 0.08, 5)
        one_run += t[0] - r[0] > 0.02  # an image-bootstrap CI of width ~0.04 clears 0
        per = [_seed(float(t[i]), list(rng.normal(0.5, 0.05, 20)), float(r[i])) for i in range(5)]
        seeds += ood_learned_across_seeds(per).verdict == "learned from the task"
    assert one_run / reps > 0.35
    assert seeds / reps <= 0.08  # nominal 1/32 = 3.1%; Binomial(200, 0.031) exceeds 16 w.p. < 1e-3
