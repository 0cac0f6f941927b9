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
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ConvlensError, match=message):
        parse_kernel_spec(spec)


def test_spec_parsing_and_parameters():
    k = parse_kernel_spec("gabor:angle=45, frequency=0.125, size=11")
    assert k.shape == (11, 11) and k.params["angle"] == 45.0
    assert kernel_parameters("gaussian") == {"sigma": 1.0, "size": 5}
