"""The bank: sign and scale pinned against scikit-image / scipy, every kernel sane, spec parsing."""

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage import data, filters

from convlens.errors import ConvlensError
from convlens.kernels import get_kernel, kernel_parameters, list_kernels, parse_kernel_spec
from convlens.ops import correlate2d

IMG = data.camera()[100:180, 200:290].astype(np.float64) / 255.0
INNER = (slice(3, -3), slice(3, -3))


def corr(k, padding="same"):
    return correlate2d(IMG, np.asarray(k, dtype=np.float64), padding=padding)


# name -> (scikit-image call, scale): skimage(IMG) == scale * correlate2d(IMG, K) away from the border
SKIMAGE_PINS = {
    "sobel_x": (filters.sobel_v, 1 / 4),
    "sobel_y": (filters.sobel_h, 1 / 4),
    "prewitt_x": (filters.prewitt_v, 1 / 3),
    "prewitt_y": (filters.prewitt_h, 1 / 3),
    "scharr_x": (filters.scharr_v, 1 / 16),
    "scharr_y": (filters.scharr_h, 1 / 16),
    "farid_x": (filters.farid_v, 1.0),
    "farid_y": (filters.farid_h, 1.0),
    "laplacian_4": (lambda im: filters.laplace(im, ksize=3), -1.0),
}


@pytest.mark.parametrize("name", sorted(SKIMAGE_PINS))
def test_sign_and_scale_match_skimage(name):
    fn, scale = SKIMAGE_PINS[name]
    k = get_kernel(name)
    assert k.skimage is not None
    np.testing.assert_allclose(
        fn(IMG)[INNER], scale * corr(k.weights)[INNER], rtol=1e-10, atol=1e-12
    )


def test_roberts_match_skimage_with_top_left_anchor():
    for name, fn in (
        ("roberts_pos_diag", filters.roberts_pos_diag),
        ("roberts_neg_diag", filters.roberts_neg_diag),
    ):
        k = get_kernel(name).weights
        np.testing.assert_allclose(fn(IMG)[1:-2, 1:-2], corr(k, "valid")[1:-1, 1:-1], atol=1e-12)


def test_sobel_x_is_positive_on_rising_ramp():
    ramp = np.tile(np.arange(10.0), (10, 1))  # intensity increases to the right
    for name in ("sobel_x", "prewitt_x", "scharr_x", "farid_x", "gaussian_dx"):
        out = correlate2d(ramp, get_kernel(name).weights, padding="valid")
        assert (out > 0).all(), name
    for name in ("sobel_y", "prewitt_y", "scharr_y", "farid_y", "gaussian_dy"):
        out = correlate2d(ramp.T, get_kernel(name).weights, padding="valid")
        assert (out > 0).all(), name
    # sobel on a unit ramp gives 8 (= the documented unit-gain divisor)
    assert correlate2d(ramp, get_kernel("sobel_x").weights)[0, 0] == 8
    assert "divide by 8" in get_kernel("sobel_x").normalisation


def test_gaussian_family_matches_scipy_impulse_responses():
    delta = np.zeros((15, 15))
    delta[7, 7] = 1.0
    for sigma, size in ((1.0, 5), (1.5, 7), (0.8, 3)):
        r = size // 2
        g = get_kernel("gaussian", sigma=sigma, size=size).weights
        np.testing.assert_allclose(
            filters.gaussian(
                IMG, sigma=sigma, truncate=r / sigma, mode="constant", preserve_range=True
            ),
            corr(g),
            atol=1e-12,
        )
        np.testing.assert_allclose(
            ndi.gaussian_laplace(IMG, sigma, radius=r, mode="constant"),
            corr(get_kernel("log", sigma=sigma, size=size).weights),
            atol=1e-12,
        )
        np.testing.assert_allclose(
            ndi.gaussian_filter(IMG, sigma, order=(0, 1), radius=r, mode="constant"),
            corr(get_kernel("gaussian_dx", sigma=sigma, size=size).weights),
            atol=1e-12,
        )
        np.testing.assert_allclose(
            ndi.gaussian_filter(IMG, sigma, order=(1, 0), radius=r, mode="constant"),
            corr(get_kernel("gaussian_dy", sigma=sigma, size=size).weights),
            atol=1e-12,
        )


