"""Small pictures for the preview pane: the aligned frame, an onion skin with the reference, and
the original with what was detected drawn on it. Pure Pillow; no Textual here.

They read a ``FrameView``: what the preview needs of one frame, copied out of the pipeline by the
thread that owns it, so the preview worker never reads live pipeline objects."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .domain import FrameResult
from .nudge import Nudge, anchor_points, nudged
from .photos import Decoded, open_photo
from .render import compose
from .render.frame import compose_decoded

DECODE_STEP = 64  # decode sizes are rounded up to this, so a nudge's small zoom reuses the decode

LANDMARK_COLOURS = ((80, 220, 255), (80, 220, 255), (255, 220, 60), (255, 90, 160), (255, 90, 160))


@dataclass(frozen=True)
class FrameView:
    """One frame as the preview shows it: an immutable copy. ``matrix``: its registration (upright
    photo -> the reference's canvas), None when the frame is not aligned; the framing (canvas ->
    output picture) is the same for every frame and is not in the view (``on_output``): a framing
    that moves as photos arrive does not change every frame's view."""

    hash: str
    path: Path
    name: str
    status: str
    error: str | None
    photo_size: tuple[int, int] | None
    matrix: tuple[tuple[float, ...], ...] | None
    canvas: tuple[int, int] | None  # the registration canvas (the picture's size without a framing)
    residual_pct: float | None
    nudge: Nudge | None
    pivot: tuple[tuple[float, float], ...] | None  # the nudge's two anchor points
    boxes: tuple = ()  # every candidate found (faces, people)
    chosen: int | None = None  # the subject's index among them
    points: tuple = ()  # the subject's points
    subject_word: str = "subject"
    picture: tuple[float, float, float, float] | None = None  # the photo without its flat borders


def frame_view(r: FrameResult, matrix: np.ndarray | None = None, subject_word: str = "subject") -> FrameView:
    """``r`` copied for the preview; ``matrix``: its output matrix (the registration without one)."""
    det, subject = r.detection, r.subject
    if matrix is None and r.transform is not None:
        matrix = r.transform.matrix
    pivot = anchor_points(subject)
    return FrameView(
        hash=r.frame.hash, path=r.frame.path, name=r.frame.name, status=r.status.value, error=r.error,
        photo_size=(det.width, det.height) if det is not None else None,
        matrix=None if matrix is None or r.transform is None else _plain(matrix, r.transform.matrix),
        canvas=tuple(r.transform.canvas) if r.transform is not None else None,
        residual_pct=r.transform.residual_pct if r.transform is not None else None, nudge=r.nudge,
        pivot=None if pivot is None else tuple(map(tuple, pivot.tolist())),
        boxes=tuple(det.boxes) if det is not None else (), chosen=subject.index if subject is not None else None,
        points=tuple(subject.points) if subject is not None else (), subject_word=subject_word,
        picture=r.picture.box if r.picture is not None else None)


def _plain(matrix, registration: tuple) -> tuple:
    """``matrix`` as tuples of plain floats; the transform's own matrix is that already (a
    library's open makes 10,000 views)."""
    if matrix is registration:
        return registration
    return tuple(tuple(float(v) for v in row) for row in matrix)


def on_output(framing, registration) -> np.ndarray:
    """A frame's matrix from its upright photo to the output picture: ``framing`` (3x3, the
    reference's canvas -> the output) after its ``registration`` (``FrameView.matrix``)."""
    return np.asarray(framing, np.float64) @ np.asarray(registration, np.float64)


def fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[tuple[int, int], float]:
    """The largest size with ``size``'s aspect that fits in ``box``, and the scale factor."""
    s = min(box[0] / size[0], box[1] / size[1])
    return (max(1, round(size[0] * s)), max(1, round(size[1] * s))), s


