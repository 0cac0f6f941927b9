"""What each channel responds to (issue 24): the streaming top-k is exact (equal to sorting all
images at once, and across shards), a planted detector channel finds exactly the planted images at
the planted positions with the right receptive-field crops, the maximising input of a planted
linear channel is its template and is reproducible, and the demo's analysis and report carry the
records, the crops and the section."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convlens.analysis.measure import exemplars
from convlens.analysis.measure.exemplars import TopK, crop_box, cut, exemplar_pass
from convlens.ops.geometry import LayerGeometry, receptive_fields


def _all_at_once(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the k largest values with ties to the lower image index (the oracle)."""
    order = np.lexsort(
        (np.arange(values.shape[0])[:, None].repeat(values.shape[1], 1).T, -values.T), axis=1
    )
    return np.take_along_axis(values.T, order, 1)[:, :k], order[:, :k]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    c=st.integers(1, 4),
    k=st.integers(1, 6),
    cuts=st.lists(st.integers(1, 40), max_size=5),
    ties=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_streaming_top_k_equals_sorting_everything(n, c, k, cuts, ties, seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 4, (n, c)).astype(float) if ties else rng.normal(size=(n, c))
    pos = rng.integers(0, 100, (n, c))
    bounds = sorted({0, n, *[x for x in cuts if x < n]})
    t = TopK.empty(c, k)
    for a, b in itertools.pairwise(bounds):
        t = t.update(values[a:b], pos[a:b], a)
    want_v, want_i = _all_at_once(values, min(k, n))
    m = min(k, n)
    assert np.array_equal(t.values[:, :m], want_v) and np.array_equal(t.index[:, :m], want_i)
    assert np.array_equal(t.pos[:, :m], np.take_along_axis(pos.T, want_i, 1))
    assert (t.index[:, m:] == -1).all()
    # two shards merged give the same tables (indices are global)
    half = n // 2
    s1 = TopK.empty(c, k).update(values[:half], pos[:half], 0) if half else TopK.empty(c, k)
    s2 = TopK.empty(c, k).update(values[half:], pos[half:], half)
    merged = s1.merge(s2)
    assert np.array_equal(merged.index, t.index) and np.array_equal(merged.values, t.values)