def test_dog_equals_difference_of_scipy_gaussians():
    k = get_kernel("dog", sigma1=1.0, sigma2=1.6, size=7)
    want = ndi.gaussian_filter(IMG, 1.0, radius=3, mode="constant") - ndi.gaussian_filter(
        IMG, 1.6, radius=3, mode="constant"
    )
    np.testing.assert_allclose(corr(k.weights), want, atol=1e-12)
    assert abs(k.weights.sum()) < 1e-12


@pytest.mark.parametrize(
    ("angle", "phase", "gamma"), [(0, 0, 1.0), (30, 90, 1.0), (90, 45, 0.5), (135, 0, 2.0)]
)
def test_gabor_is_skimage_gabor_kernel_real_part(angle, phase, gamma):
    f, sigma, size = 0.2, 2.0, 9
    k = get_kernel(
        "gabor", angle=angle, frequency=f, phase=phase, sigma=sigma, gamma=gamma, size=size
    )
    sk = filters.gabor_kernel(
        f,
        theta=math.radians(angle),
        sigma_x=sigma,
        sigma_y=sigma / gamma,
        n_stds=6,
        offset=math.radians(phase),
    ).real
    cy, cx = sk.shape[0] // 2, sk.shape[1] // 2
    crop = sk[cy - 4 : cy + 5, cx - 4 : cx + 5]
    np.testing.assert_allclose(k.weights, crop, atol=1e-15)


def test_gabor_flip_relation_with_skimage_filter():
    # skimage.filters.gabor convolves (flips): its real response equals correlation with the
    # flipped kernel; for phase 0 the kernel is point-symmetric, so both agree.
    k = get_kernel("gabor", angle=30, frequency=0.2, phase=90, sigma=1.5, size=13)
    sk_real, _ = filters.gabor(
        IMG,
        0.2,
        theta=math.radians(30),
        sigma_x=1.5,
        sigma_y=1.5,
        n_stds=4,
        offset=math.radians(90),
        mode="constant",
    )
    np.testing.assert_allclose(
        sk_real[8:-8, 8:-8], corr(k.weights[::-1, ::-1])[8:-8, 8:-8], atol=1e-4
    )
    assert not np.allclose(sk_real[8:-8, 8:-8], corr(k.weights)[8:-8, 8:-8], atol=1e-4)


def test_gabor_orientation_convention():
    vertical_bars = np.tile(np.cos(2 * np.pi * 0.2 * np.arange(40)), (40, 1))
    r0 = np.abs(
        correlate2d(vertical_bars, get_kernel("gabor", angle=0, frequency=0.2).weights)
    ).mean()
    r90 = np.abs(
        correlate2d(vertical_bars, get_kernel("gabor", angle=90, frequency=0.2).weights)
    ).mean()
    assert r0 > 10 * r90


@pytest.mark.parametrize("name", list_kernels())
def test_every_kernel_is_documented_and_finite(name):
    k = get_kernel(name)
    assert k.name == name
    assert k.weights.ndim == 2 and np.isfinite(k.weights.astype(float)).all()
    assert k.description and k.source and k.normalisation
    d = k.to_dict()
    assert d["shape"] == list(k.shape)


def test_kirsch_compass_are_rotations():
    names = [f"kirsch_{d}" for d in ("n", "ne", "e", "se", "s", "sw", "w", "nw")]
    ks = [get_kernel(n).weights for n in names]
    assert ks[0].tolist() == [[5, 5, 5], [-3, 0, -3], [-3, -3, -3]]
    for a, b in zip(ks[0::2], ks[2::2] + ks[:1], strict=False):
        assert (np.rot90(a, -1) == b).all()  # N -> E -> S -> W: 90 degrees clockwise
    assert all(k.sum() == 0 for k in ks)


