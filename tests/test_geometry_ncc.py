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
