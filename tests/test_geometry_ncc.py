"""Output-size / receptive-field arithmetic and normalized cross-correlation."""

import numpy as np
import pytest
from skimage.feature import match_template

from convlens.errors import ConvlensError
from convlens.ops import (
    LayerGeometry,
    normalized_cross_correlation,
    receptive_fields,
    resolve_padding,
)
from tests.oracles import loop_ncc


def test_receptive_fields_hand_computed_vgg_like():
    # conv3 -> conv3 -> pool2/2 -> conv3: sizes 3, 5, 6, 10; jumps 1, 1, 2, 2
    stack = [
        LayerGeometry.make("c1", kernel=3, padding=1),
        LayerGeometry.make("c2", kernel=3, padding=1),
        LayerGeometry.make("p1", "pool", kernel=2, stride=2),
        LayerGeometry.make("c3", kernel=3, padding=1),
    ]
    rfs = receptive_fields(stack, (32, 32))
    assert [rf.size for rf in rfs] == [(3, 3), (5, 5), (6, 6), (10, 10)]
    assert [rf.jump for rf in rfs] == [(1, 1), (1, 1), (2, 2), (2, 2)]
    assert [rf.output_shape for rf in rfs] == [(32, 32), (32, 32), (16, 16), (16, 16)]
    # centre of the first unit: padding 1 keeps it at 0 until the pool moves it to 0.5
    assert rfs[2].start == (0.5, 0.5)


def test_receptive_fields_stride_and_dilation():
    # 7x7 stride 2 pad 3 (ResNet stem), 3x3 maxpool stride 2 pad 1, 3x3 dilation 2
    stack = [
        LayerGeometry.make("stem", kernel=7, stride=2, padding=3),
        LayerGeometry.make("pool", "pool", kernel=3, stride=2, padding=1),
        LayerGeometry.make("dil", kernel=3, dilation=2, padding=2),
    ]
    rfs = receptive_fields(stack, (224, 224))
    assert rfs[0].size == (7, 7) and rfs[0].jump == (2, 2)
    assert rfs[1].size == (11, 11) and rfs[1].jump == (4, 4)
    assert rfs[2].size == (27, 27)  # 11 + (5 - 1) * 4
    assert rfs[2].output_shape == (56, 56)


def test_dense_layer_is_global_and_conv_is_local():
    stack = [LayerGeometry.make("c1", kernel=5), LayerGeometry.make("fc", "dense")]
    rfs = receptive_fields(stack, (25, 25))
    assert rfs[0].size == (5, 5) and not rfs[0].is_global
    assert rfs[1].size == (25, 25) and rfs[1].is_global


def test_resolve_padding_forms():
    assert resolve_padding(2, (5, 5), (3, 3)) == ((2, 2), (2, 2))
    assert resolve_padding((1, 0), (5, 5), (3, 3)) == ((1, 1), (0, 0))
    assert resolve_padding(((0, 1), (2, 3)), (5, 5), (3, 3)) == ((0, 1), (2, 3))
    assert resolve_padding("full", (5,), (3,), dilation=2) == ((4, 4),)
    with pytest.raises(ConvlensError, match="padding must have 2 entries"):
        resolve_padding((1, 2, 3), (5, 5), (3, 3))


def test_ncc_matches_skimage_and_loop():
    rng = np.random.default_rng(5)
    img = rng.random((20, 24))
    tpl = img[5:10, 7:11].copy()
    r = normalized_cross_correlation(img, tpl)
    np.testing.assert_allclose(r, match_template(img, tpl), atol=1e-6)
    np.testing.assert_allclose(r, loop_ncc(img, tpl), atol=1e-9)
    assert np.unravel_index(np.argmax(r), r.shape) == (5, 7)
    assert abs(r[5, 7] - 1) < 1e-9
    assert r.min() >= -1 and r.max() <= 1


def test_ncc_constant_patches_and_bad_input():
    img = np.zeros((6, 6))
    img[3:, 3:] = np.arange(9).reshape(3, 3)
    r = normalized_cross_correlation(img, np.arange(4.0).reshape(2, 2))
    assert r[0, 0] == 0.0
    with pytest.raises(ConvlensError, match="zero variance"):
        normalized_cross_correlation(img, np.ones((2, 2)))
    with pytest.raises(ConvlensError, match="finite"):
        normalized_cross_correlation(np.full((3, 3), np.nan), np.eye(2))