def aligned_preview(v: FrameView | FrameResult, box: tuple[int, int], max_pixels: int,
                    matrix: np.ndarray | None = None, output: tuple[int, int] | None = None,
                    fill: str = "black") -> Image.Image:
    """The frame as the render shows it, with its nudge, at preview size (decoded small, warped
    once). ``matrix``: the photo -> output matrix (``Pipeline.output_matrix``: framing included)
    and ``output`` its size; without them, the view's (or the registration onto the reference's
    canvas). The decoded photo is kept for the next call, so nudging the same frame only warps."""
    if isinstance(v, FrameResult):
        v = frame_view(v, matrix)
    matrix = np.asarray(v.matrix if matrix is None else matrix, np.float64)
    size, s = fit(output or v.canvas, box)
    pivot = None if v.pivot is None else np.asarray(v.pivot, np.float64)
    matrix = np.diag([s, s, 1.0]) @ nudged(matrix, v.nudge, pivot)
    photo_size = v.photo_size
    if photo_size is None:
        return compose(v.path, matrix, size, fill, max_pixels, photo_size, v.picture)
    needed = math.ceil(max(photo_size) * math.sqrt(abs(np.linalg.det(matrix[:2, :2]))) * 1.05) + 2
    photo = _decoded(v.path, v.hash, -(-needed // DECODE_STEP) * DECODE_STEP, max_pixels)
    return compose_decoded(photo, matrix, size, fill, v.picture)


@lru_cache(maxsize=4)
def _decoded(path: Path, content_hash: str, max_side: int, max_pixels: int) -> Decoded:
    return open_photo(path, max_side=max_side, max_pixels=max_pixels)


def onion_skin(frame: Image.Image, reference: Image.Image, alpha: float = 0.5) -> Image.Image:
    if reference.size != frame.size:
        reference = reference.resize(frame.size, Image.Resampling.BILINEAR)
    return Image.blend(frame.convert("RGB"), reference.convert("RGB"), alpha)


SUBJECT_MARGIN = 0.6  # the zoomed view: the subject's box and this much of its size on each side


def subject_region(box: tuple[float, float, float, float], photo: tuple[int, int], view: tuple[int, int],
                   margin: float = SUBJECT_MARGIN) -> tuple[float, float, float, float]:
    """The part of the photo the zoomed view shows: ``box`` grown by ``margin`` of its size on each
    side, then to the view's aspect (so the picture fills the pane), kept inside the photo."""
    x0, y0, x1, y1 = box
    w, h = (x1 - x0) * (1 + 2 * margin), (y1 - y0) * (1 + 2 * margin)
    aspect = view[0] / max(1, view[1])
    w, h = max(w, h * aspect), max(h, w / aspect)
    w, h = min(w, photo[0]), min(h, photo[1])
    cx = min(max((x0 + x1) / 2, w / 2), photo[0] - w / 2)
    cy = min(max((y0 + y1) / 2, h / 2), photo[1] - h / 2)
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def detections_preview(v: FrameView, box: tuple[int, int], max_pixels: int, zoom: bool = False) -> Image.Image:
    """The upright original, small, with every candidate's box (the subject's in green) and the
    subject's points drawn. ``zoom``: only the subject's box with a margin (a face a few percent
    of the photo wide is then more than a blob), decoded at the size that region needs."""
    boxes, chosen, points = v.boxes, v.chosen, v.points
    region = None
    if zoom and chosen is not None and v.photo_size is not None:
        pw, ph = v.photo_size
        region = subject_region(boxes[chosen], (pw, ph), box)
        share = max((region[2] - region[0]) / pw, (region[3] - region[1]) / ph)
        photo = open_photo(v.path, max_side=math.ceil(max(box) * 2 / max(share, 1e-3)), max_pixels=max_pixels)
    else:
        photo = open_photo(v.path, max_side=max(box) * 2, max_pixels=max_pixels)
    sx, sy = photo.scale_xy
    x0, y0, x1, y1 = region or (0, 0, photo.width, photo.height)
    crop = photo.image.crop((round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)))
    size, _ = fit(crop.size, box)
    image = crop.resize(size, Image.Resampling.BILINEAR)
    kx, ky = size[0] / (x1 - x0), size[1] / (y1 - y0)  # original pixels -> preview pixels
    draw = ImageDraw.Draw(image)
    for i, (bx0, by0, bx1, by1) in enumerate(boxes):
        colour = (60, 230, 90) if i == chosen else (200, 200, 200)
        draw.rectangle(((bx0 - x0) * kx, (by0 - y0) * ky, (bx1 - x0) * kx, (by1 - y0) * ky), outline=colour, width=1)
    rad = max(1.0, min(size) / 60)
    for i, (x, y) in enumerate(points):
        if np.isfinite(x) and np.isfinite(y):
            colour = LANDMARK_COLOURS[i] if len(points) == 5 else (255, 220, 60)
            px, py = (x - x0) * kx, (y - y0) * ky
            draw.ellipse((px - rad, py - rad, px + rad, py + rad), fill=colour)
    return image
