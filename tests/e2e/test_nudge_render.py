"""A stored nudge is honoured by `--once`, `--render-only`, the sidecar and `--frames`: the
nudged frame moves by the expected number of pixels, the others do not. Real MTCNN, real files."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignimation_tui.config import Config
from alignimation_tui.headless import run_once
from alignimation_tui.nudge import Nudge, nudged
from alignimation_tui.pipeline import Pipeline
from alignimation_tui.render import read_sidecar
from alignimation_tui.store import Store
from tests.conftest import save_with_date, similarity, warped_astronaut

WARPS = [(0, 1.0, 0, 0), (10, 0.9, 25, -15), (-8, 1.1, -20, 10)]


def phase_shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(dx, dy) that moves picture ``a`` onto ``b`` (phase correlation, whole pixels)."""
    fa, fb = np.fft.fft2(a), np.fft.fft2(b)
    cross = fb * np.conj(fa)
    corr = np.abs(np.fft.ifft2(cross / (np.abs(cross) + 1e-9)))
    dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
    h, w = corr.shape
    return np.array([dx - w if dx > w // 2 else dx, dy - h if dy > h // 2 else dy], float)


def grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), np.float64)


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    for i, (angle, scale, tx, ty) in enumerate(WARPS):
        save_with_date(warped_astronaut(similarity(angle, scale, tx + 64, ty + 60)), root / f"w{i}.jpg",
                       datetime(2024, 1, 1) + timedelta(weeks=i))
    return root


def test_nudge_moves_the_rendered_frame_in_once_render_only_sidecar_and_frames(photos, tmp_path):
    config = Config()
    out = tmp_path / "out" / "t.mp4"
    assert run_once(photos, config, out, frames_dir=tmp_path / "plain") == 0
    plain = read_sidecar(tmp_path / "plain" / "sidecar.json")

    p = Pipeline(photos, config)
    p.restore()
    target = next(r for r in p.results.values() if r.frame.path.name == "w1.jpg")
    eyes = np.asarray(target.subject.face.landmarks[:2])
    p.close()
    nudge = Nudge(dx=0.1, dy=-0.05)
    store = Store(photos)
    store.decisions.set_nudge(target.frame.hash, nudge)
    store.close()

    assert run_once(photos, config, out, frames_dir=tmp_path / "render-only", render_only=True) == 0
    assert run_once(photos, config, out, frames_dir=tmp_path / "once") == 0
    for name in ("render-only", "once"):
        side = read_sidecar(tmp_path / name / "sidecar.json")
        frame = next(f for f in side["frames"] if f["hash"] == target.frame.hash)
        before = next(f for f in plain["frames"] if f["hash"] == target.frame.hash)["transform"]
        assert frame["nudge"] == nudge.to_json()
        assert frame["transform"] == pytest.approx(nudged(before, nudge, eyes), abs=1e-6)
        # the picture: moved by (0.1, -0.05) aligned eye distances
        pts = (np.c_[eyes, np.ones(2)] @ before.T)[:, :2]
        iod = float(np.linalg.norm(pts[1] - pts[0]))
        files = sorted((tmp_path / name).glob("*.jpg"))
        plain_files = sorted((tmp_path / "plain").glob("*.jpg"))
        shift = phase_shift(grey(plain_files[1]), grey(files[1]))
        assert shift == pytest.approx([0.1 * iod, -0.05 * iod], abs=1.5), (shift, iod)
        for k in (0, 2):  # the other frames do not move
            assert np.abs(grey(plain_files[k]) - grey(files[k])).mean() < 2.0