def test_ncc_differs_from_raw_correlation_on_bright_patches():
    # raw correlation prefers the bright patch; NCC prefers the pattern match
    tpl = np.array([[0.0, 1.0], [0.0, 1.0]])
    img = np.zeros((2, 6))
    img[:, 0:2] = [[0.0, 0.2], [0.0, 0.2]]  # same pattern, dim
    img[:, 4:6] = 5.0  # bright and flat
    from convlens.ops import correlate2d

    raw = correlate2d(img, tpl - tpl.mean())
    ncc = normalized_cross_correlation(img, tpl)
    assert np.argmax(ncc[0]) == 0
    assert abs(ncc[0, 0] - 1.0) < 1e-9
    assert raw[0, 4] == 0.0  # a zero-mean kernel ignores flat brightness


# ---------------------------------------------------------------- issue 12: NCC on padded windows

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from convlens.ops import correlate2d, output_length, output_shape  # noqa: E402
from convlens.ops.ncc import FLAT_RTOL  # noqa: E402


def padded_loop_ncc(image, template, padding):
    """Direct oracle: np.corrcoef of the template with every window of the ZERO-PADDED image;
    0 where the window is flat (std <= FLAT_RTOL * rms of the window itself)."""
    pads = resolve_padding(padding, image.shape, template.shape)
    padded = np.pad(np.asarray(image, dtype=float), pads)
    h, w = template.shape
    if padded.shape[0] < h or padded.shape[1] < w:
        raise ValueError("template larger than the padded image")
    out = np.zeros((padded.shape[0] - h + 1, padded.shape[1] - w + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            win = padded[i : i + h, j : j + w].ravel()
            if win.std() <= FLAT_RTOL * np.sqrt(np.mean(win * win)):
                out[i, j] = 0.0
            else:
                out[i, j] = np.corrcoef(win, template.ravel())[0, 1]
    return out


def test_ncc_same_padding_issue_example_uses_zero_padded_window():
    img = np.arange(1.0, 26.0).reshape(5, 5)
    tpl = np.diag([1.0, 2.0, 3.0])
    r = normalized_cross_correlation(img, tpl, padding="same")
    window = np.pad(img, 1)[:3, :3]
    assert abs(r[0, 0] - np.corrcoef(window.ravel(), tpl.ravel())[0, 1]) < 1e-12
    assert abs(r[0, 0] - 0.497) < 1e-3  # was 0.272: the numerator and the sums disagreed on padding
    want = match_template(img, tpl, pad_input=True, mode="constant", constant_values=0)
    np.testing.assert_allclose(r, want, atol=1e-12)


@pytest.mark.parametrize("padding", ["valid", "same", "full", 1, (2, 0), ((0, 3), (1, 2))])
@pytest.mark.parametrize("offset", [0.0, 5.0, -300.0])
def test_ncc_matches_padded_loop_for_every_padding(padding, offset):
    rng = np.random.default_rng(17)
    img = rng.random((9, 11)) + offset
    tpl = rng.random((3, 4))
    r = normalized_cross_correlation(img, tpl, padding=padding)
    np.testing.assert_allclose(r, padded_loop_ncc(img, tpl, padding), atol=1e-9)


@pytest.mark.parametrize("tshape", [(3, 3), (5, 3), (4, 4), (2, 5)])
@pytest.mark.parametrize("offset", [0.0, 10.0])
def test_ncc_same_matches_skimage_pad_input(tshape, offset):
    # skimage.feature.match_template pads with constant_values and computes the same Pearson r
    # per window of the padded image (pad_input=True keeps the image's shape).
    rng = np.random.default_rng(18)
    img = rng.random((17, 15)) + offset
    tpl = rng.random(tshape)
    want = match_template(img, tpl, pad_input=True, mode="constant", constant_values=0)
    if all(t % 2 for t in tshape):
        np.testing.assert_allclose(
            normalized_cross_correlation(img, tpl, padding="same"), want, atol=1e-6
        )
    # any side: skimage puts h // 2 zeros before (PyTorch's "same" puts (h - 1) // 2)
    pads = tuple((t // 2, (t - 1) // 2) for t in tshape)
    np.testing.assert_allclose(
        normalized_cross_correlation(img, tpl, padding=pads), want, atol=1e-6
    )
    np.testing.assert_allclose(
        normalized_cross_correlation(img, tpl), match_template(img, tpl), atol=1e-6
    )


grid_values = st.integers(-6, 6).map(lambda v: v * 0.5)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 7), st.integers(1, 7)), elements=grid_values),
    hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 3)), elements=grid_values),
    st.sampled_from(["valid", "same", "full", 1, ((0, 2), (1, 0))]),
    st.sampled_from([0.0, 3.0, 1e6]),
)
def test_ncc_hypothesis_against_padded_loop(img, tpl, padding, offset):
    # values on a 0.5 grid: a window is either exactly constant or clearly varying
    if np.ptp(tpl) == 0:
        with pytest.raises(ConvlensError, match="zero variance"):
            normalized_cross_correlation(img, tpl, padding=padding)
        return
    img = img + offset
    try:
        want = padded_loop_ncc(img, tpl, padding)
    except ValueError:
        with pytest.raises(ConvlensError, match="kernel larger than input"):
            normalized_cross_correlation(img, tpl, padding=padding)
        return
    got = normalized_cross_correlation(img, tpl, padding=padding)
    np.testing.assert_allclose(got, want, atol=1e-7)


