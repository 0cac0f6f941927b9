"""Hypothesis properties: linearity, delta kernel, flip identity, shapes, conv_matrix, NCC."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from convlens.ops import (
    conv_matrix,
    convolve,
    convolve2d,
    correlate,
    correlate2d,
    flip,
    normalized_cross_correlation,
    output_shape,
)

small_ints = st.integers(-20, 20)


def int_matrix(min_side=1, max_side=7):
    return hnp.arrays(
        np.int64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=min_side, max_side=max_side),
        elements=small_ints,
    )


@st.composite
def image_and_kernel(draw):
    img = draw(int_matrix(3, 9))
    kh = draw(st.integers(1, img.shape[0]))
    kw = draw(st.integers(1, img.shape[1]))
    k = draw(hnp.arrays(np.int64, (kh, kw), elements=small_ints))
    return img, k


@given(image_and_kernel(), st.integers(-5, 5), st.integers(-5, 5), st.data())
def test_linearity_in_input_and_kernel(ik, a, b, data):
    img, k = ik
    img2 = data.draw(hnp.arrays(np.int64, img.shape, elements=small_ints))
    k2 = data.draw(hnp.arrays(np.int64, k.shape, elements=small_ints))
    lhs = correlate2d(a * img + b * img2, k)
    assert (lhs == a * correlate2d(img, k) + b * correlate2d(img2, k)).all()
    assert (
        correlate2d(img, a * k + b * k2) == a * correlate2d(img, k) + b * correlate2d(img, k2)
    ).all()


@given(int_matrix(1, 9), st.sampled_from([1, 3, 5]))
def test_delta_kernel_is_identity(img, size):
    delta = np.zeros((size, size), dtype=np.int64)
    delta[size // 2, size // 2] = 1
    assert (correlate2d(img, delta, padding="same") == img).all()
    assert (convolve2d(img, delta, padding="same") == img).all()


@given(image_and_kernel(), st.sampled_from(["valid", "same", "full"]))
def test_convolve_is_correlate_with_flipped_kernel(ik, padding):
    img, k = ik
    assert (convolve2d(img, k, padding=padding) == correlate2d(img, flip(k), padding=padding)).all()
    x, w = img[None, None], k[None, None]
    assert (convolve(x, w, padding=padding) == correlate(x, flip(w, 2), padding=padding)).all()


@given(image_and_kernel())
def test_correlation_equals_convolution_of_flipped_input_flipped_output(ik):
    # corr(x, k) = flip(conv(flip(x), k)): the two differ exactly by a 180-degree rotation
    img, k = ik
    assert (correlate2d(img, k) == flip(convolve2d(flip(img), k))).all()


@given(
    st.integers(1, 12),
    st.integers(1, 12),
    st.integers(1, 5),
    st.integers(1, 5),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 3),
)
def test_shapes_match_formula(h, w, kh, kw, s, d, p):
    if h + 2 * p < d * (kh - 1) + 1 or w + 2 * p < d * (kw - 1) + 1:
        return
    out = correlate2d(np.zeros((h, w)), np.zeros((kh, kw)), stride=s, dilation=d, padding=p)
    assert out.shape == (
        (h + 2 * p - d * (kh - 1) - 1) // s + 1,
        (w + 2 * p - d * (kw - 1) - 1) // s + 1,
    )
    assert out.shape == output_shape((h, w), (kh, kw), s, p, d)


@st.composite
def matrix_case(draw):
    c = draw(st.integers(1, 2))
    groups = draw(st.sampled_from([1, c]))
    o = groups * draw(st.integers(1, 2))
    ks = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.integers(1, 2))
    dilation = draw(st.integers(1, 2))
    padding = draw(st.sampled_from(["valid", "same", "full", 1]))
    sp = tuple(draw(st.integers(dilation * (k - 1) + 1, 6)) for k in ks)
    x = draw(hnp.arrays(np.int64, (c, *sp), elements=small_ints))
    w = draw(hnp.arrays(np.int64, (o, c // groups, *ks), elements=small_ints))
    return x, w, stride, dilation, padding, groups


@given(matrix_case())
def test_conv_matrix_times_input_equals_correlation(case):
    x, w, stride, dilation, padding, groups = case
    m = conv_matrix(w, x.shape, stride=stride, dilation=dilation, padding=padding, groups=groups)
    want = correlate(x[None], w, stride=stride, dilation=dilation, padding=padding, groups=groups)[
        0
    ]
    assert m.shape == (want.size, x.size)
    assert (m @ x.ravel() == want.ravel()).all()


def test_conv_matrix_shows_locality_and_weight_sharing():
    w = np.array([[1, 2], [3, 4]])
    m = conv_matrix(w, (3, 3))
    assert m.shape == (4, 9)
    assert (np.count_nonzero(m, axis=1) == 4).all()  # every unit sees a 2x2 patch only
    assert sorted(m[0][m[0] != 0].tolist()) == [1, 2, 3, 4]  # the same weights in every row


@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=5),
        elements=st.floats(-100, 100, allow_nan=False),
    ),
    st.floats(0.1, 10),
    st.floats(-50, 50),
)
def test_ncc_of_patch_with_itself_is_one_and_affine_invariant(t, scale, shift):
    if np.ptp(t) < 1e-3:
        return
    r = normalized_cross_correlation(t, t)
    assert r.shape == (1, 1)
    assert abs(r[0, 0] - 1.0) < 1e-9
    r2 = normalized_cross_correlation(scale * t + shift, t)
    assert abs(r2[0, 0] - 1.0) < 1e-9
    r3 = normalized_cross_correlation(-t, t)
    assert abs(r3[0, 0] + 1.0) < 1e-9
