"""Floats against three independent oracles: a plain float64 loop, scipy, and torch (float64)."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal as sig
from hypothesis import given
from hypothesis import strategies as st

from convlens.ops import convolve2d, correlate, correlate2d, resolve_padding
from tests.oracles import loop_correlate

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_correlate2d_vs_scipy_signal(mode):
    rng = np.random.default_rng(1)
    img = rng.standard_normal((23, 31))
    for shape in [(3, 3), (5, 5), (2, 4), (7, 3)]:
        k = rng.standard_normal(shape)
        got = correlate2d(img, k, padding=mode)
        want = sig.correlate2d(img, k, mode=mode)
        if mode == "same" and (shape[0] % 2 == 0 or shape[1] % 2 == 0):
            # scipy centres 'same' differently for even sizes; those are checked against torch below.
            continue
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            convolve2d(img, k, padding=mode),
            sig.convolve2d(img, k, mode=mode),
            rtol=1e-12,
            atol=1e-12,
        )


def test_correlate2d_vs_ndimage_constant_mode():
    rng = np.random.default_rng(2)
    img = rng.standard_normal((40, 33))
    for size in (3, 5, 7):
        k = rng.standard_normal((size, size))
        got = correlate2d(img, k, padding="same")
        want = ndi.correlate(img, k, mode="constant", cval=0.0)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_float32_kept_and_close_to_float64():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    got = correlate(x, w)
    assert got.dtype == np.float32
    want = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double()).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _torch_conv(nd, x, w, b, stride, pads, dilation, groups):
    xt = torch.from_numpy(np.ascontiguousarray(x))
    # torch takes symmetric padding; apply asymmetric zero padding first
    flat = []
    for lo, hi in reversed(pads):
        flat += [lo, hi]
    xt = F.pad(xt, flat)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    return fn(
        xt,
        torch.from_numpy(w),
        None if b is None else torch.from_numpy(b),
        stride=stride,
        dilation=dilation,
        groups=groups,
    ).numpy()


@st.composite
def conv_case(draw):
    nd = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    cg = draw(st.integers(1, 2))
    og = draw(st.integers(1, 2))
    ks = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    padding = draw(st.sampled_from(["valid", "same", "full", 0, 1, 2]))
    min_len = [d * (k - 1) + 1 for k, d in zip(ks, dilation, strict=True)]
    sizes = tuple(draw(st.integers(m, m + 6)) for m in min_len)
    n = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**31 - 1))
    bias = draw(st.booleans())
    return nd, groups, cg, og, ks, stride, dilation, padding, sizes, n, seed, bias


@given(conv_case())
def test_random_configs_against_torch_and_loop(case):
    nd, groups, cg, og, ks, stride, dilation, padding, sizes, n, seed, has_bias = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, groups * cg, *sizes))
    w = rng.standard_normal((groups * og, cg, *ks))
    b = rng.standard_normal(groups * og) if has_bias else None
    pads = resolve_padding(padding, sizes, ks, stride, dilation)
    got = correlate(x, w, bias=b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    want_torch = _torch_conv(nd, x, w, b, stride, pads, dilation, groups)
    want_loop = loop_correlate(
        x, w, bias=b, stride=stride, pads=pads, dilation=dilation, groups=groups
    )
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want_torch, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, want_loop, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_torch_same_padding_even_kernel(nd):
    rng = np.random.default_rng(nd)
    x = rng.standard_normal((1, 2) + (7,) * nd)
    w = rng.standard_normal((3, 2) + (4,) * nd)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    want = fn(torch.from_numpy(x), torch.from_numpy(w), padding="same").numpy()
    np.testing.assert_allclose(correlate(x, w, padding="same"), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride", [(2, 1), (1, 1)])
@pytest.mark.parametrize("groups", [1, 2])
def test_every_strategy_agrees_with_the_loop(monkeypatch, groups, stride):
    from convlens.ops import strategies

    monkeypatch.setattr(strategies, "IM2COL_BUDGET", 1)  # force one batch item per chunk
    monkeypatch.setattr(strategies, "THREAD_MIN_POSITIONS", 1)  # force threaded bands
    rng = np.random.default_rng(groups)
    x = rng.standard_normal((3, 2 * groups, 11, 9))
    w_dw = rng.standard_normal((2 * groups, 1, 3, 2))
    w_full = rng.standard_normal((4, 2, 3, 2))
    for w, g in ((w_dw, 2 * groups), (w_full, groups)):
        pads = ((1, 1), (0, 2))
        xp = np.pad(x, ((0, 0), (0, 0), *pads))
        want = loop_correlate(x, w, stride=stride, pads=pads, dilation=(1, 2), groups=g)
        out_sp = want.shape[2:]
        for name in ("taps", "im2col") + (("shift_add",) if w.shape[1] == 1 else ()):
            got = strategies.compute(xp, w, stride, (1, 2), g, out_sp, strategy=name)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_flat_shift_add_stride_one_matches_the_loop(monkeypatch, nd, groups, threaded):
    """Stride 1 reads the padded planes as one flat array: batch, groups, dilation, every rank."""
    from convlens.ops import strategies

    if threaded:
        monkeypatch.setattr(strategies, "THREAD_MIN_POSITIONS", 1)
    rng = np.random.default_rng(10 * nd + groups)
    x = rng.standard_normal((2, groups, *(7, 6, 5)[:nd]))
    w = rng.standard_normal((groups, 1, *(3, 2, 3)[:nd]))
    pads = ((1, 2), (0, 1), (2, 0))[:nd]
    dil = (2, 1, 1)[:nd]
    want = loop_correlate(x, w, stride=1, pads=pads, dilation=dil, groups=groups)
    got = correlate(x, w, padding=pads, dilation=dil, groups=groups)
    assert got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # float32 keeps its dtype on the flat path
    got32 = correlate(
        x.astype(np.float32), w.astype(np.float32), padding=pads, dilation=dil, groups=groups
    )
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("size", "ksize"), [((64, 64), (9, 9)), ((40, 33), (5, 5)), ((31, 29), (3, 7))]
)
def test_float16_accumulates_in_float32(size, ksize):
    # issue 12: float16 was accumulated in float16 (0.075 max error vs torch's 0.0078 for 64x64, 9x9)
    rng = np.random.default_rng(11)
    img = rng.standard_normal(size).astype(np.float16)
    k = rng.standard_normal(ksize).astype(np.float16)
    ref = correlate2d(img.astype(np.float64), k.astype(np.float64))
    got = correlate2d(img, k)
    assert got.dtype == np.float16
    err = np.abs(got.astype(np.float64) - ref)
    # the float32 sum is rounded to float16 once: within one float16 ulp of the exact value
    assert np.all(err <= np.spacing(np.abs(ref).astype(np.float16)).astype(np.float64))
    half = F.conv2d(torch.from_numpy(img)[None, None], torch.from_numpy(k)[None, None])[0, 0]
    torch_err = np.abs(half.numpy().astype(np.float64) - ref).max()
    assert err.max() <= torch_err * (1 + 1e-9)


@pytest.mark.parametrize("groups", [1, 3])
def test_float16_depthwise_and_channels_within_float16_rounding(groups):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3, 20, 20)).astype(np.float16)
    w = rng.standard_normal((3, 3 // groups, 5, 5)).astype(np.float16)
    b = rng.standard_normal(3).astype(np.float16)
    got = correlate(x, w, bias=b, groups=groups, padding="same")
    assert got.dtype == np.float16
    ref = correlate(
        x.astype(np.float64),
        w.astype(np.float64),
        bias=b.astype(np.float64),
        groups=groups,
        padding="same",
    )
    assert np.all(
        np.abs(got - ref) <= np.spacing(np.abs(ref).astype(np.float16)).astype(np.float64)
    )


def _complex(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


@pytest.mark.parametrize("mode", ["valid", "full"])
def test_complex_is_not_conjugated_like_torch_scipy_conjugates(mode):
    # convlens' rule: sum x * w (no conjugation), as torch; scipy.signal.correlate2d conjugates in2.
    rng = np.random.default_rng(13)
    img, k = _complex(rng, (9, 11)), _complex(rng, (3, 4))
    got = correlate2d(img, k, padding=mode)
    np.testing.assert_allclose(got, sig.correlate2d(img, np.conj(k), mode=mode), atol=1e-12)
    assert not np.allclose(got, sig.correlate2d(img, k, mode=mode))
    loop = loop_correlate(
        img[None, None],
        k[None, None],
        pads=resolve_padding(mode, img.shape, k.shape),
        dtype=np.complex128,
    )[0, 0]
    np.testing.assert_allclose(got, loop, atol=1e-12)
    # convolve flips and never conjugates either: scipy's convolve2d does not conjugate
    np.testing.assert_allclose(
        convolve2d(img, k, padding=mode), sig.convolve2d(img, k, mode=mode), atol=1e-12
    )


@pytest.mark.parametrize("groups", [1, 2])
def test_complex_matches_torch_conv(groups):
    rng = np.random.default_rng(14)
    x, w = _complex(rng, (2, 4, 8, 7)), _complex(rng, (4, 4 // groups, 3, 2))
    got = correlate(x, w, groups=groups, padding=1, stride=(1, 2))
    try:
        want = F.conv2d(
            torch.from_numpy(x), torch.from_numpy(w), groups=groups, padding=1, stride=(1, 2)
        ).numpy()
    except RuntimeError:  # pragma: no cover - a torch build without complex conv
        want = loop_correlate(
            x, w, pads=((1, 1), (1, 1)), stride=(1, 2), groups=groups, dtype=np.complex128
        )
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_complex_1d_vs_numpy_correlate_conjugation():
    # numpy.correlate(a, v) = sum a[n + k] * conj(v[n]); convlens multiplies without conjugating
    a = np.array([1 + 1j, 2, 3 - 2j, 4j])
    v = np.array([1j, 2 - 1j])
    got = correlate(a[None, None], v[None, None])[0, 0]
    np.testing.assert_allclose(got, np.correlate(a, np.conj(v), "valid"))
    np.testing.assert_allclose(np.conj(got), np.correlate(np.conj(a), v, "valid"))
