"""Synthetic 12 MP phone photos of one face, for bench_once.py (and profiling).

Each photo: a varied background (gradient, blobs, texture noise) with ``skimage.data.astronaut()``
placed on it through a random similarity (rotation +-15 deg, face 280-560 px wide in the upright
4032x3024 picture, anywhere in the middle half), saved as a quality-90 JPEG with EXIF (a capture
date and an orientation: like a phone, a quarter of them are portraits stored sideways with
orientation 6 or 8, and a few landscapes upside down with orientation 3).
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

LONG, SHORT = 4032, 3024
_STORE = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
START = datetime(2019, 3, 1, 9, 30)


def _background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    small = (w // 16, h // 16)  # build at 1/16 and upsample: cheap, smooth, varied
    c0, c1 = rng.integers(20, 235, 3), rng.integers(20, 235, 3)
    t = np.linspace(0, 1, small[0])[None, :, None] * rng.uniform(0.3, 1) + \
        np.linspace(0, 1, small[1])[:, None, None] * rng.uniform(0, 0.7)
    base = (c0 + (c1 - c0) * np.clip(t, 0, 1)).astype(np.uint8)
    img = Image.fromarray(np.broadcast_to(base, (small[1], small[0], 3)).copy())
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(4, 12)):  # furniture, windows, plants
        x, y = rng.integers(0, small[0]), rng.integers(0, small[1])
        rw, rh = rng.integers(8, small[0] // 3), rng.integers(8, small[1] // 3)
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + rw, y + rh), fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(1.5)).resize(size, Image.Resampling.BILINEAR)
    noise = rng.normal(0, 6, (h // 4, w // 4, 1)).astype(np.float32)  # sensor-ish grain
    grain = Image.fromarray(np.clip(noise + 128, 0, 255).astype(np.uint8)[..., 0]).resize(size)
    arr = np.asarray(img, np.int16) + (np.asarray(grain, np.int16)[..., None] - 128)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_photo(i: int, seed: int = 0) -> tuple[Image.Image, int, np.ndarray]:
    """Photo ``i``: the upright picture, the EXIF orientation to store it with, and the 3x3
    similarity from astronaut pixels to upright photo pixels."""
    from skimage import data

    rng = np.random.default_rng([seed, i])
    orientation = int(rng.choice([1, 1, 1, 1, 1, 3, 6, 6, 8]))
    size = (SHORT, LONG) if orientation in (6, 8) else (LONG, SHORT)
    photo = _background(rng, size)
    face = Image.fromarray(data.astronaut())
    angle, scale = math.radians(rng.uniform(-15, 15)), rng.uniform(3.5, 7.0)
    cx, cy = rng.uniform(0.3, 0.7) * size[0], rng.uniform(0.3, 0.6) * size[1]
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    fx, fy = 226.0, 128.0  # between the astronaut's eyes and mouth
    m = np.array([[c, -s, cx - c * fx + s * fy], [s, c, cy - s * fx - c * fy], [0, 0, 1.0]])
    inv = np.linalg.inv(m)
    # Warp only the bounding box of the astronaut (fast), then paste with a soft mask.
    corners = np.array([[0, 0, 1], [512, 0, 1], [0, 512, 1], [512, 512, 1]], float) @ m.T
    x0, y0 = np.floor(corners[:, :2].min(0)).astype(int)
    x1, y1 = np.ceil(corners[:, :2].max(0)).astype(int)
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1.0]])
    local = inv @ shift
    box = (int(x1 - x0), int(y1 - y0))
    patch = face.transform(box, Image.Transform.AFFINE, data=tuple(local[:2].ravel()),
                           resample=Image.Resampling.BILINEAR)
    mask = Image.new("L", (512, 512), 0)
    ImageDraw.Draw(mask).ellipse((40, -20, 472, 560), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(12)).transform(
        box, Image.Transform.AFFINE, data=tuple(local[:2].ravel()), resample=Image.Resampling.BILINEAR)
    photo.paste(patch, (int(x0), int(y0)), mask)
    return photo, orientation, m


def write_photo(path: Path, i: int, seed: int = 0) -> np.ndarray:
    photo, orientation, m = make_photo(i, seed)
    stored = photo if _STORE[orientation] is None else photo.transpose(_STORE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F], exif[0x0110] = "Synthetic", "bench_once"
    exif.get_ifd(0x8769)[36867] = (START + timedelta(days=3 * i)).strftime("%Y:%m:%d %H:%M:%S")
    stored.save(path, quality=90, exif=exif.tobytes())
    return m


def build_folder(folder: Path, n: int, seed: int = 0, workers: int = 2) -> list[Path]:
    """``n`` photos in ``folder`` (kept between runs: only missing ones are written)."""
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"IMG_{i:05d}.jpg" for i in range(n)]
    todo = [(p, i) for i, p in enumerate(paths) if not p.is_file()]
    if todo:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_tmp, [(str(p), i, seed) for p, i in todo]))
    return paths


def _write_tmp(args) -> None:
    path, i, seed = args
    tmp = Path(path).with_name(f".{Path(path).name}.partial.jpg")
    write_photo(tmp, i, seed)
    tmp.replace(path)  # a half-written file never looks finished
