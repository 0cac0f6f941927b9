"""Exact arithmetic: integers compare with ==, Fractions stay Fractions, dtypes are kept."""

from fractions import Fraction

import numpy as np
import pytest

from convlens.errors import ConvlensError
from convlens.ops import (
    convolve,
    convolve2d,
    correlate,
    correlate2d,
    flip,
    output_shape,
    resolve_padding,
)
from tests.oracles import loop_correlate

SEED_K = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
SEED_I = np.array([[9, 8, 7, 6], [5, 4, 3, 2], [1, 2, 3, 4], [5, 6, 7, 8]])


def test_seed_example_is_154_not_146():
    out = correlate2d(SEED_I, SEED_K)
    assert out.dtype == np.int64
    assert out.tolist() == [[154, 157], [200, 233]]
    assert out[0, 0] != 146


def test_seed_example_convolution_flips():
    assert convolve2d(SEED_I, SEED_K).tolist() == correlate2d(SEED_I, SEED_K[::-1, ::-1]).tolist()
    assert convolve2d(SEED_I, SEED_K).tolist() == [[266, 233], [160, 157]]  # 146 is neither


@pytest.mark.parametrize("padding", ["valid", "same", "full", 1, (2, 0), ((1, 2), (0, 3))])
@pytest.mark.parametrize("stride", [1, 2, (1, 3)])
@pytest.mark.parametrize("dilation", [1, 2])
def test_integer_2d_matches_loop_exactly(padding, stride, dilation):
    rng = np.random.default_rng(0)
    x = rng.integers(-50, 50, size=(2, 4, 9, 11))
    w = rng.integers(-9, 9, size=(6, 2, 3, 2))
    b = rng.integers(-5, 5, size=6)
    pads = resolve_padding(padding, x.shape[2:], w.shape[2:], stride, dilation)
    got = correlate(x, w, bias=b, stride=stride, padding=padding, dilation=dilation, groups=2)
    want = loop_correlate(
        x, w, bias=b, stride=stride, pads=pads, dilation=dilation, groups=2, dtype=object
    )
    assert got.dtype == np.int64
    assert got.shape == want.shape
    assert (got == want).all()


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_integer_nd_matches_loop(nd):
    rng = np.random.default_rng(nd)
    x = rng.integers(-20, 20, size=(2, 3) + (6,) * nd)
    w = rng.integers(-5, 5, size=(4, 3) + (3,) * nd)
    got = correlate(x, w, padding="same")
    pads = resolve_padding("same", x.shape[2:], w.shape[2:])
    assert (got == loop_correlate(x, w, pads=pads, dtype=object)).all()
    assert (convolve(x, w) == correlate(x, flip(w, nd))).all()


def test_fractions_stay_exact():
    x = np.array(
        [[Fraction(1, 3), Fraction(1, 6), 1], [2, Fraction(-1, 2), Fraction(5, 7)]], dtype=object
    )
    k = np.array([[Fraction(1, 2), 3]], dtype=object)
    out = correlate2d(x, k)
    assert out.dtype == object
    assert out[0, 0] == Fraction(1, 6) + Fraction(1, 2)
    assert out[1, 1] == Fraction(-1, 4) + Fraction(15, 7)
    assert all(isinstance(v, Fraction | int) for v in out.flat)


def test_overflowing_ints_fall_back_to_python_ints():
    big = 2**62
    x = np.array([[big, big, big]], dtype=np.int64)
    out = correlate2d(x, np.array([[1, 1, 1]]))
    assert out.dtype == object
    assert out[0, 0] == 3 * big  # would wrap around in int64


def test_uint8_image_does_not_wrap():
    x = np.full((3, 3), 255, dtype=np.uint8)
    assert correlate2d(x, np.ones((3, 3), dtype=np.uint8))[0, 0] == 9 * 255


@pytest.mark.parametrize(
    ("xd", "wd", "want"),
    [
        (np.float32, np.float32, np.float32),
        (np.float32, np.int64, np.float32),
        (np.float64, np.float32, np.float64),
        (np.int32, np.int8, np.int64),
        (np.float16, np.float16, np.float16),
        (np.complex64, np.float32, np.complex64),
        # float16 cannot hold integers above 65504: an integer input with float16 gives float32
        (np.int64, np.float16, np.float32),
        (np.uint8, np.float16, np.float32),
        (np.float16, np.int32, np.float32),
        (np.float16, np.float32, np.float32),
    ],
)
def test_dtypes(xd, wd, want):
    x = np.ones((1, 1, 5, 5), dtype=xd)
    w = np.ones((1, 1, 3, 3), dtype=wd)
    assert correlate(x, w).dtype == want


