"""Small pictures for the preview pane: the aligned frame, an onion skin with the reference, and
the original with what was detected drawn on it. Pure Pillow; no Textual here."""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .domain import FrameResult
from .nudge import anchor_points, nudged
from .photos import Decoded, open_photo
from .render import compose
from .render.frame import compose_decoded

DECODE_STEP = 64  # decode sizes are rounded up to this, so a nudge's small zoom reuses the decode

LANDMARK_COLOURS = ((80, 220, 255), (80, 220, 255), (255, 220, 60), (255, 90, 160), (255, 90, 160))


def fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[tuple[int, int], float]:
    """The largest size with ``size``'s aspect that fits in ``box``, and the scale factor."""
    s = min(box[0] / size[0], box[1] / size[1])
    return (max(1, round(size[0] * s)), max(1, round(size[1] * s))), s


def aligned_preview(r: FrameResult, box: tuple[int, int], max_pixels: int, matrix: np.ndarray | None = None,
                    output: tuple[int, int] | None = None, fill: str = "black") -> Image.Image:
    """The frame as the render shows it, with its nudge, at preview size (decoded small, warped
    once). ``matrix``: the photo -> output matrix (``Pipeline.output_matrix``: framing included)
    and ``output`` its size; without them, the registration onto the reference's canvas. The
    decoded photo is kept for the next call, so nudging the same frame only warps."""
    matrix = np.asarray(r.transform.matrix if matrix is None else matrix, np.float64)
    size, s = fit(output or r.transform.canvas, box)
    matrix = np.diag([s, s, 1.0]) @ nudged(matrix, r.nudge, anchor_points(r.subject))
    photo_size = (r.detection.width, r.detection.height) if r.detection else None
    picture = r.picture.box if r.picture is not None else None  # its flat borders are not picture
    if photo_size is None:
        return compose(r.frame.path, matrix, size, fill, max_pixels, photo_size, picture)
    needed = math.ceil(max(photo_size) * math.sqrt(abs(np.linalg.det(matrix[:2, :2]))) * 1.05) + 2
    photo = _decoded(r.frame.path, r.frame.hash, -(-needed // DECODE_STEP) * DECODE_STEP, max_pixels)
    return compose_decoded(photo, matrix, size, fill, picture)


@lru_cache(maxsize=4)
def _decoded(path: Path, content_hash: str, max_side: int, max_pixels: int) -> Decoded:
    return open_photo(path, max_side=max_side, max_pixels=max_pixels)


def onion_skin(frame: Image.Image, reference: Image.Image, alpha: float = 0.5) -> Image.Image:
    if reference.size != frame.size:
        reference = reference.resize(frame.size, Image.Resampling.BILINEAR)
    return Image.blend(frame.convert("RGB"), reference.convert("RGB"), alpha)


def detections_preview(r: FrameResult, box: tuple[int, int], max_pixels: int) -> Image.Image:
    """The upright original, small, with every face box (the subject's in green) and the
    subject's landmarks drawn."""
    photo = open_photo(r.frame.path, max_side=max(box) * 2, max_pixels=max_pixels)
    size, _ = fit(photo.image.size, box)
    image = photo.image.resize(size, Image.Resampling.BILINEAR)
    sx, sy = size[0] / photo.width, size[1] / photo.height
    draw = ImageDraw.Draw(image)
    boxes, chosen, points = detected_shapes(r)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        colour = (60, 230, 90) if i == chosen else (200, 200, 200)
        draw.rectangle((x0 * sx, y0 * sy, x1 * sx, y1 * sy), outline=colour, width=1)
    rad = max(1.0, min(size) / 60)
    for i, (x, y) in enumerate(points):
        if np.isfinite(x) and np.isfinite(y):
            colour = LANDMARK_COLOURS[i] if len(points) == 5 else (255, 220, 60)
            draw.ellipse((x * sx - rad, y * sy - rad, x * sx + rad, y * sy + rad), fill=colour)
    return image


def detected_shapes(r: FrameResult) -> tuple[list, int | None, list]:
    """Boxes of every face (or person, in body mode), the subject's index, and its points."""
    det, subject = r.detection, r.subject
    if det is None:
        return [], None, []
    if hasattr(det, "faces"):
        return ([f.box for f in det.faces], subject.face_index if subject else None,
                list(subject.face.landmarks) if subject else [])
    return ([p.box for p in det.persons], subject.person_index if subject else None,
            list(subject.points) if subject else [])
