"""Padding is not picture: the flat borders a photo may carry (scan padding, a print's white margin,
letterbox bars) are found once and kept outside the picture by the render.

A border is rows (or columns) of one flat colour from the edge inwards: each row uniform (a small
spread of its pixels: JPEG noise, no texture) and the same colour as the edge row, near-neutral
(black, white or grey). Dark content is not a border: a dark suit, a night sky or shadow has
texture or noise across the row, so the run stops at its first row, and it fades rather than
ending in an edge where the picture starts. Found on the picture detection
already decodes (``find_picture``), in a few milliseconds, and stored under its own key kind
(``picture:{hash}:{fp}``), so detection caches stay valid; a photo with no border gets its whole
frame. The render crops each decoded photo to its picture box before warping (``render.frame``),
so the framing, the coverage mask and the blurred fill all see the picture alone and the fill
replaces the padding. No Textual here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .medians import median

# A border row: every pixel within DEVIATION of the edge row's colour, each channel's spread at most
# STD (JPEG noise and the ringing next to the picture). The edge row itself must be black or white,
# or a grey that is digitally flat (a fill added to the picture; a photographed wall has noise).
# And the run must end in an edge: a row within EDGE_ROWS after it differs from the border colour
# by EDGE_JUMP on average (the picture starts), or the border is digitally flat: a night sky or a
# dark suit has no such edge, it fades.
BLACK_MAX, WHITE_MIN = 16, 235  # levels: the edge colour's brightest / dimmest channel
STD, DEVIATION = 3.5, 16  # levels
DIGITAL_STD = 0.5  # levels: a row this flat was not photographed
EDGE_ROWS, EDGE_JUMP = 3, 12.0  # rows, levels (mean absolute difference from the border colour)
NEUTRAL = 24  # levels: the edge colour's channels within this of each other (black, white, grey)
MAX_SHARE = 0.4  # a border takes at most this share of the photo's side, per edge
MIN_PICTURE = 0.2  # what is left must be at least this share of each side, else nothing is trimmed
MARGIN = 2  # decoded pixels trimmed beyond the last flat row: the JPEG ringing at the edge
VERSION = 1


@dataclass(frozen=True)
class PictureBox:
    """The part of a photo that is picture, in upright original pixels: x0, y0, x1, y1."""

    box: tuple[float, float, float, float]

    def trims(self, width: int, height: int) -> bool:
        x0, y0, x1, y1 = self.box
        return x0 > 0 or y0 > 0 or x1 < width or y1 < height

    def to_json(self) -> dict:
        return {"box": [round(v, 2) for v in self.box]}

    @classmethod
    def from_json(cls, d: dict) -> "PictureBox":
        x0, y0, x1, y1 = (float(v) for v in d["box"])
        return cls((x0, y0, x1, y1))


def _flat_run(strip: np.ndarray) -> int:
    """How many rows of ``strip`` (rows from the edge inwards, each a row of RGB pixels) are a
    border: one flat, near-neutral colour, the edge row's, ending where the picture starts."""
    first = strip[:1].astype(np.int16)  # the rest only when the edge row is a border's (most photos: not)
    edge = median(first[0], axis=0)
    if edge.max() - edge.min() > NEUTRAL:
        return 0
    digital = first[0].std(axis=0).max() <= DIGITAL_STD
    if not (digital or edge.max() <= BLACK_MAX or edge.min() >= WHITE_MIN):
        return 0

    def flat(rows: np.ndarray) -> np.ndarray:
        return (rows.std(axis=1).max(axis=1) <= STD) & (np.abs(rows - edge).max(axis=(1, 2)) <= DEVIATION)

    if not flat(first)[0]:
        return 0  # most photos: one row looked at per edge
    strip = strip.astype(np.int16)
    rows = flat(strip)
    n = len(rows) if rows.all() else int(np.argmin(rows))
    after = strip[n:n + EDGE_ROWS]
    if not digital and len(after) and np.abs(after - edge).mean(axis=(1, 2)).max() < EDGE_JUMP:
        return 0
    return n


def border_widths(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """Left, top, right, bottom border widths, in pixels of the (H, W, 3) ``pixels``."""
    h, w = pixels.shape[:2]
    a = pixels
    most_h, most_w = int(h * MAX_SHARE), int(w * MAX_SHARE)
    runs = [_flat_run(a[:, :most_w].transpose(1, 0, 2)), _flat_run(a[:most_h]),
            _flat_run(a[:, ::-1][:, :most_w].transpose(1, 0, 2)), _flat_run(a[::-1][:most_h])]
    left, top, right, bottom = (n + MARGIN if n else 0 for n in runs)
    if w - left - right < w * MIN_PICTURE:
        left = right = 0
    if h - top - bottom < h * MIN_PICTURE:
        top = bottom = 0
    return left, top, right, bottom


def find_picture(photo) -> PictureBox:
    """The picture box of a decoded photo (``photos.Decoded``), in its upright original pixels."""
    left, top, right, bottom = border_widths(photo.array())
    sx, sy = photo.scale_xy
    iw, ih = photo.image.size
    return PictureBox((left / sx, top / sy, (iw - right) / sx, (ih - bottom) / sy))