def test_ncc_template_copy_on_bright_plateau_is_one():
    # issue 12: the flat cut-off was relative to the whole image, so a faint pattern on the
    # bright plateau of a bimodal image scored 0 instead of 1
    rng = np.random.default_rng(19)
    tpl = rng.random((5, 5)) * 1e-3
    img = np.zeros((40, 40))
    img[:, 20:] = 1e6
    img[10:15, 25:30] += tpl
    img[30:35, 3:8] += tpl  # the same copy on the dark plateau
    r = normalized_cross_correlation(img, tpl)
    assert abs(r[10, 25] - 1.0) < 1e-6
    assert abs(r[30, 3] - 1.0) < 1e-9
    # truly constant windows (either plateau) are 0, not noise
    assert r[0, 0] == 0.0 and r[0, 30] == 0.0 and r[20, 25] == 0.0
    for padding in ("same", "full"):
        rp = normalized_cross_correlation(img, tpl, padding=padding)
        lo = resolve_padding(padding, img.shape, tpl.shape)
        assert abs(rp[10 + lo[0][0], 25 + lo[1][0]] - 1.0) < 1e-6


def test_ncc_constant_windows_at_any_level_are_zero():
    for level in (0.0, 0.1, 1.0, -7.25, 1e8, 1e-8, 3e300 / 1e10):
        img = np.full((6, 7), level)
        r = normalized_cross_correlation(img, np.arange(6.0).reshape(2, 3))
        assert np.all(r == 0.0), level


def test_ncc_flat_rule_is_relative_to_the_window():
    # a window whose spread is at rounding level of its own values is flat; a small but real
    # spread on a large level is not
    tpl = np.array([[0.0, 1.0]])
    level = 1e8
    img = np.array([[level, np.nextafter(level, np.inf), level, level + 1e-3]])
    r = normalized_cross_correlation(img, tpl)
    assert r[0, 0] == 0.0 and r[0, 1] == 0.0  # one-ulp spread on 1e8: flat
    assert abs(r[0, 2] - 1.0) < 1e-6  # 1e-3 on 1e8 is well above rounding: a match


def test_ncc_near_constant_template_refused():
    tpl = np.full((2, 2), 1e8)
    tpl[0, 1] = np.nextafter(1e8, np.inf)  # one ulp of spread: constant up to rounding
    with pytest.raises(ConvlensError, match="zero variance"):
        normalized_cross_correlation(np.eye(4), tpl)


def test_ncc_in_range_and_unchanged_under_affine_maps_for_same_padding_only_with_zero_pad():
    rng = np.random.default_rng(20)
    img = rng.random((12, 12))
    tpl = rng.random((3, 3))
    r = normalized_cross_correlation(img, tpl, padding="full")
    assert r.min() >= -1 and r.max() <= 1
    # valid windows contain no padded zeros: invariant under a * img + b (a > 0)
    np.testing.assert_allclose(
        normalized_cross_correlation(3 * img + 40, tpl),
        normalized_cross_correlation(img, tpl),
        atol=1e-9,
    )