def test_line_detectors_respond_to_their_line():
    img = np.zeros((7, 7))
    img[3, :] = 1.0
    rh = correlate2d(img, get_kernel("line_horizontal").weights)[2, 2]
    rv = correlate2d(img, get_kernel("line_vertical").weights)[2, 2]
    assert rh == 6 and rv == 0
    diag = np.fliplr(np.eye(7))  # rising line: lower-left to upper-right
    assert correlate2d(diag, get_kernel("line_diag_45").weights)[2, 2] == 6
    assert correlate2d(np.eye(7), get_kernel("line_diag_135").weights)[2, 2] == 6


def test_sizes_and_integer_exactness():
    assert get_kernel("sobel_x", size=5).weights[2].tolist() == [-6, -12, 0, 12, 6]
    assert get_kernel("prewitt_x", size=5).weights[0].tolist() == [-2, -1, 0, 1, 2]
    assert get_kernel("sobel_x").weights.dtype == np.int64
    assert get_kernel("box", size=4).shape == (4, 4)
    assert get_kernel("sharpen").weights.sum() == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown kernel 'nope'"),
        ("sobl_x", "did you mean sobel_x"),
        ("sobel_x:size=4", "odd integer"),
        ("sobel_x:size=1", "odd integer"),
        ("gaussian:sigma=-1", "positive"),
        ("gaussian:sigma=abc", "not a number"),
        ("gabor:frequency=0.9", "Nyquist"),
        ("gabor:colour=1", "no parameter 'colour'"),
        ("gabor:angle", "key=value"),
        ("dog:sigma1=2,sigma2=1", "larger than sigma1"),
        ("scharr_x:size=5", "no parameter 'size'"),
        # issue 12: every parameter is bounded; the message names the limit
        ("sobel_x:size=101", r"odd integer in \[3, 99\], got 101"),
        ("sobel_x:size=41.0", "size must be an integer, got 41.0"),
        ("box:size=100", r"in \[1, 99\]"),
        (
            "gaussian:sigma=1e-300",
            r"sigma must be a positive number in \[0.001, 1e\+06\], got 1e-300",
        ),
        ("gaussian:sigma=1e300", r"\[0.001, 1e\+06\]"),
        ("gaussian:sigma=0", r"\[0.001, 1e\+06\]"),
        ("gaussian_dx:sigma=1e-4", "sigma must be"),
        ("log:sigma=2e6", "sigma must be"),
        ("dog:sigma1=1e-9,sigma2=1", "sigma1 must be"),
        ("dog:sigma1=1,sigma2=1e7", "sigma2 must be"),
        ("gabor:sigma=1e-300", "gabor: sigma must be"),
        ("gabor:gamma=1e-9", r"gamma must be a positive number in \[0.001, 1000\]"),
        ("gabor:gamma=1e9", "gamma must be"),
        ("gabor:frequency=0", "positive"),
        ("gaussian:sigma=inf", "not a finite number"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ConvlensError, match=message):
        parse_kernel_spec(spec)


def test_spec_parsing_and_parameters():
    k = parse_kernel_spec("gabor:angle=45, frequency=0.125, size=11")
    assert k.shape == (11, 11) and k.params["angle"] == 45.0
    assert kernel_parameters("gaussian") == {"sigma": 1.0, "size": 5}


# ---------------------------------------------------------------- issue 12: parameter limits

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from convlens.kernels import base as kbase  # noqa: E402
from convlens.kernels.edges import binomial  # noqa: E402


def sobel_oracle(axis, size):
    """Python-int construction: binomial smoothing across x smoothed central difference along."""
    smooth = [math.comb(size - 1, k) for k in range(size)]
    row = [math.comb(size - 3, k) for k in range(size - 2)]
    # correlation kernel of the smoothed difference: d[i] = row[i - 2] - row[i]
    deriv = [
        (row[i - 2] if 0 <= i - 2 < len(row) else 0) - (row[i] if i < len(row) else 0)
        for i in range(size)
    ]
    if axis == "x":
        return [[a * b for b in deriv] for a in smooth]
    return [[b * a for a in smooth] for b in deriv]


