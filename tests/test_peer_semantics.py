"""Peers' test cases that pin the semantics convlens shares (or deliberately does not share).

Each case names the peer test it is ported from. Expected values were taken from those tests (and
re-checked against the installed scipy / numpy / torch / scikit-image where they are available).
Differences are asserted too, so a change in either side shows up here:

- convlens multiplies complex inputs without conjugation (as torch); numpy.correlate and
  scipy.signal.correlate / correlate2d conjugate their second argument;
- convlens' ``"same"`` puts the extra zero of an even kernel after (PyTorch); scipy centres it the
  other way, and skimage.feature.match_template(pad_input=True) puts it before;
- convlens refuses a kernel larger than the input in ``"valid"`` mode; scipy.signal.convolve2d swaps
  its (commutative) arguments;
- geometry arguments are integers only (torch raises TypeError for 1.5, 2.0, "2", True).
"""

from __future__ import annotations

import numpy as np
import pytest

from convlens.errors import ConvlensError
from convlens.ops import (
    convolve,
    convolve2d,
    correlate,
    correlate2d,
    normalized_cross_correlation,
    resolve_padding,
)


def corr1d(a, v, mode="valid"):
    """convlens' 1-D correlation of two sequences (one batch, one channel)."""
    a = np.asarray(a)
    v = np.asarray(v)
    return correlate(a[None, None], v[None, None], padding=mode)[0, 0]


# ------------------------------------------------------------------ numpy
# numpy/_core/tests/test_numeric.py::TestCorrelate (_setup, test_float, test_complex, test_mode)

NP_X = np.array([1, 2, 3, 4, 5], dtype=float)
NP_XS = np.arange(1, 20)[::3]
NP_Y = np.array([-1, -2, -3], dtype=float)


@pytest.mark.parametrize(
    ("a", "v", "want"),
    [
        # TestCorrelate.test_float: z1, z1_4, z2, z1r, z2r, zs
        (NP_X, NP_Y, [-3.0, -8.0, -14.0, -20.0, -26.0, -14.0, -5.0]),
        (NP_X, NP_Y[:-1], [-2.0, -5.0, -8.0, -11.0, -14.0, -5.0]),
        (NP_Y, NP_X, [-5.0, -14.0, -26.0, -20.0, -14.0, -8.0, -3.0]),
        (NP_X[::-1], NP_Y, [-15.0, -22.0, -22.0, -16.0, -10.0, -4.0, -1.0]),
        (NP_Y, NP_X[::-1], [-1.0, -4.0, -10.0, -16.0, -22.0, -22.0, -15.0]),
        (NP_XS, NP_Y, [-3.0, -14.0, -30.0, -48.0, -66.0, -84.0, -102.0, -54.0, -19.0]),
    ],
)
def test_numpy_correlate_full_real(a, v, want):
    got = corr1d(a, v, "full")
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(got, np.correlate(a, v, "full"), atol=1e-12)


def test_numpy_correlate_integers_stay_exact():
    # TestCorrelate.test_float run with integer dtypes (the _setup takes dt): exact int64 here
    got = corr1d(NP_X.astype(np.int64), NP_Y.astype(np.int64), "full")
    assert got.dtype == np.int64
    assert got.tolist() == [-3, -8, -14, -20, -26, -14, -5]


def test_numpy_correlate_complex_conjugation_differs():
    # TestCorrelate.test_complex: np.correlate(y, x, 'full') == r_z[::-1].conjugate()
    x = np.array([1, 2, 3, 4 + 1j], dtype=complex)
    y = np.array([-1, -2j, 3 + 1j], dtype=complex)
    r_z = np.array([3 - 1j, 6, 8 + 1j, 11 + 5j, -5 + 8j, -4 - 1j], dtype=complex)[::-1].conjugate()
    assert np.allclose(np.correlate(y, x, "full"), r_z)
    # numpy conjugates its second argument; convlens multiplies: it matches with conj(x) passed
    np.testing.assert_allclose(corr1d(y, np.conj(x), "full"), r_z, atol=1e-12)
    assert not np.allclose(corr1d(y, x, "full"), r_z)


