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


# open_stored: the render's decode, as stored, into an array (simplejpeg for plain JPEGs).

@pytest.mark.parametrize("orientation", [1, 6])
@pytest.mark.parametrize("max_side", [1600, 800, 400, 200])
def test_stored_decode_matches_pillows(tmp_path, orientation, max_side):
    """The same pixels and the same DCT scale as Pillow's decode as stored, the orientation kept aside."""
    from alignimation_tui.photos import open_stored

    rng = np.random.default_rng(max_side)
    noisy = Image.fromarray(rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)).resize((W, H))
    path = save_with_date(STORED[orientation](noisy), tmp_path / "p.jpg", orientation=orientation)
    stored = open_stored(path, max_side=max_side)
    pillow = open_photo(path, max_side=max_side, resize_within=2.0, upright=False)
    assert isinstance(stored.image, np.ndarray) and stored.image.dtype == np.uint8
    assert stored.stored_size == pillow.image.size and stored.orientation == pillow.orientation == orientation
    assert (stored.width, stored.height) == (W, H) and stored.scale_xy == pytest.approx(pillow.scale_xy)
    diff = np.abs(stored.image.astype(np.int16) - np.asarray(pillow.image, np.int16))
    assert diff.mean() < 0.5 and diff.max() <= 8  # libjpeg-turbo in both; builds may differ in rounding


def test_stored_decode_of_other_photos_goes_through_pillow(tmp_path):
    from alignimation_tui.photos import open_stored

    Image.new("L", (40, 20), 128).save(tmp_path / "grey.jpg")
    Image.new("CMYK", (40, 20), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("RGBA", (40, 20), (255, 0, 0, 0)).save(tmp_path / "alpha.png")
    for name, rgb in (("grey.jpg", (128, 128, 128)), ("cmyk.jpg", (255, 0, 0)), ("alpha.png", (255, 255, 255))):
        photo = open_stored(tmp_path / name, max_side=100)
        assert photo.image.shape == (20, 40, 3), name
        assert np.abs(photo.image[10, 20].astype(int) - rgb).max() <= 3, name


def test_stored_decode_of_a_multi_picture_jpeg_is_its_first_picture(tmp_path, monkeypatch):
    """An MPO (a JPEG with more pictures after the first, as some cameras write) decodes through
    simplejpeg to the picture Pillow shows: the first."""
    from alignimation_tui import photos
    from alignimation_tui.photos import open_stored

    path = tmp_path / "mpo.jpg"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path, "MPO", save_all=True,
                                                    append_images=[Image.new("RGB", (64, 48), (30, 200, 30))])
    assert Image.open(path).format == "MPO"
    used = []
    original = photos._turbo_jpeg
    monkeypatch.setattr(photos, "_turbo_jpeg", lambda *a, **k: used.append(a) or original(*a, **k))
    photo = open_stored(path, max_side=64)
    assert used and np.abs(photo.image[10, 10].astype(int) - (200, 30, 30)).max() <= 3


def test_stored_decode_errors_are_pillows(tmp_path):
    """A truncated or damaged JPEG, or one above the pixel limit, says so as open_photo does."""
    from alignimation_tui.photos import open_stored

    path = tmp_path / "cut.jpg"
    upright().save(path, quality=90)
    whole = path.read_bytes()
    path.write_bytes(whole[:5000])
    with pytest.raises(PhotoError, match="truncated"):
        open_stored(path, max_side=400)
    path.write_bytes(whole)
    with pytest.raises(PhotoError, match="too large: 1600x1200"):
        open_stored(path, max_side=400, max_pixels=1_000_000)
    path.unlink()
    with pytest.raises(PhotoError, match="disappeared"):
        open_stored(path, max_side=400)


