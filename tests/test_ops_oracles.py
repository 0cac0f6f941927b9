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
