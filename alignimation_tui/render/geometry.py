"""Where each frame lands: temporal smoothing of the transforms and the area all frames share.

Matrices are 3x3, from upright original pixels to canvas pixels (see ``domain.Transform``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Kept inside each photo's edge when cropping, in canvas pixels: bilinear sampling blends the
# last pixel row with the fill colour, and the decode is a little smaller than the original.
EDGE_MARGIN = 1.5


def smooth_matrices(matrices: list[np.ndarray], window: int, canvas: tuple[int, int]) -> list[np.ndarray]:
    """A centred moving average over ``window`` frames (in the given, date, order) of each frame's
    scale, rotation and the point of the photo shown at the canvas centre.

    This steadies jitter when the photos share a framing (a tripod, the same spot every week); it
    trades each frame's own fit for its neighbours', so photos framed differently should keep it
    off. ``window`` < 2 returns the matrices unchanged.
    """
    if window < 2 or len(matrices) < 2:
        return [np.asarray(m, np.float64) for m in matrices]
    centre = np.array([canvas[0] / 2, canvas[1] / 2, 1.0])
    inv = np.stack([np.linalg.inv(np.asarray(m, np.float64)) for m in matrices])  # canvas -> photo
    log_scale = 0.5 * np.log(np.abs(np.linalg.det(inv[:, :2, :2])))
    angle = np.unwrap(np.arctan2(inv[:, 1, 0], inv[:, 0, 0]))
    anchor = (inv @ centre)[:, :2]  # the photo point at the canvas centre
    params = np.column_stack([log_scale, angle, anchor])
    half_before, half_after = (window - 1) // 2, window // 2
    out = []
    for i in range(len(matrices)):
        lo, hi = max(0, i - half_before), min(len(matrices), i + half_after + 1)
        s, a, px, py = params[lo:hi].mean(axis=0)
        k = math.exp(s)
        lin = np.array([[k * math.cos(a), -k * math.sin(a)], [k * math.sin(a), k * math.cos(a)]])
        t = np.array([px, py]) - lin @ centre[:2]
        back = np.eye(3)
        back[:2, :2], back[:2, 2] = lin, t
        out.append(np.linalg.inv(back))
    return out


# convex polygons as (K, 2) arrays -----------------------------------------------------------------

def _area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _clip(poly: np.ndarray, normal: np.ndarray, limit: float) -> np.ndarray:
    """Keep the part of a convex polygon where ``normal . p <= limit`` (Sutherland-Hodgman)."""
    if len(poly) == 0:
        return poly
    d = poly @ normal - limit
    out = []
    for i in range(len(poly)):
        j = (i + 1) % len(poly)
        if d[i] <= 0:
            out.append(poly[i])
        if (d[i] <= 0) != (d[j] <= 0):
            t = d[i] / (d[i] - d[j])
            out.append(poly[i] + t * (poly[j] - poly[i]))
    return np.array(out).reshape(-1, 2)


def _half_planes(poly: np.ndarray, inset: float) -> list[tuple[np.ndarray, float]]:
    """The half-planes ``n . p <= c`` whose intersection is the convex ``poly``, moved ``inset`` inward."""
    if _area(poly) < 0:
        poly = poly[::-1]
    planes = []
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        edge = b - a
        length = float(np.hypot(*edge))
        if length < 1e-9:
            continue
        n = np.array([edge[1], -edge[0]]) / length  # outward for a counter-clockwise polygon
        planes.append((n, float(n @ a) - inset))
    return planes


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def footprint(matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The photo's rectangle on the canvas (4 corners)."""
    w, h = size
    corners = np.c_[_rect(0, 0, w, h), np.ones(4)]
    return (corners @ np.asarray(matrix, np.float64).T)[:, :2]


def coverage(matrix: np.ndarray, size: tuple[int, int], canvas: tuple[int, int]) -> float:
    """Fraction of the canvas the photo covers."""
    poly = _rect(0, 0, *canvas)
    for n, c in _half_planes(footprint(matrix, size), 0.0):
        poly = _clip(poly, n, c)
    return abs(_area(poly)) / (canvas[0] * canvas[1])


def coverages(matrices: list[np.ndarray], sizes: list[tuple[int, int]], canvas: tuple[int, int]) -> list[float]:
    """``coverage`` of each photo. A photo whose rectangle holds the canvas's four corners holds the
    whole canvas (both are convex): 1.0, found for all photos at once; the polygon clipping is left
    to the others (at 10,000 photos it was 1-2 s of every render, up to date or not)."""
    if not matrices:
        return []
    corners = np.stack([footprint(m, s) for m, s in zip(matrices, sizes)])  # (N, 4, 2), in order round the photo
    edges = np.roll(corners, -1, axis=1) - corners
    w, h = canvas
    canvas_corners = _rect(0, 0, w, h)  # (4, 2)
    to_corner = canvas_corners[None, None, :, :] - corners[:, :, None, :]  # (N, edge, corner, 2)
    cross = edges[:, :, None, 0] * to_corner[..., 1] - edges[:, :, None, 1] * to_corner[..., 0]
    inside = (cross >= 0).all(axis=(1, 2)) | (cross <= 0).all(axis=(1, 2))  # either winding
    return [1.0 if whole else coverage(m, s, canvas) for whole, m, s in zip(inside.tolist(), matrices, sizes)]


@dataclass(frozen=True)
class Crop:
    x: int
    y: int
    width: int
    height: int

    @property
    def shift(self) -> np.ndarray:
        """Canvas pixels -> cropped pixels."""
        return np.array([[1.0, 0, -self.x], [0, 1.0, -self.y], [0, 0, 1.0]])


def shared_crop(matrices: list[np.ndarray], sizes: list[tuple[int, int]], canvas: tuple[int, int]) -> Crop | None:
    """The largest rectangle of the canvas's aspect ratio that every frame covers, in whole canvas
    pixels with even sides; None when the frames have (almost) no area in common."""
    shared = _rect(0, 0, *canvas)
    for m, size in zip(matrices, sizes):
        for n, c in _half_planes(footprint(m, size), EDGE_MARGIN):
            shared = _clip(shared, n, c)
    if abs(_area(shared)) < 16:
        return None
    planes = _half_planes(shared, 0.0)
    cw, ch = canvas

    def placements(s: float) -> np.ndarray:
        """Top-left corners (x0, y0) where an s-scaled canvas rectangle fits in ``shared``."""
        region = _rect(-1.0, -1.0, cw + 1.0, ch + 1.0)
        for n, c in planes:  # the corner furthest along n is the one that must stay inside
            region = _clip(region, n, c - s * (max(n[0], 0) * cw + max(n[1], 0) * ch))
        return region

    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if len(placements(mid)):
            lo = mid
        else:
            hi = mid
    region = placements(lo)
    if lo <= 0 or len(region) == 0:
        return None
    x0, y0 = region.mean(axis=0)
    left, top = math.ceil(x0 - 1e-6), math.ceil(y0 - 1e-6)
    right, bottom = math.floor(x0 + lo * cw + 1e-6), math.floor(y0 + lo * ch + 1e-6)
    width, height = (right - left) // 2 * 2, (bottom - top) // 2 * 2
    if width < 2 or height < 2:
        return None
    return Crop(left, top, width, height)