def test_stored_decode_into_the_threads_scratch_buffer(tmp_path):
    """``scratch=True`` decodes into one buffer per thread, reused by the thread's next such decode
    (the render composes each photo before it decodes the next): right pixels each time, and
    another thread's buffer is its own."""
    import threading

    from alignimation_tui.photos import open_stored

    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(a, quality=95)
    Image.new("RGB", (40, 30), (30, 30, 200)).save(b, quality=95)
    first = open_stored(a, max_side=64, scratch=True).image
    assert np.abs(first[10, 10].astype(int) - (200, 30, 30)).max() <= 3
    second = open_stored(b, max_side=64, scratch=True).image
    assert second.shape == (30, 40, 3) and np.abs(second[10, 10].astype(int) - (30, 30, 200)).max() <= 3
    assert np.shares_memory(first, second)  # the same buffer: the first picture is gone
    other = []
    thread = threading.Thread(target=lambda: other.append(open_stored(a, max_side=64, scratch=True).image))
    thread.start()
    thread.join()
    assert not np.shares_memory(other[0], second)
    assert not np.shares_memory(open_stored(a, max_side=64).image, second)  # without scratch: its own array


# open_photo of an RGB JPEG: simplejpeg's decode, turned upright by OpenCV, its array kept.

@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("max_side", [None, 800, 400])
def test_jpeg_decode_matches_pillows_and_keeps_its_array(tmp_path, orientation, max_side):
    """The same DCT scale, turn and pixels as Pillow's own decode (``draft`` and ``exif_transpose``),
    and ``array()`` is the kept array itself, read-only (every reader of the decode shares it)."""
    from PIL import ImageOps

    rng = np.random.default_rng(orientation)
    noisy = Image.fromarray(rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)).resize((W, H))
    path = save_with_date(STORED[orientation](noisy), tmp_path / "p.jpg", orientation=orientation)
    photo = open_photo(path, max_side=max_side)
    with Image.open(path) as img:
        if max_side is not None:
            img.draft("RGB", (img.width * max_side // W, img.height * max_side // W))
        pillow = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    assert photo.pixels is not None and photo.array() is photo.pixels and not photo.pixels.flags.writeable
    assert photo.image.size == (pillow.shape[1], pillow.shape[0]) and photo.orientation == 1
    assert np.array_equal(np.asarray(photo.image), photo.pixels)
    diff = np.abs(photo.pixels.astype(np.int16) - pillow)
    assert diff.mean() < 0.5 and diff.max() <= 8  # libjpeg-turbo in both; builds may differ in rounding
    kept = open_photo(path, max_side=max_side, upright=False)  # as stored, the orientation kept aside
    assert kept.orientation == orientation and np.array_equal(
        photo.pixels, photo.upright_array(kept.array(), orientation))


def test_jpeg_decode_resized_or_damaged_goes_as_before(tmp_path):
    """A decode resized to ``max_side`` is a Pillow image without a kept array; a damaged JPEG
    is Pillow's to decode, and its error is Pillow's."""
    path = upright().save(tmp_path / "p.jpg", quality=90) or tmp_path / "p.jpg"
    photo = open_photo(path, max_side=500)  # 1600 -> 800 by DCT, then resized to 500
    assert photo.image.size == (500, 375) and photo.pixels is None
    assert np.array_equal(photo.array(), np.asarray(photo.image))
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(PhotoError, match="truncated"):
        open_photo(path, max_side=400)


@pytest.mark.parametrize("shape", [(5, 7, 3), (6, 4), (5, 7, 4), (5, 7, 1), (1, 9, 3)])
def test_upright_array_turns_as_pillow_does(shape):
    """OpenCV's turns (8-bit pictures) give the pixels numpy's strided copy and Pillow give."""
    from alignimation_tui.photos import Decoded

    rng = np.random.default_rng(len(shape))
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    for orientation in range(0, 10):
        got = Decoded.upright_array(a, orientation)
        want = Decoded.upright_array(a.astype(np.int16), orientation)  # (numpy's own path)
        assert got.dtype == np.uint8 and got.flags.c_contiguous and np.array_equal(got, want), orientation
        if shape[-1] == 3:
            pillow = np.asarray(Decoded.upright_image(Image.fromarray(a), orientation))
            assert np.array_equal(got, pillow), orientation
