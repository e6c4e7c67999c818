"""Shared fixtures. Every test gets its own cache, data, config and TORCH_HOME folders, so nothing
touches the real home directory and no test can reach for downloaded weights."""
from __future__ import annotations

import inspect

import math
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def samples_dir() -> Path:
    return Path(os.environ.get("ALIGNIMATION_SAMPLES", REPO.parent / "shared" / "samples"))


@pytest.fixture
def samples() -> Path:
    path = samples_dir()
    if not (path / "faces_serena").is_dir():
        pytest.skip(f"sample photos not found at {path} (set ALIGNIMATION_SAMPLES)")
    return path


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    for var, sub in (("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config"),
                     ("TORCH_HOME", "torch")):
        monkeypatch.setenv(var, str(home / sub))
    return home


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def similarity(angle_deg: float, scale: float, tx: float, ty: float, centre=(256.0, 256.0)) -> np.ndarray:
    """3x3 matrix: rotate/scale about ``centre`` of the astronaut, then shift."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    cx, cy = centre
    return np.array([[c, -s, cx - c * cx + s * cy + tx], [s, c, cy - s * cx - c * cy + ty], [0, 0, 1.0]])


def warped_astronaut(matrix: np.ndarray, size=(640, 480), background=(90, 110, 130)) -> Image.Image:
    """The astronaut photo placed on a plain background through ``matrix`` (astronaut -> photo)."""
    src = Image.fromarray(astronaut())
    inv = np.linalg.inv(matrix)
    return src.transform(size, Image.Transform.AFFINE, data=tuple(inv[:2].ravel()),
                         resample=Image.Resampling.BICUBIC, fillcolor=background)


def save_with_date(img: Image.Image, path: Path, when: datetime | None = None, orientation: int | None = None) -> Path:
    exif = Image.Exif()
    if when is not None:
        exif.get_ifd(0x8769)[36867] = when.strftime("%Y:%m:%d %H:%M:%S")
    if orientation is not None:
        exif[0x0112] = orientation
    img.save(path, quality=95, exif=exif.tobytes())
    return path


@pytest.fixture
def count_detections(monkeypatch):
    """Counts the photos each MTCNN pass gets (every pass goes through detect_chunk), to show
    cached work is not redone. A photo whose detection face mode takes from auto mode's look
    (``Pipeline.looked_faces``) counts as detected then, in a pass of one."""
    from alignimation_tui.detect.face import FaceDetector
    from alignimation_tui.pipeline import Pipeline

    calls = []
    original = FaceDetector.detect_chunk
    original_looked = Pipeline.looked_faces

    def counting(self, photos):
        # ``mode = "auto"``'s one look at a new folder (``Pipeline._find_faces``) is not detection
        if not any(frame.function == "_find_faces" for frame in inspect.stack(context=0)):
            calls.append(len(photos))
        return original(self, photos)

    def counting_looked(self, path, photo):
        found = original_looked(self, path, photo)
        if found is not None:
            calls.append(1)
        return found

    monkeypatch.setattr(FaceDetector, "detect_chunk", counting)
    monkeypatch.setattr(Pipeline, "looked_faces", counting_looked)
    return calls