class _Plus(nn.Module):
    """One conv layer (3x3, padding 1) whose channel 0 is a plus-shaped template and channel 1 its
    negative, then a global pool and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        plus = torch.tensor([[0.0, 1, 0], [1, 1, 1], [0, 1, 0]])
        with torch.no_grad():
            self.conv.weight[:] = torch.stack([plus, -plus])[:, None]
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


def test_a_planted_detector_finds_the_planted_images_and_positions():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.2, (50, 1, 12, 12)).astype(np.float32)
    planted = {7: (2, 9), 19: (6, 3), 33: (10, 5), 41: (4, 4)}
    for i, (r, c) in planted.items():
        x[i, 0, r - 1 : r + 2, c] += 3.0
        x[i, 0, r, c - 1 : c + 2] += 3.0
        x[i, 0, r, c] -= 3.0  # the centre once
    found = exemplar_pass(
        _Plus(), [("a", [torch.from_numpy(x[:20])]), ("b", [torch.from_numpy(x[20:])])], k=4
    )
    top = found.layers["conv"].top
    assert set(top.index[0]) == set(planted)
    for idx, pos in zip(top.index[0], top.pos[0], strict=True):
        assert tuple(exemplars.unravel(int(pos), (12, 12))) == planted[int(idx)]
    # the negative channel's most negative images are the same ones
    assert set(found.layers["conv"].bottom.index[1]) == set(planted)
    assert found.sets[7] == "a" and found.sets[33] == "b"
    # the receptive-field crop is the 3x3 window on the plus
    rf = receptive_fields([LayerGeometry.make("conv", kernel=3, padding=1)], (12, 12))[0]
    box = crop_box(rf, (2, 9))
    assert box == [1, 4, 8, 11]
    crop = cut(x[7], box)
    assert crop.shape == (1, 3, 3) and crop[0, 1, 1] > 2 and crop[0, 0, 1] > 2
    edge = cut(x[7], crop_box(rf, (0, 0)))
    assert np.isnan(edge[0, 0]).all() and np.isfinite(edge[0, 1:, 1:]).all()  # padding is NaN


def test_maximising_input_of_a_linear_channel_is_its_template_and_reproducible():
    model = _Plus()
    x1, reached, secs = exemplars.maximising_inputs(model, "conv", (1, 12, 12), seed=3)
    x2, _, _ = exemplars.maximising_inputs(model, "conv", (1, 12, 12), seed=3)
    assert np.array_equal(x1, x2) and x1.shape == (2, 1, 12, 12) and secs >= 0
    # channel 0 sums the plus: its best input is high everywhere the plus reaches (all interior)
    assert x1[0, 0, 3:9, 3:9].mean() > 1.5 and x1[1, 0, 3:9, 3:9].mean() < -1.5
    assert np.abs(x1).max() <= exemplars.BOUND + 1e-6
    assert reached[0] > 0 and reached[1] > 0
    assert all(p.requires_grad for p in model.parameters())  # left as found


def test_the_demo_records_every_conv_layers_channels(demo_run):
    from convlens.analysis.result import AnalysisResult
    from convlens.runs import read

    a = AnalysisResult.read(demo_run / "analysis.json")
    assert a.channels is not None
    assert {c.layer for c in a.channels} == {r.name for r in a.layers}
    arrays = read.read_tensors(demo_run / "channels.safetensors")
    for rec in a.channels:
        assert len(rec.channels) == next(r.n_kernels for r in a.layers if r.name == rec.layer) // (
            next(r.identity.in_channels for r in a.layers if r.name == rec.layer)
        )
        for ch in rec.channels:
            assert len(ch.top) == rec.k and len(ch.bottom) == rec.k
            assert [e.value for e in ch.top] == sorted((e.value for e in ch.top), reverse=True)
            assert ch.maximising_input is not None
            top = arrays[ch.arrays["top"]]
            box = ch.top[0].box
            assert top.shape[0] == rec.k and top.shape[2:] == (box[1] - box[0], box[3] - box[2])
    html = (demo_run / "report.html").read_text(encoding="utf-8")
    sec = html[html.index('<section id="channels">') :]
    sec = sec[: sec.index("</section>")]
    assert sec.count("<img") >= 16 * (exemplars.K + 1) and "maximising input" in sec


@pytest.mark.parametrize("in_channels", [1, 3, 4])
def test_any_channel_count_and_1d_inputs_get_exemplars(in_channels):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(in_channels, 3, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(10, in_channels, 8, 8)
    model(x)
    found = exemplar_pass(model, [("x", [x])], k=2)
    assert found.layers["0"].top.values.shape == (3, 2)
    xi, _, _ = exemplars.maximising_inputs(model, "0", (in_channels, 8, 8), steps=4)
    assert xi.shape == (3, in_channels, 8, 8)
    one_d = nn.Sequential(nn.Conv1d(2, 4, 5), nn.Flatten(), nn.LazyLinear(2))
    s = torch.randn(6, 2, 32)
    one_d(s)
    found = exemplar_pass(one_d, [("s", [s])], k=3)
    assert found.layers["0"].map_shape == (28,)
    xi, _, _ = exemplars.maximising_inputs(one_d, "0", (2, 32), steps=4)
    assert xi.shape == (4, 2, 32)


def test_the_cli_summary_says_which_sets_drive_each_layers_channels(demo_run):
    from convlens.analysis.result import AnalysisResult
    from convlens.summary import analysis_summary, channel_lines

    a = AnalysisResult.read(demo_run / "analysis.json")
    lines = channel_lines(a)
    sets = [ln for ln in lines if " channels: " in ln]
    parts = [ln for ln in lines if " face-part detectors: " in ln]
    assert [ln.split(" ", 1)[0] for ln in sets] == [c.layer for c in a.channels or []]
    assert all(f"top {exemplars.K} exemplars of 16 channels" in ln for ln in sets)
    # the faces demo is aligned faces: each layer names its detectors (or says none), with the
    # random-label network's count beside them
    assert [ln.split(" ", 1)[0] for ln in parts] == [c.layer for c in a.channels or []]
    assert all("random-label network: eyes " in ln for ln in parts)
    assert set(lines) <= set(analysis_summary(a))


def test_part_masks_sit_on_the_mean_faces_eyes_nose_and_mouth():
    from convlens.analysis.evidence import concepts
    from convlens.data.loaders import load_dataset

    ds = load_dataset("faces", 0)
    face = list(ds.classes).index("face")
    xs = np.concatenate([ds.split(s)[0][ds.split(s)[1] == face] for s in ("train", "val", "test")])
    masks = concepts.part_masks(xs[:, 0].mean(axis=0))
    centre = {p: np.argwhere(m).mean(axis=0) for p, m in masks.items()}
    assert centre["eyes"][0] < centre["nose"][0] < centre["mouth"][0]  # top to bottom
    assert abs(centre["nose"][1] - 12) <= 1.5 and abs(centre["mouth"][1] - 12) <= 1.5
    assert masks["eyes"][:, :12].sum() == masks["eyes"][:, 13:].sum() == 25  # two 5x5 boxes
    assert not (masks["eyes"] & masks["nose"]).any() and not (masks["nose"] & masks["mouth"]).any()


def test_the_shift_null_by_fft_equals_rolling_the_mask():
    from convlens.analysis.evidence import concepts

    rng = np.random.default_rng(1)
    binary = concepts._binary(rng.normal(size=(30, 3, 17, 19)))
    count = binary.sum(axis=0).astype(float)
    mask = np.zeros((17, 19), bool)
    mask[4:8, 2:9] = True
    fft = concepts.shift_ious(count, 30, mask)
    for dy, dx in [(0, 0), (5, -7), (-8, 9), (16, 18)]:
        rolled = concepts._pooled_iou(count, 30, np.roll(mask, (dy, dx), axis=(0, 1)))
        np.testing.assert_allclose(fft[:, dy % 17, dx % 19], rolled, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_a_planted_part_is_detected_and_a_misplaced_one_is_not():
    """One repetition of the planted-parts validation (docs/channels.md has 20): the trained
    network detects the disc where it is planted, not where no disc ever is."""
    from convlens.analysis.orchestration import validate_concepts as vc

    x, y = vc.planted_parts(0)
    assert x.shape == (vc.N_IMAGES, 1, 25, 25) and set(np.unique(y)) == {0, 1}
    net, _ = vc._train(x, y, 100, 60)
    # the fewest initialisations at which a rank p-value can reach FAMILY_ALPHA / 2 (two layers)
    k_null = int(np.ceil(2 / vc.concepts.FAMILY_ALPHA)) - 1
    null_nets = [vc._train(x[:2], y[:2], 20_000 + k, 0)[0] for k in range(k_null)]
    xa = x[y == 1]
    assert vc._any_detector(net, vc._null_bests(null_nets, xa, vc.disc(vc.A)), xa, vc.disc(vc.A))
    null_c = vc._null_bests(null_nets, xa, vc.disc(vc.C))
    assert not vc._any_detector(net, null_c, xa, vc.disc(vc.C))


def test_docs_channels_table_is_what_the_recorded_validation_renders():
    """docs/channels.md's planted-parts table is generated from docs/channels-validation.json
    (python -m convlens.analysis.orchestration.validate_concepts --from ... --markdown ...)."""
    import json
    from pathlib import Path

    from convlens.analysis.orchestration import validate_concepts as vc

    docs = Path(__file__).resolve().parents[1] / "docs"
    v = json.loads((docs / "channels-validation.json").read_text(encoding="utf-8"))
    text = (docs / "channels.md").read_text(encoding="utf-8")
    assert vc.splice(text, vc.markdown(v)) == text
    assert v["repetitions"] >= 20 and v["rule"] == vc.concepts.RULE


# ----------------------------------------------------------------------------- ONNX models
def _onnx_and_torch(tmp_path, in_channels: int = 3):
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(in_channels, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2), nn.Flatten()
    ).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.zeros(2, in_channels, 12, 12),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "N"}})  # fmt: skip
    return model, path


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:The feature will be removed")
def test_onnx_exemplars_equal_the_torch_models_on_the_same_images(tmp_path):
    """The ONNX pass (onnxruntime's conv outputs) finds the same images, positions and values as
    the torch pass on the model it was exported from (float32 rounding aside), across two sets."""
    pytest.importorskip("onnxruntime")
    from convlens.analysis.model.onnxrun import OnnxModel

    model, path = _onnx_and_torch(tmp_path)
    runner = OnnxModel(path)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 9, 3, 12, 12)).astype(np.float32)
    names = [c.name for c in runner.running]
    got = exemplars.exemplar_pass_maps(
        runner.conv_maps, [("a", a), ("b", b)], lambda x: [x[:4], x[4:]], k=3
    )
    want = exemplar_pass(model, [("a", [torch.from_numpy(a)]), ("b", [torch.from_numpy(b)])], k=3)
    assert got.sets == want.sets == ["a"] * 9 + ["b"] * 9
    for onnx_name, torch_name in zip(names, ["0", "2"], strict=True):
        g, w = got.layers[onnx_name], want.layers[torch_name]
        assert g.map_shape == w.map_shape
        for direction in ("top", "bottom"):
            gt, wt = getattr(g, direction), getattr(w, direction)
            np.testing.assert_array_equal(gt.index, wt.index)
            np.testing.assert_array_equal(gt.pos, wt.pos)
            np.testing.assert_allclose(gt.values, wt.values, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:The feature will be removed")
def test_an_onnx_model_file_with_data_gets_exemplars_and_crops(tmp_path):
    """``convlens analyze MODEL.onnx --data`` writes channel records for every conv node, the
    receptive-field crops of its exemplars, and says why there is no maximising input."""
    pytest.importorskip("onnxruntime")
    from convlens.runs import read
    from convlens.runs.layout import channels_path

    _, path = _onnx_and_torch(tmp_path, in_channels=4)
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(30, 4, 12, 12)).astype(np.float32),
             y=np.arange(30) % 2)  # fmt: skip
    from tests.onnx_tools import analyze

    r, data = analyze(path, tmp_path / "m.json", "--data", f"npz:{tmp_path / 'd.npz'}",
                      "--ood", "noise")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert data is not None and data["channels"]
    assert [c["layer"] for c in data["channels"]] == [
        ly["identity"]["name"] for ly in data["layers"]
    ]
    arrays = read.read_tensors(channels_path(tmp_path / "m.json"))
    for rec in data["channels"]:
        assert rec["maximising_rule"].startswith("not computed: an ONNX graph")
        for ch in rec["channels"]:
            assert len(ch["top"]) == 6 and len(ch["bottom"]) == 6
            assert ch["maximising_input"] is None
    first = data["channels"][0]["channels"][0]
    assert first["top"][0]["box"] and "top" in first["arrays"]
    assert arrays[first["arrays"]["top"]].shape == (6, 4, 3, 3)  # k crops of C x 3 x 3


@pytest.mark.parametrize("world", [2, 3])
def test_shards_of_every_set_merge_to_the_one_process_pass(world):
    """What each rank does under torchrun (a contiguous share of every set, global indices) and
    what rank 0 does (merge_passes) give exactly the one-process tables."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3)).eval()
    sets = [("a", torch.randn(7, 2, 9, 9)), ("b", torch.randn(5, 2, 9, 9))]
    one = exemplar_pass(model, [(n, [x[:4], x[4:]]) for n, x in sets], k=4)
    parts, offset_of = [], {"a": 0, "b": 7}
    for r in range(world):
        chunks, starts = [], []
        for n, x in sets:
            lo, hi = len(x) * r // world, len(x) * (r + 1) // world
            chunks.append((n, [x[lo:hi]] if hi > lo else []))
            starts.append(offset_of[n] + lo)
        parts.append(exemplar_pass(model, chunks, k=4, starts=starts))
    merged = exemplars.merge_passes(parts, ["a"] * 7 + ["b"] * 5)
    assert merged.sets == one.sets
    for name, ext in one.layers.items():
        m = merged.layers[name]
        for direction in ("top", "bottom"):
            a, b = getattr(ext, direction), getattr(m, direction)
            np.testing.assert_array_equal(a.index, b.index)
            np.testing.assert_array_equal(a.pos, b.pos)
            np.testing.assert_allclose(a.values, b.values, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ext.best_mean, m.best_mean, rtol=1e-6, atol=1e-6)
