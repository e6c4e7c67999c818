import numpy as np
import pytest
from PIL import Image

from alignimation_tui.photos import PhotoError, decode_ahead, open_photo, upright_size
from tests.conftest import save_with_date

# Upright test picture: red block at top-left, so any wrong rotation or mirror moves it.
W, H = 1600, 1200


def upright() -> Image.Image:
    img = Image.new("RGB", (W, H), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, W // 4, H // 4))
    return img


# What a camera stores for each EXIF orientation, given the upright picture.
STORED = {
    1: lambda im: im,
    2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
    4: lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    5: lambda im: im.transpose(Image.Transpose.TRANSPOSE),
    6: lambda im: im.transpose(Image.Transpose.ROTATE_90),
    7: lambda im: im.transpose(Image.Transpose.TRANSVERSE),
    8: lambda im: im.transpose(Image.Transpose.ROTATE_270),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_reduced_decode_is_upright_and_scaled(tmp_path, orientation):
    path = save_with_date(STORED[orientation](upright()), tmp_path / f"o{orientation}.jpg", orientation=orientation)
    assert upright_size(path) == (W, H)
    photo = open_photo(path, max_side=400)
    assert (photo.width, photo.height) == (W, H)
    assert photo.image.size == (400, 300)
    sx, sy = photo.scale_xy
    assert sx == pytest.approx(0.25) and sy == pytest.approx(0.25)
    px = np.asarray(photo.image)
    assert px[20, 20, 0] > 200 and px[20, 20, 2] < 60  # red stays top-left
    assert px[280, 380, 2] > 200  # blue bottom-right


def test_small_photos_are_not_enlarged(tmp_path):
    path = tmp_path / "s.png"
    Image.new("RGB", (150, 100)).save(path)
    assert open_photo(path, max_side=1024).image.size == (150, 100)


def test_modes_become_rgb(tmp_path):
    Image.new("RGBA", (10, 10), (255, 0, 0, 0)).save(tmp_path / "alpha.png")
    Image.fromarray(np.full((10, 10), 65535, np.uint16)).save(tmp_path / "deep.png")
    Image.new("L", (10, 10), 128).save(tmp_path / "grey.jpg")
    Image.new("CMYK", (10, 10), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    assert open_photo(tmp_path / "alpha.png").image.getpixel((0, 0)) == (255, 255, 255)
    assert open_photo(tmp_path / "deep.png").image.getpixel((0, 0)) == (255, 255, 255)
    for name in ("grey.jpg", "cmyk.jpg"):
        assert open_photo(tmp_path / name).image.mode == "RGB"


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (b"hello, this is text", "not an image"),
])
def test_unreadable_files_say_why(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(PhotoError, match=reason):
        open_photo(path)


def test_truncated_jpeg(tmp_path):
    path = tmp_path / "cut.jpg"
    upright().save(path, quality=90)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(PhotoError, match="truncated"):
        open_photo(path)


def test_pixel_limit_checked_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (2000, 1000)).save(path)
    with pytest.raises(PhotoError, match="too large: 2000x1000"):
        open_photo(path, max_pixels=1_000_000)


def test_decode_ahead_keeps_order_and_reports_errors(tmp_path):
    def decode(i):
        if i == 3:
            raise PhotoError("broken")
        return i * 10

    out = list(decode_ahead(list(range(8)), decode, workers=2, ahead=3))
    assert [(i, r) for i, r, _ in out] == [(i, None if i == 3 else i * 10) for i in range(8)]
    assert out[3][2] == "broken"