def test_numpy_correlate_mode_lengths():
    # TestCorrelate.test_mode: valid / same / full lengths for ones(100) with ones(3)
    d, k = np.ones(100), np.ones(3)
    assert corr1d(d, k, "valid").shape == (98,)
    assert corr1d(d, k, "same").shape == (100,)
    assert corr1d(d, k, "full").shape == (102,)
    for mode in ("valid", "same", "full"):  # odd kernel: every mode agrees with numpy
        np.testing.assert_array_equal(corr1d(d, k, mode), np.correlate(d, k, mode))


def test_numpy_correlate_zero_size_refused():
    # TestCorrelate.test_zero_size: empty inputs raise ValueError (ConvlensError is one)
    with pytest.raises(ConvlensError, match="non-empty"):
        correlate2d(np.zeros((0, 3)), np.ones((1, 1)))
    with pytest.raises(ValueError, match="non-empty"):
        correlate2d(np.ones((3, 3)), np.zeros((1, 0)))


# ------------------------------------------------------------------ scipy
# scipy/signal/tests/test_signaltools.py


def test_scipy_convolve2d_2d_arrays():
    # TestConvolve2d.test_2d_arrays
    a = [[1, 2, 3], [3, 4, 5]]
    b = [[2, 3, 4], [4, 5, 6]]
    d = [[2, 7, 16, 17, 12], [10, 30, 62, 58, 38], [12, 31, 58, 49, 30]]
    out = convolve2d(a, b, padding="full")
    assert out.dtype == np.int64
    assert out.tolist() == d


def test_scipy_convolve2d_valid_mode():
    # TestConvolve2d.test_valid_mode
    e = [[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]]
    f = [[1, 2, 3], [3, 4, 5]]
    assert convolve2d(e, f).tolist() == [[62, 80, 98, 116, 134]]


def test_scipy_convolve2d_valid_mode2_swap_differs():
    # TestConvolve2d.test_valid_mode2: scipy swaps the inputs when in1 is the smaller one;
    # convlens does not swap (the second argument is the kernel) and refuses instead.
    e = [[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]]
    f = [[1, 2, 3], [3, 4, 5]]
    with pytest.raises(ConvlensError, match="kernel larger than input"):
        convolve2d(f, e)
    # commutativity still holds with full padding
    assert convolve2d(f, e, padding="full").tolist() == convolve2d(e, f, padding="full").tolist()


def test_scipy_correlate_rank1_real():
    # TestCorrelateReal._setup_rank1 / test_rank1_valid / test_rank1_full:
    # a = linspace(0, 3, 4), b = linspace(1, 2, 2), full y_r = [0, 2, 5, 8, 3]
    a, b = np.linspace(0, 3, 4), np.linspace(1, 2, 2)
    y_r = np.array([0, 2, 5, 8, 3], dtype=float)
    np.testing.assert_array_equal(corr1d(a, b, "full"), y_r)
    np.testing.assert_array_equal(corr1d(a, b, "valid"), y_r[1:4])
    # test_rank1_same: scipy keeps y_r[0:4] for this even kernel; PyTorch's "same" (convlens)
    # puts the extra zero after and keeps y_r[1:5]
    np.testing.assert_array_equal(corr1d(a, b, "same"), y_r[1:5])


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_scipy_correlate2d_consistency_with_1d(mode):
    # TestCorrelate2d.test_consistency_correlate_funcs: correlate of rows == correlate2d of [rows]
    sig = pytest.importorskip("scipy.signal")
    a = np.arange(5)
    b = np.array([3.2, 1.4, 3])
    np.testing.assert_allclose(corr1d(a, b, mode), sig.correlate(a, b, mode=mode), atol=1e-12)
    np.testing.assert_allclose(
        correlate2d([a], [b], padding=mode)[0], sig.correlate2d([a], [b], mode=mode)[0], atol=1e-12
    )


@pytest.mark.parametrize("mode", ["valid", "full"])
def test_scipy_correlate2d_complex_conjugates_second(mode):
    # _TestCorrelateComplex / TestCorrelate2d complex cases: scipy's result is
    # sum in1 * conj(in2); convlens' is sum in1 * in2
    sig = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 6)) + 1j * rng.standard_normal((5, 6))
    b = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    np.testing.assert_allclose(
        correlate2d(a, np.conj(b), padding=mode), sig.correlate2d(a, b, mode=mode), atol=1e-12
    )
    np.testing.assert_allclose(
        convolve2d(a, b, padding=mode), sig.convolve2d(a, b, mode=mode), atol=1e-12
    )


