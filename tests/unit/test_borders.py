"""Padding is not picture (borders.py): flat black, white and grey borders are found, dark or
textured content at the edge is not; the render treats a border as outside the photo."""
import numpy as np
import pytest
from PIL import Image

from alignimation_tui.borders import find_picture
from alignimation_tui.photos import Decoded, open_photo
from alignimation_tui.render.animation import RenderItem, RenderSettings, plan_layout
from alignimation_tui.render.frame import compose_decoded
from tests.conftest import astronaut


def photo(tmp_path, pixels: np.ndarray, name="p.jpg", quality=90, max_side=None) -> Decoded:
    path = tmp_path / name
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=quality)
    return open_photo(path, max_side=max_side)


def framed(pad, colour, size=(480, 400)) -> np.ndarray:
    """The astronaut inside borders of ``pad`` = (left, top, right, bottom) pixels of ``colour``."""
    left, top, right, bottom = pad
    w, h = size
    out = np.empty((h, w, 3), np.uint8)
    out[...] = colour
    inner = np.asarray(Image.fromarray(astronaut()).resize((w - left - right, h - top - bottom)))
    out[top:h - bottom, left:w - right] = inner
    return out


@pytest.mark.parametrize("pad, colour", [
    ((0, 3, 0, 0), (0, 0, 0)),  # three rows of scan padding at the top (faces_serena)
    ((0, 40, 0, 40), (0, 0, 0)),  # letterbox bars
    ((18, 22, 18, 30), (255, 255, 255)),  # a scanned print's white margin
    ((25, 0, 25, 0), (128, 128, 128)),  # a digital grey fill (pillarbox)
])
def test_flat_borders_are_found_through_jpeg_noise(tmp_path, pad, colour):
    found = find_picture(photo(tmp_path, framed(pad, colour)))
    w, h = 480, 400
    want = (pad[0], pad[1], w - pad[2], h - pad[3])
    for got, expect, edge in zip(found.box, want, (0, 0, w, h)):
        if expect == edge:
            assert got == edge  # no border on that side: nothing trimmed
        else:  # trimmed to the border, and at most three pixels of picture (the JPEG ringing) with it
            assert abs(got - expect) <= 3 and (got >= expect if edge == 0 else got <= expect)


def test_found_on_a_reduced_decode_in_original_pixels(tmp_path):
    big = framed((0, 60, 0, 60), (0, 0, 0), size=(1600, 1200))
    found = find_picture(photo(tmp_path, big, max_side=400))  # decoded at a quarter
    assert found.box[0] == 0 and found.box[2] == 1600
    assert 60 <= found.box[1] <= 60 + 12 and 1200 - 60 - 12 <= found.box[3] <= 1140


def test_dark_content_at_the_edge_is_not_a_border(tmp_path):
    rng = np.random.default_rng(1)
    h, w = 400, 480
    suit = framed((0, 0, 0, 0), (0, 0, 0)).astype(np.float64)
    # a dark suit over the bottom third: dark grey cloth, its weave and folds (JPEG-smoothed texture)
    yy, xx = np.mgrid[0:h // 3, 0:w]
    cloth = 28 + 6 * np.sin(xx / 9.0) + 4 * np.sin((xx + 2 * yy) / 23.0) + rng.normal(0, 3, (h // 3, w))
    suit[h - h // 3:] = cloth[..., None] * [1.0, 1.0, 1.1]
    # a night sky over the top: near-black, sensor noise, a few stars
    sky = np.clip(rng.normal(10, 4, (h // 3, w, 1)) * [0.8, 0.9, 1.3], 0, 255)
    for x, y in rng.integers(0, [w, h // 3], (12, 2)):
        sky[y, x] = 200
    suit[:h // 3] = sky
    for quality in (75, 95):
        found = find_picture(photo(tmp_path, np.clip(suit, 0, 255), quality=quality))
        assert found.box == (0.0, 0.0, float(w), float(h)), quality


def test_a_dark_wall_or_a_coloured_backdrop_is_not_a_border(tmp_path):
    rng = np.random.default_rng(2)
    grey_wall = framed((0, 0, 0, 0), (0, 0, 0)).astype(np.float64)
    grey_wall[:120] = np.clip(rng.normal(60, 2.0, (120, 480, 1)), 0, 255)  # a plain wall, photographed
    blue = framed((0, 60, 0, 0), (40, 60, 160))  # a flat blue backdrop: colour, not padding
    for pixels in (grey_wall, blue):
        assert find_picture(photo(tmp_path, pixels)).box == (0.0, 0.0, 480.0, 400.0)


def test_a_photo_that_is_all_flat_is_left_whole(tmp_path):
    assert find_picture(photo(tmp_path, np.zeros((200, 300, 3)))).box == (0.0, 0.0, 300.0, 200.0)


def test_the_blurred_fill_replaces_the_border_and_coverage_leaves_it_out(tmp_path):
    pixels = framed((0, 40, 0, 0), (0, 0, 0))
    decoded = photo(tmp_path, pixels, quality=95)
    box = find_picture(decoded).box
    # enlarged 2x about the face: the photo's top edge (its padding) lands inside the frame
    matrix = np.array([[2.0, 0, -240], [0, 2.0, 20], [0, 0, 1]])
    size = (480, 400)
    before = np.asarray(compose_decoded(decoded, matrix, size, "blur"), np.int16)
    after = np.asarray(compose_decoded(decoded, matrix, size, "blur", box), np.int16)
    band = slice(26, 94)  # output rows of the padding: 2 * (0..40) + 20, less the blended edges
    assert before[band].max(axis=(1, 2)).max() <= 24  # a black band without the picture box
    assert (after[band].max(axis=(1, 2)) > 40).all()  # the blurred fill instead
    assert np.abs(after[150:] - before[150:]).max() <= 2  # the picture itself is as it was
    plain = RenderItem(tmp_path / "p.jpg", "p.jpg", matrix, size=(480, 400))
    boxed = RenderItem(tmp_path / "p.jpg", "p.jpg", matrix, size=(480, 400), picture=box)
    layout = plan_layout([plain, boxed], size, RenderSettings(crop="shared"))
    assert layout.crop is not None and layout.crop[1] >= 2 * box[1] + 20 - 1  # cropped below the padding