@pytest.mark.parametrize("size", [3, 5, 33, 35, 37, 39, 41, 63, 99])
@pytest.mark.parametrize("axis", ["x", "y"])
def test_sobel_exact_at_every_size(axis, size):
    # issue 12: sobel_x:size=41 wrapped 386 of 1681 weights around (int64) and said "divide by 0"
    k = get_kernel(f"sobel_{axis}", size=size)
    assert k.weights.tolist() == sobel_oracle(axis, size)
    assert k.weights.dtype == (np.int64 if size <= 37 else object)
    assert all(type(v) is int for v in k.weights.ravel().tolist())
    r = size // 2
    ramp = [[j - r for j in range(size)] for _ in range(size)]
    if axis == "y":
        ramp = [list(c) for c in zip(*ramp, strict=True)]
    scale = sum(
        a * b
        for wr, rr in zip(k.weights.tolist(), ramp, strict=True)
        for a, b in zip(wr, rr, strict=True)
    )
    assert scale > 0 and f"a unit ramp gives {scale};" in k.normalisation
    assert "divide by 0 " not in k.normalisation


def test_binomial_exact_beyond_int64():
    assert binomial(4).tolist() == [1, 4, 6, 4, 1] and binomial(4).dtype == np.int64
    row = binomial(80)
    assert row.tolist() == [math.comb(80, k) for k in range(81)]
    assert sum(row.tolist()) == 2**80


def test_large_sobel_filters_an_image_exactly():
    k = get_kernel("sobel_x", size=41).weights
    img = np.arange(45 * 45, dtype=np.int64).reshape(45, 45) % 7
    out = correlate2d(img, k)
    assert out.dtype == object
    want = [
        [
            sum(int(img[i + a, j + b]) * int(k[a, b]) for a in range(41) for b in range(41))
            for j in range(5)
        ]
        for i in range(5)
    ]
    assert out.tolist() == want


ODD = st.integers(1, 49).map(lambda v: 2 * v + 1)  # 3..99
SIGMA = st.one_of(
    st.sampled_from([kbase.SIGMA_MIN, kbase.SIGMA_MAX, 0.5, 1.0]),
    st.floats(kbase.SIGMA_MIN, kbase.SIGMA_MAX),
    st.floats(-3, 6).map(lambda e: 10.0**e),
)
GAMMA = st.floats(kbase.GAMMA_MIN, kbase.GAMMA_MAX)
FINITE = st.floats(-1e6, 1e6, allow_nan=False)


@st.composite
def kernel_params(draw):
    name = draw(st.sampled_from(list_kernels()))
    allowed = kernel_parameters(name)
    p = {}
    if "size" in allowed:
        lo = (
            3
            if name
            in {
                "sobel_x",
                "sobel_y",
                "prewitt_x",
                "prewitt_y",
                "gaussian_dx",
                "gaussian_dy",
                "log",
                "dog",
            }
            else 1
        )
        p["size"] = (
            draw(st.integers(1, 99)) if name == "box" else draw(ODD.filter(lambda v: v >= lo))
        )
    if name == "dog":
        s1 = draw(st.floats(kbase.SIGMA_MIN, kbase.SIGMA_MAX / 2))
        p["sigma1"], p["sigma2"] = s1, draw(st.floats(s1 * 1.0001, kbase.SIGMA_MAX))
    elif "sigma" in allowed:
        s = draw(SIGMA)
        p["sigma"] = min(max(s, kbase.SIGMA_MIN), kbase.SIGMA_MAX)
    if name == "gabor":
        p["gamma"] = draw(GAMMA)
        p["frequency"] = draw(st.floats(1e-6, 0.5))
        p["angle"], p["phase"] = draw(FINITE), draw(FINITE)
    return name, p