def test_scipy_fillvalue_zero_is_full_padding():
    # TestCorrelate2d / TestConvolve2d.test_fillvalue: boundary='fill', fillvalue=0 is zero padding
    sig = pytest.importorskip("scipy.signal")
    a = np.array([[1, 2, 3], [4, 5, 6]])
    b = np.array([[1, 0], [0, -1]])
    want = sig.correlate2d(a, b, mode="full", boundary="fill", fillvalue=0)
    assert correlate2d(a, b, padding="full").tolist() == want.tolist()


# ------------------------------------------------------------------ torch
# test/nn/test_convolution.py and torch/testing/_internal/common_methods_invocations.py
# (error_inputs_conv1d / error_inputs_conv2d): invalid geometry arguments raise.

TORCH_BAD = [
    ({"stride": 1.5}, "stride must be integers"),
    ({"stride": 2.0}, "stride must be integers"),
    ({"stride": "2"}, "stride must be integers"),
    ({"stride": True}, "stride must be integers"),
    ({"dilation": 1.5}, "dilation must be integers"),
    ({"padding": 1.5}, "got 1.5"),
    ({"padding": ((1.5, 2.5), (0, 0))}, "padding must be integers"),
    ({"groups": 1.5}, "groups must be a positive integer"),
    # error_inputs_conv2d: non-positive stride / negative padding / non-positive groups / dilation
    ({"stride": -1}, "stride must be >= 1"),
    ({"padding": -1}, "padding must be >= 0"),
    ({"groups": 0}, "groups must be a positive integer"),
    ({"dilation": 0}, "dilation must be >= 1"),
]


@pytest.mark.parametrize(("kwargs", "message"), TORCH_BAD)
def test_torch_error_inputs(kwargs, message):
    x = np.zeros((1, 1, 5, 5))
    w = np.zeros((1, 1, 3, 3))
    with pytest.raises(ConvlensError, match=message):
        correlate(x, w, **kwargs)
    torch = pytest.importorskip("torch")
    tkw = dict(kwargs)
    if isinstance(tkw.get("padding"), tuple):  # torch takes one symmetric int per axis
        tkw["padding"] = tuple(p[0] for p in tkw["padding"])
    with pytest.raises((TypeError, RuntimeError, ValueError)):
        torch.nn.functional.conv2d(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 3, 3), **tkw)


@pytest.mark.parametrize("kwargs", [{"padding": np.int64(1)}, {"stride": np.int64(2)}])
def test_torch_accepts_numpy_integers_and_so_does_convlens(kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((1, 1, 6, 6)), rng.standard_normal((1, 1, 3, 3))
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), **kwargs).numpy()
    np.testing.assert_allclose(correlate(x, w, **kwargs), want, atol=1e-12)


def test_torch_kernel_bigger_than_input():
    # test_convolution.py::test_invalid_conv2d: "Kernel size can't be greater than actual input size"
    with pytest.raises(ConvlensError, match="kernel larger than input"):
        correlate(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), dilation=2, stride=2)


def test_torch_same_padding_with_stride_differs():
    # test_convolution.py::test_conv2d_same_padding / error_inputs: torch refuses padding='same'
    # with stride > 1; convlens uses the TensorFlow rule (output ceil(L / s))
    assert correlate(
        np.ones((1, 1, 7, 7)), np.ones((1, 1, 3, 3)), padding="same", stride=2
    ).shape == (
        1,
        1,
        4,
        4,
    )


def test_torch_convolution_is_flipped_correlation():
    # test_convolution.py compares F.conv2d against a reference cross-correlation; convolve flips
    x = np.arange(16).reshape(1, 1, 4, 4)
    w = np.array([[[[1, 2], [3, 4]]]])
    assert (convolve(x, w) == correlate(x, w[..., ::-1, ::-1])).all()


# ------------------------------------------------------------------ scikit-image
# skimage/feature/tests/test_template.py


