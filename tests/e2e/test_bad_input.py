"""A folder of every kind of bad input: each photo ends with a status and a reason a person
understands, every good photo is still aligned, the exit code stays meaningful, and the app shows
them all and keeps running."""
from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignimation_tui.cli import main
from alignimation_tui.config import Config
from alignimation_tui.domain import FrameStatus
from alignimation_tui.pipeline import Pipeline
from alignimation_tui.tui.app import AlignimationApp
from tests.conftest import save_with_date, similarity, warped_astronaut
from tests.tui.test_app import settled, until

START = datetime(2024, 5, 1, 8, 0, 0)
# EXIF orientation -> the transpose that makes a stored (sideways) photo look upright once applied
STORED = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
          7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


def bomb_png(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header claims width x height: opening must refuse it without decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """name -> the expected status ('aligned' for every good photo)."""
    root = tmp_path_factory.mktemp("bad") / "photos"
    root.mkdir()
    outside = root.parent / "elsewhere.jpg"
    face = warped_astronaut(similarity(0, 1.0, 64, 60))
    save_with_date(face, outside, START)
    expect: dict[str, str] = {}
    day = iter(range(100))

    def good(img: Image.Image, name: str, **kw) -> None:
        path = root / name
        if name.endswith(".png"):
            img.save(path)
            os.utime(path, (0, (START + timedelta(days=next(day))).timestamp()))
        else:
            save_with_date(img, path, START + timedelta(days=next(day)), **kw)
        expect[name] = "aligned"

    for o, transpose in STORED.items():
        stored = face if transpose is None else face.transpose(transpose)
        good(stored, f"orientation {o}.jpg", orientation=o)
    rgba = face.convert("RGBA")
    rgba.putalpha(Image.new("L", face.size, 255).point(lambda v: v))
    alpha = np.array(rgba)
    alpha[:40, :, 3] = 0  # a transparent band at the top
    good(Image.fromarray(alpha), "alpha.png")
    good(Image.fromarray((np.asarray(face.convert("L"), np.uint16) * 257)), "sixteen-bit.png")
    good(face.convert("L"), "grey.jpg")
    good(face.convert("CMYK"), "cmyk.jpg")
    good(face, "café über straße 照片.jpg")
    good(face.rotate(3), "   lots   of   spaces   .jpg")

    (root / "zero.jpg").write_bytes(b"")
    expect["zero.jpg"] = "failed"
    whole = (root / "grey.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    expect["truncated.jpg"] = "failed"
    (root / "notes.jpg").write_text("shopping list: milk, eggs\n")
    expect["notes.jpg"] = "failed"
    bomb_png(root / "bomb.png", 40000, 40000)
    expect["bomb.png"] = "failed"
    os.symlink(root / "loop-b.jpg", root / "loop-a.jpg")
    os.symlink(root / "loop-a.jpg", root / "loop-b.jpg")
    expect["loop-a.jpg"] = expect["loop-b.jpg"] = "failed"
    os.symlink(outside, root / "outside.jpg")
    expect["outside.jpg"] = "failed"
    os.symlink(root / "grey.jpg", root / "inside-link.jpg")
    expect["inside-link.jpg"] = "failed"  # the same bytes as grey.jpg: used once, see below
    return root, expect


REASONS = {
    "zero.jpg": "empty (0 bytes)",
    "truncated.jpg": "truncated or damaged",
    "notes.jpg": "not an image",
    "bomb.png": "too large: 40000x40000 is 1600 MP",
    "loop-a.jpg": "loops back on itself",
    "outside.jpg": "outside the folder",
}


def test_once_reports_every_bad_photo_and_aligns_every_good_one(bad_folder, tmp_path, capsys):
    root, expect = bad_folder
    code = main([str(root), "--once", "--json", "--out", str(tmp_path / "out.gif")])
    captured = capsys.readouterr()
    by_name = {Path(d["path"]).name: d for d in map(json.loads, captured.out.splitlines())}
    assert code == 0
    assert "inside-link.jpg" not in by_name and "same photo as grey.jpg" in captured.err  # a link inside: fine, once
    for name, status in expect.items():
        if name == "inside-link.jpg":
            continue
        assert by_name[name]["status"] == status, (name, by_name[name])
        if status == "failed":
            assert by_name[name]["error"], name
    for name, words in REASONS.items():
        assert words in by_name[name]["error"], (name, by_name[name]["error"])
    # every orientation came out upright: the same picture, so the same transform, whatever the EXIF said
    matrices = np.array([by_name[f"orientation {o}.jpg"]["transform"] for o in STORED])
    # (a wrong orientation turns the linear part by 90 degrees or mirrors it: differences ~ its scale;
    # re-encoding each stored JPEG moves MTCNN's landmarks a little: a few %)
    scale = np.abs(matrices[0, :2, :2]).max()
    assert np.abs(matrices[:, :2, :2] - matrices[0, :2, :2]).max() < 0.1 * scale
    assert np.abs(matrices[:, :2, 2] - matrices[0, :2, 2]).max() < 0.05 * 1080  # canvas pixels
    assert (tmp_path / "out.gif").exists()


def test_file_deleted_between_scan_and_decode(bad_folder, tmp_path):
    root, _ = bad_folder
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("grey.jpg", "cmyk.jpg"):
        (folder / name).write_bytes((root / name).read_bytes())
    pipeline = Pipeline(folder, Config())
    try:
        pipeline.scan()
        (folder / "cmyk.jpg").unlink()
        pipeline.detect()
        status = {r.frame.path.name: (r.status, r.error) for r in pipeline.results.values()}
        assert status["cmyk.jpg"] == (FrameStatus.FAILED, "the file disappeared before it could be read")
        assert status["grey.jpg"][0] is FrameStatus.QUEUED
    finally:
        pipeline.close()


def test_following_links_outside_when_the_config_allows(bad_folder, tmp_path):
    root, _ = bad_folder
    config = replace(Config(), scan=replace(Config().scan, follow_symlinks=True))
    pipeline = Pipeline(root, config)
    try:
        pipeline.scan()
        outside = next(r for r in pipeline.results.values() if r.frame.path.name == "outside.jpg")
        assert outside.status is FrameStatus.QUEUED and pipeline.needs_detection(outside)
    finally:
        pipeline.close()


async def test_app_shows_bad_photos_and_keeps_running(bad_folder, tmp_path):
    root, expect = bad_folder
    app = AlignimationApp(root, Config(), watch=False)
    async with app.run_test(size=(160, 50)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == len(expect) - 1, "every photo processed")
        rows = {r.name: r for r in app.rows.values()}
        for name, words in REASONS.items():
            assert rows[name].status == "failed" and words in rows[name].flag, rows[name]
        assert sum(r.status == "aligned" for r in rows.values()) == sum(s == "aligned" for s in expect.values())
        await pilot.press("f", "f", "f")  # the failed filter
        assert app.filter == "failed" and app.table.row_count == sum(s == "failed" for s in expect.values()) - 1
        await pilot.press("down", "x")  # keys still work on a failed row
        h = app._selected_hash()
        assert app.rows[h].status == "failed"
        await until(pilot, lambda: app.rows[h].verdict == "rejected", "the verdict on a failed row")
        assert app.is_running
        await pilot.press("q")