def test_bias_and_groups_depthwise():
    x = np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    w = np.ones((6, 1, 2, 2), dtype=int)
    b = np.arange(6)
    out = correlate(x, w, bias=b, groups=3)
    assert out.shape == (2, 6, 3, 3)
    # output channel 2 sees input channel 1 only (depthwise multiplier 2)
    assert out[0, 2, 0, 0] == x[0, 1, :2, :2].sum() + 2


def test_output_shape_formula_agrees():
    x = np.zeros((1, 1, 17, 10))
    w = np.zeros((1, 1, 4, 3))
    for s in (1, 2, 3):
        for d in (1, 2):
            for p in ("valid", "same", "full", 2):
                assert correlate(x, w, stride=s, dilation=d, padding=p).shape[2:] == output_shape(
                    (17, 10), (4, 3), s, p, d
                )


def test_same_padding_keeps_size_and_matches_torch_split():
    # even kernel: total padding 3, lo = 1, hi = 2 (PyTorch's rule for padding='same')
    assert resolve_padding("same", (10,), (4,)) == ((1, 2),)
    assert correlate(np.zeros((1, 1, 10)), np.zeros((1, 1, 4)), padding="same").shape == (1, 1, 10)
    assert output_shape((10,), (3,), stride=2, padding="same") == (5,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stride": 0}, "stride must be >= 1"),
        ({"stride": -1}, "stride must be >= 1"),
        ({"dilation": 0}, "dilation must be >= 1"),
        ({"padding": -1}, "padding must be >= 0"),
        ({"padding": "circular"}, "padding must be 'valid'"),
        ({"groups": 2}, "groups=2 must divide"),
        ({"groups": 0}, "groups must be a positive integer"),
        ({"stride": (1, 2, 3)}, "stride must have 2 value"),
        # issue 12: only Python/NumPy integers (as PyTorch), never bool, float or str
        ({"stride": 1.5}, r"stride must be integers, got 1\.5"),
        ({"stride": 2.0}, r"stride must be integers, got 2\.0"),
        ({"stride": 2.9}, r"stride must be integers, got 2\.9"),
        ({"stride": "2"}, r"stride must be integers, got '2'"),
        ({"stride": True}, "stride must be integers, got True"),
        ({"stride": (1, 1.5)}, r"stride must be integers, got \(1, 1\.5\)"),
        ({"dilation": 1.5}, r"dilation must be integers, got 1\.5"),
        ({"dilation": np.float64(2.0)}, r"dilation must be integers, got 2\.0"),
        ({"dilation": False}, "dilation must be integers, got False"),
        ({"padding": 1.5}, r"got 1\.5"),
        ({"padding": True}, "got True"),
        ({"padding": (1, 2.9)}, r"padding entry must be an integer .* got 2\.9"),
        ({"padding": ((1.5, 2.5), (0, 0))}, "padding must be integers"),
        ({"padding": ((1, 2), ("1", 0))}, "padding must be integers"),
        ({"groups": 1.0}, "groups must be a positive integer, got 1.0"),
        ({"groups": True}, "groups must be a positive integer, got True"),
        ({"groups": "1"}, "groups must be a positive integer"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ConvlensError, match=message):
        correlate(np.zeros((1, 3, 5, 5)), np.zeros((3, 3, 3, 3)), **kwargs)


def test_kernel_larger_than_input_without_padding():
    with pytest.raises(ConvlensError, match="kernel larger than input"):
        correlate2d(np.zeros((2, 2)), np.zeros((3, 3)))
    assert correlate2d(np.zeros((2, 2)), np.zeros((3, 3)), padding="full").shape == (4, 4)


def test_shape_errors_name_the_shapes():
    with pytest.raises(
        ConvlensError, match=r"expected 4 dimensions .* got 3 dimensions with shape \(1, 5, 5\)"
    ):
        correlate(np.zeros((1, 5, 5)), np.zeros((1, 1, 3, 3)))
    with pytest.raises(ConvlensError, match="input channels per group"):
        correlate(np.zeros((1, 4, 5, 5)), np.zeros((2, 3, 3, 3)))
    with pytest.raises(ConvlensError, match="bias: expected shape"):
        correlate(np.zeros((1, 1, 5, 5)), np.zeros((2, 1, 3, 3)), bias=np.zeros(3))
    with pytest.raises(ConvlensError, match="non-empty"):
        correlate2d(np.zeros((0, 3)), np.zeros((1, 1)))
    with pytest.raises(ConvlensError, match="numeric"):
        correlate2d(np.array([["a", "b"]]), np.ones((1, 1)))
    with pytest.raises(ConvlensError, match="hold numbers"):
        correlate2d(np.array([[1, "b"]], dtype=object), np.ones((1, 1)))


def test_nan_and_inf_propagate_for_floats():
    x = np.array([[1.0, np.nan, 2.0, np.inf]])
    out = correlate2d(x, np.array([[1.0, 1.0]]))
    assert np.isnan(out[0, 0]) and np.isnan(out[0, 1]) and np.isinf(out[0, 2])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"padding": np.int64(1)},
        {"stride": np.int64(2)},
        {"dilation": np.int32(2)},
        {"groups": np.int64(3)},
        {"padding": (np.int64(1), np.uint8(0))},
        {"padding": ((np.int64(0), np.int16(1)), (1, np.int64(2)))},
        {"stride": np.array([1, 2])},
        {"padding": np.array([[0, 1], [1, 0]])},
    ],
)
def test_numpy_integers_accepted_everywhere(kwargs):
    x = np.arange(3 * 6 * 6).reshape(1, 3, 6, 6)
    w = np.ones((3, 1, 3, 3), dtype=np.int64)
    plain = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    plain = {k: _py_ints(v) for k, v in plain.items()}
    kw = {"groups": 3} | kwargs
    want = {"groups": 3} | plain
    assert (correlate(x, w, **kw) == correlate(x, w, **want)).all()