def test_skimage_template_peaks():
    # test_template: the template placed twice in noise is found at both places
    rng = np.random.default_rng(1)
    image = 0.1 * rng.random((60, 60))
    target = np.zeros((8, 8))
    target[1:-1, 1:-1] = 1.0
    target[3:-3, 3:-3] = 0.5
    for y, x in ((10, 12), (40, 35)):
        image[y : y + 8, x : x + 8] += target
    r = normalized_cross_correlation(image, target)
    top2 = np.argsort(r.ravel())[-2:]
    assert {tuple(int(v) for v in np.unravel_index(i, r.shape)) for i in top2} == {
        (10, 12),
        (40, 35),
    }
    assert r.max() > 0.99


def test_skimage_no_nans():
    # test_no_nans: flat image regions give 0, never NaN
    image = np.ones((50, 50))
    image[:10, :10] = 0
    image[10:20, 10:20] = 2.5
    template = np.zeros((5, 5))
    template[2, 2] = 1
    for padding in ("valid", "same", "full"):
        assert not np.isnan(normalized_cross_correlation(image, template, padding=padding)).any()


def test_skimage_switched_arguments():
    # test_switched_arguments: a template larger than the image raises
    with pytest.raises(ConvlensError):
        normalized_cross_correlation(np.ones((5, 5)), np.eye(7))


def test_skimage_normalization():
    # test_normalization: a perfect match gives 1, an inverted match gives -1
    n, imsize = 4, 10
    template = np.zeros((n, n))
    template[: n // 2, : n // 2] = 1
    image = np.full((imsize, imsize), 0.5)
    image[1 : 1 + n, 1 : 1 + n] = template
    image[5 : 5 + n, 5 : 5 + n] = 1 - template
    r = normalized_cross_correlation(image, template)
    assert abs(r[1, 1] - 1.0) < 1e-12
    assert abs(r[5, 5] + 1.0) < 1e-12


def test_skimage_bounding_values():
    # test_bounding_values: on data.page() with a single-pixel template, -1 <= r <= 1
    skdata = pytest.importorskip("skimage.data")
    feature = pytest.importorskip("skimage.feature")
    image = skdata.page().astype(float) / 255.0
    template = np.zeros((3, 3))
    template[1, 1] = 1
    r = normalized_cross_correlation(image, template)
    assert r.max() < 1 + 1e-7 and r.min() > -1 - 1e-7
    np.testing.assert_allclose(r, feature.match_template(image, template), atol=1e-6)


def test_skimage_pad_input():
    # test_pad_input (in its spirit): a full template copy, an inverted copy and two half templates
    # cut by the image edges; with padding the full copy scores 1, the half templates come next
    # (their centres sit on the border, over padded zeros) and the inverted copy scores -1
    feature = pytest.importorskip("skimage.feature")
    template = np.zeros((5, 5))
    template[2, :] = 1
    template[:, 2] = 1
    template[2, 2] = 2
    image = np.full((9, 25), 0.5)
    image[2:7, 6:11] += template  # full copy centred at (4, 8)
    image[2:7, 14:19] -= template  # inverted copy centred at (4, 16)
    image[2:7, 22:25] += template[:, :3]  # left half, centre on the last column (4, 24)
    image[2:7, 0:2] += template[:, 3:]  # right half, centre just outside: nearest (4, 0)
    r = normalized_cross_correlation(image, template, padding="same")
    want = feature.match_template(image, template, pad_input=True, mode="constant")
    np.testing.assert_allclose(r, want, atol=1e-6)
    assert r.shape == image.shape
    top = [tuple(int(v) for v in np.unravel_index(i, r.shape)) for i in np.argsort(-r.ravel())[:3]]
    assert top == [(4, 8), (4, 24), (4, 0)]
    assert abs(r[4, 8] - 1) < 1e-12 and abs(r[4, 16] + 1) < 1e-12


def test_skimage_even_template_padding_offset():
    # pad_input=True puts h // 2 zeros before; convlens' "same" (PyTorch) puts (h - 1) // 2
    feature = pytest.importorskip("skimage.feature")
    rng = np.random.default_rng(2)
    image, template = rng.random((12, 13)), rng.random((4, 2))
    want = feature.match_template(image, template, pad_input=True, mode="constant")
    pads = ((2, 1), (1, 0))
    assert resolve_padding("same", image.shape, template.shape) == ((1, 2), (0, 1))
    np.testing.assert_allclose(
        normalized_cross_correlation(image, template, padding=pads), want, atol=1e-6
    )
