"""OOD evidence with controls (issue 14): untrained networks, cluster bootstrap over source images,
ID = the face class only, the default OOD list, and what the network predicts on each set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from convlens.analysis.evidence.stats import (
    ONE_SOURCE_LABEL,
    bootstrap_p_positive,
    cluster_weights,
    proportion_ci,
    weighted_auroc,
)
from convlens.analysis.evidence.verdicts import ood_learned_verdict
from convlens.analysis.measure.activations import compare, predictions
from convlens.analysis.model.forward import SetActivations, accumulate
from convlens.analysis.result import AnalysisResult, ControlComparison
from convlens.data.datasets import load_bundled
from convlens.data.ood import default_ood_names, id_split, make_ood
from convlens.errors import ConvlensError

N_BOOT = 400


def _set(name: str, scores: np.ndarray, logits: np.ndarray | None = None) -> SetActivations:
    """A set whose one layer ``conv1`` has per-image mean activations ``scores`` (one channel),
    built through the real accumulation path."""
    s = SetActivations(name)
    x = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    lg = torch.zeros(len(x), 2) if logits is None else torch.as_tensor(logits)
    accumulate(s, lg, {"conv1": (x[:, None], x)})
    return s


# ----------------------------------------------------------------------------- statistics
@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-3, 3), min_size=1, max_size=12),
    st.lists(st.integers(-3, 3), min_size=1, max_size=12),
    st.data(),
)
def test_weighted_auroc_equals_sklearn_on_repeated_scores(pos, neg, data):
    wp = data.draw(st.lists(st.integers(0, 3), min_size=len(pos), max_size=len(pos)))
    wn = data.draw(st.lists(st.integers(0, 3), min_size=len(neg), max_size=len(neg)))
    if sum(wp) == 0 or sum(wn) == 0:
        return
    got = weighted_auroc(np.array(pos), np.array(neg), np.array([wp]), np.array([wn]))[0]
    p, q = np.repeat(pos, wp), np.repeat(neg, wn)
    want = roc_auc_score(np.r_[np.ones(len(p)), np.zeros(len(q))], np.r_[p, q])
    assert got == pytest.approx(want, abs=1e-12)


def test_cluster_weights_move_sources_together_and_one_source_resamples_crops():
    rng = np.random.default_rng(0)
    src = np.array([5, 5, 5, 9, 9, 2])
    w = cluster_weights(src, 300, rng)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 1] == w[:, 2]) and np.all(w[:, 3] == w[:, 4])
    # each resample draws 3 sources: the counts per source sum to 3
    assert np.all(w[:, [0, 3, 5]].sum(axis=1) == 3)
    one = cluster_weights(np.zeros(7), 300, rng)
    assert np.all(one.sum(axis=1) == 7) and len({tuple(r) for r in one}) > 1


def test_p_value_floored_at_resolution_and_proportion_interval_inside_unit():
    assert bootstrap_p_positive(np.ones(1999)) == 1 / 2000
    assert bootstrap_p_positive(-np.ones(99)) == 1.0
    for k, n in ((0, 10), (10, 10), (3, 7)):
        lo, hi = proportion_ci(k, n)
        ref = binomtest(k, n).proportion_ci(method="exact")
        assert (lo, hi) == (ref.low, ref.high) and 0.0 <= lo <= k / n <= hi <= 1.0


# ----------------------------------------------------------------------------- planted controls
def _planted(trained_gap: float, control_gap: float, seed: int = 0):
    """ID scores ~ N(1, 0.1); OOD ~ N(1 - gap, 0.1), for the trained net and one control."""
    rng = np.random.default_rng(seed)
    id_t, id_c = rng.normal(1, 0.1, 40), rng.normal(1, 0.1, 40)
    ood_t = rng.normal(1 - trained_gap, 0.1, 30)
    ood_c = rng.normal(1 - control_gap, 0.1, 30)
    ctrl = {"ID": _set("ID", id_c), "far": _set("far", ood_c)}
    info, layers = compare(
        _set("ID", id_t),
        [_set("far", ood_t)],
        seed=0,
        controls={"epoch 000": ctrl},
        control_descriptions={"epoch 000": "planted"},
        n_boot=N_BOOT,
    )
    return info, layers["conv1"].ood["far"]


def test_same_auroc_untrained_is_present_before_training():
    info, c = _planted(0.5, 0.5)
    assert c.verdict == "holds" and c.auroc == 1.0
    (ctrl,) = c.controls
    assert ctrl.auroc == 1.0 and ctrl.auroc_diff == 0.0
    assert c.learned_verdict == "present before training"
    assert info.learned_rule is not None and "present before training" in info.learned_rule


def test_effect_created_by_training_is_learned():
    _, c = _planted(0.5, 0.0)
    (ctrl,) = c.controls
    assert c.verdict == "holds" and ctrl.auroc is not None and ctrl.auroc < 0.7
    assert ctrl.auroc_diff_ci[0] is not None and ctrl.auroc_diff_ci[0] > 0
    assert ctrl.auroc_diff_p == 1 / (N_BOOT + 1)  # every resample positive: floored, not 0
    # one untrained network cannot place the trained AUROC above untrained networks in general:
    # that takes the distribution over initialisations (tests/test_ood_arms.py)
    assert c.learned_verdict == "no untrained control"


def test_learned_verdict_levels():
    from convlens.analysis.evidence.stats import untrained_distribution

    def paired(lo: float) -> ControlComparison:
        return ControlComparison("epoch 000", 0.5, (0.4, 0.6), 0.3, (lo, 0.5), 0.01, *[None] * 4)

    low = untrained_distribution(0.95, [0.5] * 20)
    assert ood_learned_verdict("holds", low, [paired(0.05)]) == "no random-label control"
    assert ood_learned_verdict("not supported", low, [paired(0.3)]) == "not supported"
    assert ood_learned_verdict("holds", None) == "no untrained control"
    assert ood_learned_verdict("holds", low, [paired(0.2), paired(0.0)]) == (
        "present before training"
    )


def test_one_photo_set_is_labelled_and_sources_are_counted():
    rng = np.random.default_rng(1)
    ids, crops, many = rng.normal(1, 0.1, 30), rng.normal(0, 0.1, 20), rng.normal(0, 0.1, 20)
    info, layers = compare(
        _set("ID", ids),
        [_set("photo", crops), _set("three", many)],
        sources={"photo": np.zeros(20, dtype=np.int64), "three": np.arange(20) % 3},
        n_boot=N_BOOT,
    )
    photo, three = layers["conv1"].ood["photo"], layers["conv1"].ood["three"]
    assert photo.n_sources == 1 and ONE_SOURCE_LABEL in (photo.resampling or "")
    assert three.n_sources == 3 and "3 source images" in (three.resampling or "")
    assert [d.n_sources for d in info.ood] == [1, 3] and info.id.n_sources == 30
    for c in (photo, three):
        lo, hi = c.auroc_ci
        assert lo is not None and hi is not None and 0.0 <= lo <= hi <= 1.0


# ----------------------------------------------------------------------------- data
def test_id_is_the_face_class_only_and_non_faces_are_their_own_set():
    ds = load_bundled("faces", 0)
    split = id_split(ds)
    x, y = ds.split("test")
    face = ds.classes.index("face")
    assert len(split.x) == int((y == face).sum()) == 20
    assert np.array_equal(split.x, x[y == face])
    (other,) = split.others
    assert other.name == "non-face (test split)" and np.array_equal(other.x, x[y != face])


def test_digits_id_split_is_every_test_image():
    ds = load_bundled("digits", 0)
    assert len(id_split(ds).x) == len(ds.splits["test"]) and id_split(ds).others == []


def test_default_ood_never_includes_the_id_data():
    digits = load_bundled("digits", 0)
    assert "digits" not in default_ood_names(digits)
    assert "faces" not in default_ood_names(load_bundled("faces", 0))
    copy = load_bundled("digits", 0)
    copy.name = "npz:my_digits"  # the same images under another name (source says load_digits)
    assert "digits" not in default_ood_names(copy)
    with pytest.raises(ConvlensError, match="training set itself"):
        make_ood("digits", copy, 10, 0)


def test_ood_sets_record_their_source_images():
    ds = load_bundled("faces", 0)
    assert make_ood("motorcycle", ds, 12, 0).n_sources == 1
    assert make_ood("cat", ds, 12, 0).n_sources == 1
    assert make_ood("textures", ds, 12, 0).n_sources == 3
    assert make_ood("noise", ds, 12, 0).n_sources == 12
    first = make_ood("textures", ds, 12, 0, first=5)
    assert np.array_equal(first.sources, make_ood("textures", ds, 12, 0).sources[:5])


def test_digits_run_gets_no_digits_ood(tmp_path):
    from convlens.train import TrainConfig, Trainer

    cfg = TrainConfig(data="digits", epochs=1, ood_size=4, snapshots=False, probes=False)
    trainer = Trainer(cfg, load_bundled("digits", 0), tmp_path / "run", progress=False)
    assert [s.name for s in trainer.ood_sets] == ["motorcycle", "cat", "textures", "faces", "noise"]


# ----------------------------------------------------------------------------- predictions
def test_prediction_fractions_and_intervals():
    logits = np.zeros((10, 2))
    logits[:7, 1] = 3.0  # 7 of 10 predicted class 1 ("face")
    s = _set("bikes", np.ones(10), logits)
    p = predictions({"trained": [s]}, ["non-face", "face"], n_boot=N_BOOT)
    (row,) = p.sets
    assert p.focus_class == "face" and row.top_class == "face" and row.n == 10
    assert row.class_fractions == {"face": 0.7, "non-face": 0.3}
    ref = binomtest(7, 10).proportion_ci(method="exact")
    assert row.class_fraction_ci["face"] == (ref.low, ref.high)
    msp = np.r_[np.full(7, 1 / (1 + np.exp(-3.0))), np.full(3, 0.5)]
    assert row.mean_max_softmax == pytest.approx(msp.mean(), abs=1e-12)


# ----------------------------------------------------------------------------- the real run
def test_run_analysis_has_untrained_controls_and_predictions(tiny_run_analysis):
    a: AnalysisResult = tiny_run_analysis
    assert a.distribution is not None
    assert a.distribution.id.name == "faces (test, face class)" and a.distribution.id.n == 20
    assert [d.name for d in a.distribution.other] == ["non-face (test split)"]
    assert set(a.distribution.controls) == {"epoch 000"}
    assert a.distribution.untrained_seeds == list(range(1000, 1020))
    motorcycle = a.layers[0].distribution.ood["motorcycle"]
    assert motorcycle.n_sources == 1 and ONE_SOURCE_LABEL in (motorcycle.resampling or "")
    assert [c.control for c in motorcycle.controls] == ["epoch 000"]
    assert motorcycle.untrained is not None and motorcycle.untrained.n == 20
    assert set(a.verdicts.ood_learned[a.layers[0].name]) == {"motorcycle", "noise"}
    (control,) = [c for c in a.controls if c.name == "untrained"]
    name = a.layers[0].name
    assert control.figures[f"{name}/motorcycle/auroc_trained"] == motorcycle.auroc
    assert control.figures[f"{name}/motorcycle/auroc_epoch000"] == motorcycle.controls[0].auroc
    assert a.predictions is not None
    models = {s.model for s in a.predictions.sets}
    assert models == {"trained", "epoch 000", "fresh init (seed 1000)"}
    for s in a.predictions.sets:
        assert sum(s.class_fractions.values()) == pytest.approx(1.0)
        for lo, hi in s.class_fraction_ci.values():
            assert lo is not None and hi is not None and 0.0 <= lo <= hi <= 1.0


def test_epoch000_control_is_the_runs_initial_network(tiny_run):
    from safetensors.numpy import load_file

    from convlens.analysis.measure.untrained import untrained_models
    from convlens.train import RunDir

    rec = RunDir(tiny_run).read_run()
    snap = load_file(str(tiny_run / "snapshots" / "epoch-000.safetensors"))
    from convlens.analysis.measure.untrained import initialisations

    seed = int(rec["config"]["seed"])
    init, notes = untrained_models(rec["model"], seed, snap)
    fresh = initialisations(rec["model"], seed, 1)[0]
    assert notes == []  # rebuilt under the run's seed == the recorded initial weights
    state = init.model.state_dict()
    for k, v in snap.items():
        assert np.array_equal(state[k].numpy(), v)
        assert not np.array_equal(fresh.model.state_dict()[k].numpy(), v)


def test_prediction_names_outputs_when_they_are_not_the_datasets_classes():
    logits = np.zeros((4, 3))
    logits[:, 2] = 1.0
    p = predictions({"trained": [_set("x", np.ones(4), logits)]}, ["non-face", "face"])
    assert p.classes == ["output 0", "output 1", "output 2"] and p.focus_class is None
    assert p.sets[0].top_class == "output 2" and p.sets[0].class_fractions["output 2"] == 1.0


@pytest.mark.slow
def test_factory_model_gets_a_fresh_init_control(tmp_path):
    from safetensors.torch import save_file

    from convlens.analysis import analyze_model_file
    from tests.factory_model import build

    torch.manual_seed(0)
    save_file(dict(build().state_dict()), str(tmp_path / "mine.safetensors"))
    a = analyze_model_file(
        tmp_path / "mine.safetensors",
        factory="tests.factory_model:build",
        data="digits",
        ood=["noise"],
        n_null=50,
    )
    assert a.distribution is not None and list(a.distribution.controls) == []
    assert a.distribution.untrained_seeds == list(range(1000, 1020))
    noise = a.layer("0").distribution.ood["noise"]
    assert noise.controls == [] and noise.untrained is not None and noise.untrained.n == 20
    assert noise.learned_verdict in {
        "no random-label control",
        "present before training",
        "not supported",
    }
    assert a.predictions is not None and a.predictions.classes == [str(i) for i in range(10)]
    assert {s.model for s in a.predictions.sets} == {"trained", "fresh init (seed 1000)"}


def test_factory_that_returns_the_files_weights_has_no_untrained_control(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from convlens.analysis import analyze_model_file

    (tmp_path / "seeded_factory.py").write_text(
        "import torch\nfrom tests.factory_model import build as _b\n\n"
        "def build():\n    torch.manual_seed(0)\n    return _b()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    from tests.factory_model import build

    save_file(dict(build().state_dict()), str(tmp_path / "mine.safetensors"))
    a = analyze_model_file(
        tmp_path / "mine.safetensors",
        factory="seeded_factory:build",
        data="digits",
        ood=["noise"],
        n_null=50,
    )
    assert any("already returns trained weights" in n for n in a.notes)
    assert any("no untrained control" in n for n in a.notes)
    assert a.verdicts.ood_learned["0"]["noise"] in {"no untrained control", "not supported"}


def test_analyze_prints_sources_controls_and_predictions(tiny_run_analysis):
    from convlens.summary import analysis_summary

    lines = analysis_summary(tiny_run_analysis)
    (src,) = [ln for ln in lines if ln.startswith("ID: ")]
    assert "motorcycle 1" in src and ONE_SOURCE_LABEL in src and "noise 20" in src
    assert any(
        "OOD AUROC trained vs (untrained: median [2.5, 97.5 percentiles] of 20" in ln
        for ln in lines
    )
    preds = [ln for ln in lines if ln.startswith("predictions (")]
    assert [p.split(")")[0] for p in preds] == ["predictions (trained", "predictions (epoch 000"]
    assert all("classified 'face'" in p for p in preds)