def _py_ints(v):
    if isinstance(v, tuple | list):
        return tuple(_py_ints(e) for e in v)
    return int(v)


def test_object_arrays_of_numpy_int64_do_not_wrap():
    # issue 12: 2**62 * 4 used to give 0 (np.int64 inside an object array wraps silently)
    big = np.int64(2**62)
    x = np.array([[big, np.int64(3), big], [np.int64(-(2**62)), big, np.int64(7)]], dtype=object)
    k = np.array([[np.int64(4), np.int64(2**40)]], dtype=object)
    out = correlate2d(x, k)
    assert out.dtype == object
    assert out[0, 0] == 2**62 * 4 + 3 * 2**40
    assert all(type(v) is int for v in out.flat)
    want = loop_correlate(x[None, None], k[None, None], dtype=object)[0, 0]
    assert out.tolist() == want.tolist()


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_object_int64_mixed_with_int64_arrays_against_python_loop(nd):
    rng = np.random.default_rng(40 + nd)
    xs = rng.integers(-(2**62), 2**62, size=(1, 2) + (4,) * nd, dtype=np.int64)
    x = np.empty(xs.shape, dtype=object)
    x.flat[:] = list(xs.flat)  # np.int64 elements, not Python ints
    w = rng.integers(-(2**62), 2**62, size=(2, 2) + (2,) * nd, dtype=np.int64)
    b = np.array([np.int64(2**62), np.int64(-(2**62))], dtype=object)
    got = correlate(x, w, bias=b, padding=1, stride=2)
    pads = ((1, 1),) * nd
    want = loop_correlate(xs, w, bias=[2**62, -(2**62)], pads=pads, stride=2, dtype=object)
    assert got.tolist() == want.tolist()
    assert all(type(v) is int for v in got.flat)


def test_conv_matrix_object_int64_is_exact():
    from convlens.ops import conv_matrix

    w = np.array([[[np.int64(2**62), np.int64(2**62)]]], dtype=object)
    m = conv_matrix(w, (1, 3))
    x = np.array([2**62, 4, 4], dtype=object)
    assert (m @ x).tolist() == [2**124 + 2**64, 2**64 + 2**64]


def test_int_with_float16_holds_large_pixels():
    # issue 12: pixels above 65504 gave inf in float16 even when the result fits
    img = np.full((3, 3), 70_000, dtype=np.int64)
    k = np.full((2, 2), 0.5, dtype=np.float16)
    out = correlate2d(img, k)
    assert out.dtype == np.float32
    assert np.all(out == 140_000.0)


def test_conv_matrix_of_a_uint64_kernel_above_2_63_is_exact():
    # reliability round 3: a uint64 weight above 2**63 raised a NumPy casting error
    from convlens.ops.matrix import conv_matrix

    w = np.array([[2**64 - 1, 1], [2, 3]], dtype=np.uint64)
    x = np.arange(9).reshape(3, 3)
    m = conv_matrix(w, (3, 3))
    assert m.dtype == object
    loop = [
        sum(int(w[i, j]) * int(x[r + i, c + j]) for i in range(2) for j in range(2))
        for r in range(2)
        for c in range(2)
    ]
    assert (m @ x.astype(object).ravel()).tolist() == loop
    small = conv_matrix(np.array([[1, 2], [3, 4]], dtype=np.uint64), (3, 3))
    assert small.dtype == np.int64  # int64 where no sum can wrap
