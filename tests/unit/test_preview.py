"""The preview's pictures, checked with explicit tolerances.

The preview warps and resizes photos in floating point; the last bit of a colour can differ
between CPUs (vector units, libraries), so these checks compare against an independently made
expectation with a tolerance instead of exact colours (the TUI snapshot shows an integer pattern
instead; see tests/tui/test_app.py)."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignimation_tui.domain import Frame, FrameResult, Transform
from alignimation_tui.preview import aligned_preview, fit, onion_skin
from alignimation_tui.tui.widgets.halfblock import halfblock_lines
from tests.conftest import astronaut, similarity, warped_astronaut

WARP = similarity(8, 0.7, 60, -10)  # astronaut -> photo; the astronaut stays inside the photo


def result_for(path: Path, matrix: np.ndarray, canvas: tuple[int, int]) -> FrameResult:
    frame = Frame(path=path, hash="h", taken_at=datetime(2024, 1, 1), date_source="mtime",
                  file_size=path.stat().st_size)
    return FrameResult(frame=frame, transform=Transform(tuple(map(tuple, matrix)), canvas, 0.0))


def test_aligned_preview_undoes_the_warp(tmp_path):
    path = tmp_path / "photo.png"  # lossless: the only differences left are resampling ones
    warped_astronaut(WARP).save(path)
    r = result_for(path, np.linalg.inv(WARP), (512, 512))  # photo -> the astronaut's own frame
    got = np.asarray(aligned_preview(r, (128, 128), 10**8), np.float64)
    expected = np.asarray(Image.fromarray(astronaut()).resize((128, 128), Image.Resampling.BOX), np.float64)
    assert got.shape == expected.shape == (128, 128, 3)
    diff = np.abs(got - expected)[4:-4, 4:-4]  # the outermost pixels mix in the black fill
    # Two different resampling chains (bicubic warp + shrink vs a box filter) of the same picture:
    # the typical pixel agrees within a few levels; edges in the picture differ more.
    assert np.median(diff) <= 4, np.median(diff)
    assert diff.mean() <= 8, diff.mean()
    # And it is the astronaut, not just similar colours: a one-pixel shift agrees far worse.
    shifted = np.abs(got[4:-4, 5:-3] - expected[4:-4, 4:-4]).mean()
    assert shifted > 1.5 * diff.mean()


def test_onion_skin_is_the_mean_of_both(tmp_path):
    a = Image.new("RGB", (20, 10), (200, 100, 0))
    b = Image.new("RGB", (40, 20), (0, 100, 200))
    px = np.asarray(onion_skin(a, b), np.int16)
    assert px.shape == (10, 20, 3)
    assert np.abs(px - np.array([100, 100, 100])).max() <= 1  # rounding of the blend


def test_halfblock_cells_carry_the_picture_colours():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (8, 6, 3), dtype=np.uint8))
    lines = halfblock_lines(image, 6, 4)  # the picture fits exactly: no resampling at all
    assert len(lines) == 4
    px = np.asarray(image, np.int16)
    for row, strip in enumerate(lines):
        cells = [seg for seg in strip if seg.text]
        colours = [(seg.style.color.triplet, seg.style.bgcolor.triplet) for seg in cells for _ in seg.text]
        assert len(colours) == 6
        for x, (top, bottom) in enumerate(colours):
            assert np.abs(np.array(top) - px[2 * row, x]).max() <= 2
            assert np.abs(np.array(bottom) - px[2 * row + 1, x]).max() <= 2


def test_fit_keeps_the_aspect():
    assert fit((1080, 720), (120, 60)) == ((90, 60), 60 / 720)


def test_the_landmarks_view_zooms_to_the_subject_with_a_margin():
    from alignimation_tui.preview import subject_region

    photo, face = (4000, 3000), (1900.0, 1400.0, 2000.0, 1520.0)  # a face 100 px wide in a 4000 px photo
    x0, y0, x1, y1 = subject_region(face, photo, (60, 80))
    assert x0 < face[0] and y0 < face[1] and x1 > face[2] and y1 > face[3], "the whole box, with a margin"
    assert (x1 - x0) / (y1 - y0) == pytest.approx(60 / 80), "the pane's shape"
    assert x1 - x0 < 400, "zoomed: a few box widths, not the photo"
    # at the photo's edge the region stays inside it
    x0, y0, x1, y1 = subject_region((0.0, 0.0, 100.0, 120.0), photo, (60, 80))
    assert x0 == 0 and y0 == 0 and x1 <= photo[0] and y1 <= photo[1]
    assert subject_region((0, 0, 3900, 2900), photo, (60, 80))[2] <= photo[0]
