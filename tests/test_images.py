"""Image loading: samples offline, files, .npy, recorded conversion, bad files."""

import numpy as np
import pytest
from PIL import Image

from convlens.data.images import SAMPLE_IMAGES, load_image
from convlens.errors import ConvlensError


@pytest.mark.parametrize("name", SAMPLE_IMAGES)
def test_every_bundled_sample_loads_offline(name):
    img = load_image(f"sample:{name}")
    assert img.pixels.ndim == 2 and img.pixels.dtype == np.float64
    assert img.pixels.min() >= 0.0 and img.pixels.max() <= 1.0
    assert img.conversion


def test_rgb_png_converted_with_recorded_rule(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    Image.fromarray(rgb).save(tmp_path / "g.png")
    img = load_image(str(tmp_path / "g.png"))
    np.testing.assert_allclose(img.pixels, 0.7154)
    assert "uint8 / 255" in img.conversion and "rgb2gray" in img.conversion
    assert img.original_shape == (4, 5, 3)


def test_uint16_and_rgba_and_npy(tmp_path):
    Image.fromarray(np.full((3, 3), 65535, dtype=np.uint16)).save(tmp_path / "a.png")
    assert load_image(str(tmp_path / "a.png")).pixels.max() == pytest.approx(1.0)
    Image.fromarray(np.zeros((3, 3, 4), dtype=np.uint8)).save(tmp_path / "b.png")
    assert "alpha dropped" in load_image(str(tmp_path / "b.png")).conversion
    np.save(tmp_path / "c.npy", np.arange(6.0).reshape(2, 3) * 10)
    img = load_image(str(tmp_path / "c.npy"))
    assert img.pixels.max() == 50.0 and "as is" in img.conversion  # no silent rescaling


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not an image", "not an image file"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "cannot decode|not an image"),
    ],
)
def test_corrupt_files(tmp_path, content, message):
    p = tmp_path / "x.png"
    p.write_bytes(content)
    with pytest.raises(ConvlensError, match=message):
        load_image(str(p))


def test_pixel_cap_checked_before_decoding(tmp_path):
    Image.new("L", (300, 200)).save(tmp_path / "big.png")
    with pytest.raises(ConvlensError, match=r"300 = 60000 pixels, over the cap of 1000"):
        load_image(str(tmp_path / "big.png"), max_pixels=1000)


def test_bad_npy_and_folder(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros(5))
    with pytest.raises(ConvlensError, match="2-D numeric"):
        load_image(str(tmp_path / "v.npy"))
    with pytest.raises(ConvlensError, match="not a file"):
        load_image(str(tmp_path))
