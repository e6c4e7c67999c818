"""HEIC/HEIF photos (what iPhones save by default), encoded here by the test with pillow-heif, and
photo-like files that no installed decoder reads (named, never skipped silently)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from alignimation_tui.config import Config
from alignimation_tui.domain import FrameStatus
from alignimation_tui.photos import open_photo, upright_size
from alignimation_tui.pipeline import Pipeline
from alignimation_tui.scan import list_photos, read_frame, unreadable_format

W, H = 400, 240  # upright size of the test picture


def corners() -> Image.Image:
    """Red top-left, blue bottom-right, grey elsewhere: which way up it is shows at a glance."""
    a = np.full((H, W, 3), 128, np.uint8)
    a[:60, :80] = (230, 20, 20)
    a[-60:, -80:] = (20, 20, 230)
    return Image.fromarray(a)


def save_heic(img: Image.Image, path, when: datetime | None = None, orientation: int | None = None):
    exif = Image.Exif()
    if when is not None:
        exif.get_ifd(0x8769)[36867] = when.strftime("%Y:%m:%d %H:%M:%S")
    if orientation is not None:
        exif[0x0112] = orientation
    pillow_heif.from_pillow(img).save(path, quality=90, exif=exif.tobytes())
    return path


def test_heic_photo_is_listed_and_dated_from_its_exif(tmp_path):
    path = save_heic(corners(), tmp_path / "IMG_0001.HEIC", datetime(2023, 5, 6, 7, 8, 9))
    assert list_photos(tmp_path) == [path]
    frame, _ = read_frame(path)
    assert frame.date_source == "exif" and frame.taken_at == datetime(2023, 5, 6, 7, 8, 9)
    assert unreadable_format(path) is None


def test_heic_stored_rotated_comes_out_upright(tmp_path):
    # A phone held upright stores the sensor's landscape picture and a rotation. HEIF keeps the
    # rotation in its own 'irot' box (not in EXIF), and the decoder must apply it.
    stored = corners().transpose(Image.Transpose.ROTATE_90)  # what the sensor saw: turned 90° left
    path = save_heic(stored, tmp_path / "turned.heic", orientation=6)  # 6: turn 90° right to show
    assert b"irot" in path.read_bytes(), "the rotation is in the HEIF container's own box"
    assert upright_size(path) == (W, H)
    photo = open_photo(path)
    assert photo.image.size == (W, H) and (photo.width, photo.height) == (W, H)
    px = np.asarray(photo.image, np.int16)
    # Lossy HEVC: colours within a generous tolerance, positions exact to the block.
    assert np.abs(px[20, 20] - (230, 20, 20)).max() < 40, px[20, 20]  # red stays top-left
    assert np.abs(px[-20, -20] - (20, 20, 230)).max() < 40, px[-20, -20]  # blue bottom-right
    assert np.abs(px[20, -20] - 128).max() < 30  # grey where red would be if it were turned
    small = open_photo(path, max_side=200)
    assert small.image.size == (200, 120) and (small.width, small.height) == (W, H)


@pytest.mark.parametrize("name", ["IMG_0002.CR2", "scan.dng", "picture.jxl"])
def test_photo_like_files_no_decoder_reads_are_named_not_skipped(tmp_path, name):
    corners().save(tmp_path / "good.jpg")
    (tmp_path / name).write_bytes(b"\x00" * 64)
    (tmp_path / "notes.txt").write_text("not a photo at all")
    pipeline = Pipeline(tmp_path, replace(Config(), device="cpu"))
    try:
        results = {r.frame.path.name: r for r in pipeline.scan()}
    finally:
        pipeline.close()
    assert set(results) == {"good.jpg", name}
    odd = results[name]
    assert odd.status is FrameStatus.FAILED
    assert name.rsplit(".", 1)[1].lower() in odd.error and "JPEG" in odd.error, odd.error


def test_without_a_heic_decoder_heic_files_are_named(tmp_path, monkeypatch):
    import alignimation_tui.scan as scan

    monkeypatch.setattr(scan, "register_heic", lambda: False)  # as if pillow-heif were missing
    path = tmp_path / "IMG_0003.heic"
    path.write_bytes(b"\x00" * 64)
    assert list_photos(tmp_path) == [path]
    assert "pillow-heif" in unreadable_format(path)