# ---------------------------------------------------------------- issue 12: integer geometry


BAD_INTS = [1.5, 2.0, 2.9, "2", True, np.float64(2.0), np.bool_(True), None]


@pytest.mark.parametrize("bad", BAD_INTS)
def test_geometry_refuses_non_integers(bad):
    shown = repr(bad.item()) if isinstance(bad, np.generic) else repr(bad)
    for name in ("stride", "dilation"):
        with pytest.raises(ConvlensError, match=f"{name} must be integers, got {re_escape(shown)}"):
            output_shape((9, 9), (3, 3), **{name: bad})
        with pytest.raises(ConvlensError, match=f"{name} must be integers"):
            output_shape((9, 9), (3, 3), **{name: (1, bad)})
    if not isinstance(bad, str):
        with pytest.raises(ConvlensError, match=re_escape(shown)):
            resolve_padding(bad, (9, 9), (3, 3))
    with pytest.raises(ConvlensError, match="padding must be integers"):
        resolve_padding(((1, bad), (0, 0)), (9, 9), (3, 3))
    with pytest.raises(ConvlensError, match="kernel sizes must be integers"):
        output_shape((9, 9), (3, bad))
    with pytest.raises(ConvlensError, match="input sizes must be integers"):
        output_shape((9, bad), (3, 3))
    with pytest.raises(ConvlensError, match="must be an integer"):
        output_length(9, 3, stride=bad)
    with pytest.raises(ConvlensError, match="must be an integer"):
        output_length(9, bad)
    for field in ("kernel", "stride", "padding", "dilation"):
        with pytest.raises(ConvlensError, match=f"c1.{field} must be integers"):
            LayerGeometry.make("c1", **{field: bad})
    with pytest.raises(ConvlensError, match="input_shape must be integers"):
        receptive_fields([LayerGeometry.make("c1", kernel=3)], (8, bad))


def re_escape(text):
    import re

    return re.escape(text)


def test_padding_pairs_with_floats_refused_like_torch():
    with pytest.raises(ConvlensError, match=r"padding must be integers, got \(\(1\.5, 2\.5\),\)"):
        resolve_padding(((1.5, 2.5),), (9,), (3,))
    with pytest.raises(ConvlensError, match="pair"):
        resolve_padding(((1, 2, 3),), (9,), (3,))
    with pytest.raises(ConvlensError, match="padding must be 'valid'"):
        resolve_padding("2", (9,), (3,))


def test_numpy_integers_accepted_in_geometry():
    i = np.int64
    assert resolve_padding(i(1), (5, 5), (3, 3)) == ((1, 1), (1, 1))
    assert resolve_padding((i(1), np.int8(2)), (5, 5), (3, 3)) == ((1, 1), (2, 2))
    assert resolve_padding(((i(0), i(1)),), (5,), (3,)) == ((0, 1),)
    assert output_shape((i(10),), (i(3),), stride=i(2), dilation=i(2), padding=i(1)) == (4,)
    assert output_length(i(10), i(3), i(2), (i(1), i(1)), i(2)) == 4
    g = LayerGeometry.make("c", kernel=i(3), stride=np.uint8(2), padding=i(1), dilation=i(1))
    assert g == LayerGeometry.make("c", kernel=3, stride=2, padding=1, dilation=1)
    assert all(type(v) is int for v in g.kernel + g.stride + g.padding + g.dilation)
    rf = receptive_fields([g], (i(8), i(8)))
    assert rf[0].output_shape == (4, 4)
    assert correlate2d(np.ones((4, 4)), np.ones((3, 3)), padding=i(1)).shape == (4, 4)


def test_conv_matrix_groups_must_be_an_integer():
    from convlens.ops import conv_matrix

    for bad in (1.0, True, "1"):
        with pytest.raises(ConvlensError, match="groups must be an integer"):
            conv_matrix(np.ones((1, 1, 2)), (1, 4), groups=bad)
    assert conv_matrix(np.ones((2, 1, 2)), (2, 4), groups=np.int64(2)).shape == (6, 8)