@settings(max_examples=300, deadline=None)
@given(kernel_params())
def test_every_kernel_finite_and_unwrapped_at_any_allowed_parameter(case):
    name, params = case
    try:
        k = get_kernel(name, **params)
    except ConvlensError as exc:  # e.g. a derivative of a delta-thin Gaussian: refused, not zeros
        message = str(exc)
        k = None
    if k is None:
        assert "is all zero" in message
        return
    w = k.weights
    assert np.abs(w.astype(np.float64)).max() > kbase.ZERO_KERNEL_ATOL
    if w.dtype.kind in "iuO":
        assert all(type(v) is int for v in w.ravel().tolist())
        if name.startswith("sobel"):
            axis = name[-1]
            assert w.tolist() == sobel_oracle(axis, params.get("size", 3))
    else:
        assert np.isfinite(w).all()
    assert np.isfinite(w.astype(np.float64)).all()


@pytest.mark.parametrize("sigma", [kbase.SIGMA_MIN, kbase.SIGMA_MAX])
@pytest.mark.parametrize("name", ["gaussian", "gaussian_dx", "gaussian_dy", "log"])
def test_sigma_limits_are_finite_at_the_largest_size(name, sigma):
    if name in ("gaussian_dx", "gaussian_dy") and sigma == kbase.SIGMA_MIN:
        with pytest.raises(ConvlensError, match="is all zero"):  # nothing left to differentiate
            get_kernel(name, sigma=sigma, size=99)
        return
    w = get_kernel(name, sigma=sigma, size=99).weights
    assert np.isfinite(w).all()
    if name == "gaussian":
        assert abs(w.sum() - 1.0) < 1e-12


@pytest.mark.parametrize("bad", [True, "1", None, [1.0]])
def test_parameters_must_be_numbers(bad):
    with pytest.raises(ConvlensError, match="must be a number"):
        get_kernel("gaussian", sigma=bad)
    with pytest.raises(ConvlensError, match="must be a number"):
        get_kernel("gabor", angle=bad)


def test_matching_bank_size_limit():
    from convlens.kernels import matching_bank

    assert matching_bank(np.int64(3)) == matching_bank(3)
    with pytest.raises(ConvlensError, match="<= 99"):
        matching_bank(101)
    with pytest.raises(ConvlensError, match="positive integer"):
        matching_bank(True)
    entries = matching_bank(41)
    assert all(np.isfinite(e.weights).all() for e in entries)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_cached_bank_is_read_only_and_a_write_changes_no_later_match(k):
    from convlens.analysis.measure.matching import dc_cosine_scores
    from convlens.kernels import matching_bank
    from convlens.kernels.bank import bank_matrix

    probe = np.random.default_rng(k).standard_normal((8, k * k))
    before = dc_cosine_scores(probe, bank_matrix(k)[0])
    entries = matching_bank(k)
    assert entries and not any(e.weights.flags.writeable for e in entries)
    with pytest.raises(ValueError, match="read-only"):
        entries[0].weights[0, 0] = 99.0
    with pytest.raises(ValueError, match="read-only"):
        entries[-1].weights *= 2
    with pytest.raises(TypeError):
        entries[0].params["size"] = 99  # type: ignore[index]
    fresh = matching_bank(k)
    assert all(np.array_equal(a.weights, b.weights) for a, b in zip(entries, fresh, strict=True))
    after = dc_cosine_scores(probe, bank_matrix(k)[0])
    for x, y in zip(before, after, strict=True):
        np.testing.assert_array_equal(x, y)


def test_cached_1d_bank_is_read_only():
    from convlens.kernels import matching_bank_1d

    entries = matching_bank_1d(16)
    assert not any(e.weights.flags.writeable for e in entries)
    with pytest.raises(ValueError, match="read-only"):
        entries[0].weights[0] = 99.0
    assert matching_bank_1d(16)[0].weights[0] != 99.0
