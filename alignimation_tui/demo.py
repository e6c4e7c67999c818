"""`alignimation-tui demo [DIR]`: a small folder of real-face photos to try the whole flow offline.

The face is NASA's public-domain astronaut portrait (Eileen Collins; the copy scikit-image ships),
bundled with the package. Each demo photo places it under a different similarity (turn, size,
position) on a photo of a different size and light, as the weeks of a timelapse would; some are
stored turned with an EXIF orientation (or as HEIC, turned in HEIF's own box), some carry their
date in EXIF and some only in their name, and one photo has no face at all, to show how such a
photo is reported. Deterministic: the same folder every time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

MARKER = ".alignimation-demo"
START = datetime(2024, 1, 7, 10, 0, 0)
_ORIENTATION = 0x0112
_STORED_TURN = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


class DemoError(Exception):
    """The demo folder cannot be written (it holds files that are not a previous demo's)."""


@dataclass(frozen=True)
class DemoPhoto:
    name: str
    size: tuple[int, int]  # upright width, height
    angle: float  # degrees, the face's turn in the picture
    scale: float  # the face's size against the bundled portrait
    shift: tuple[float, float]  # where the face sits, as fractions of the photo from its centre
    light: float  # exposure factor
    orientation: int = 1  # EXIF orientation it is stored with
    exif_date: bool = True  # else the date is only in the name
    heic: bool = False


PHOTOS = (
    DemoPhoto("week01.jpg", (800, 600), 0, 1.0, (0.0, 0.05), 1.0),
    DemoPhoto("week02.jpg", (640, 480), 9, 0.85, (0.08, 0.0), 1.1),
    DemoPhoto("IMG_20240121_093012.jpg", (1024, 768), -7, 1.25, (-0.1, 0.05), 0.85, exif_date=False),
    DemoPhoto("week04.jpg", (600, 800), 4, 1.1, (0.05, -0.1), 1.0, orientation=6),
    DemoPhoto("week05.jpg", (800, 600), -12, 0.8, (0.12, 0.08), 1.2),
    DemoPhoto("week06.heic", (720, 960), 6, 1.0, (-0.05, -0.05), 0.95, orientation=6, heic=True),
    DemoPhoto("2024-02-18 garden.jpg", (900, 600), 13, 0.9, (-0.15, 0.0), 1.05, exif_date=False),
    DemoPhoto("week08.jpg", (800, 600), -4, 1.35, (0.0, 0.1), 0.8, orientation=3),
    DemoPhoto("week09.png", (640, 640), 8, 0.95, (0.1, -0.05), 1.0),
    DemoPhoto("week10.jpg", (1024, 768), -9, 1.15, (-0.08, -0.08), 1.15, orientation=8),
    DemoPhoto("week11.jpg", (800, 600), 2, 1.05, (0.05, 0.02), 0.9),
    DemoPhoto("week12.jpg", (768, 1024), -6, 0.9, (0.0, -0.12), 1.0),
)
NO_FACE = "no-face.jpg"


def portrait() -> Image.Image:
    with resources.files("alignimation_tui").joinpath("assets/astronaut.jpg").open("rb") as fh:
        return Image.open(fh).convert("RGB")


def _place(face: Image.Image, p: DemoPhoto) -> Image.Image:
    """The portrait under ``p``'s similarity on a photo of ``p.size``, with a soft background made
    from the portrait itself (blurred and stretched), as a real photo has no empty border."""
    w, h = p.size
    fit = 0.75 * min(w, h) / max(face.size)
    s = fit * p.scale
    a = math.radians(p.angle)
    c, si = s * math.cos(a), s * math.sin(a)
    fc = np.array(face.size, np.float64) / 2
    centre = np.array([w / 2 + p.shift[0] * w, h / 2 + p.shift[1] * h])
    forward = np.array([[c, -si, 0], [si, c, 0], [0, 0, 1.0]])
    forward[:2, 2] = centre - forward[:2, :2] @ fc
    inverse = np.linalg.inv(forward)
    background = face.resize((w, h), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(max(w, h) / 40))
    placed = face.transform((w, h), Image.Transform.AFFINE, data=tuple(inverse[:2].ravel()),
                            resample=Image.Resampling.BICUBIC)
    inside = Image.new("L", face.size, 255).transform((w, h), Image.Transform.AFFINE,
                                                      data=tuple(inverse[:2].ravel()))
    photo = Image.composite(placed, background, inside)
    return photo.point(lambda v: min(255, round(v * p.light)))


def _exif(when: datetime | None, orientation: int) -> Image.Exif:
    exif = Image.Exif()
    if when is not None:
        exif.get_ifd(0x8769)[36867] = when.strftime("%Y:%m:%d %H:%M:%S")
    if orientation != 1:
        exif[_ORIENTATION] = orientation
    return exif


def _save(photo: Image.Image, path: Path, when: datetime | None, orientation: int, heic: bool) -> None:
    stored = photo.transpose(_STORED_TURN[orientation]) if orientation in _STORED_TURN else photo
    exif = _exif(when, orientation).tobytes()
    if heic:
        import pillow_heif

        pillow_heif.from_pillow(stored).save(path, quality=90, exif=exif)
    elif path.suffix == ".png":
        stored.save(path, exif=exif)
    else:
        stored.save(path, quality=90, exif=exif)


def write_demo(folder: Path) -> list[Path]:
    """Write the demo photos into ``folder`` (made if missing). Refuses a folder that holds
    anything but a previous demo, so it can never overwrite someone's photos."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DemoError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise DemoError(f"{folder} is not empty and is not a demo folder; choose a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("written by `alignimation-tui demo`; safe to delete\n")
    face = portrait()
    written = []
    for week, p in enumerate(PHOTOS):
        when = START + timedelta(weeks=week, hours=week % 3)
        path = folder / p.name
        _save(_place(face, p), path, when if p.exif_date else None, p.orientation, p.heic)
        written.append(path)
    wall = face.crop((0, 300, 250, 512)).resize((800, 600), Image.Resampling.BICUBIC)
    path = folder / NO_FACE
    _save(wall, path, START + timedelta(weeks=6, days=3), 1, False)
    written.append(path)
    return written
