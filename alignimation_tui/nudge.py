"""A person's manual correction of one frame: a small similarity in OUTPUT space.

The nudge is defined relative to the aligned face, not to any canvas: it rotates and scales about
the aligned face's eye midpoint and shifts in units of the aligned inter-ocular distance. So the
same stored nudge means the same correction after re-registration (a new reference, other
registration settings) and under any framing (canvas size, crop, where the eyes land): it is
applied by left-multiplying whatever final matrix the frame has, with the anchor recomputed from
that matrix. ``nudged`` is the one function render, preview, sidecar and ``--frames`` go through.
"""
from __future__ import annotations

import math

import numpy as np

from .domain import NUDGE_LIMITS as LIMITS, NUDGE_STEPS as STEPS, Nudge  # noqa: F401  (the value type lives with the others)


def anchor_points(subject) -> np.ndarray | None:
    """Two points in the upright original whose midpoint and distance anchor the nudge: the
    subject's ``pivot`` (``modes.base.Subject``: the eyes in face mode, the two registered
    keypoints farthest apart in body mode). None without a subject or a pivot."""
    pivot = None if subject is None else subject.pivot
    return None if pivot is None else np.asarray(pivot, np.float64).reshape(2, 2)


def nudge_matrix(nudge: Nudge, centre: np.ndarray, unit: float) -> np.ndarray:
    """The 3x3 output-space similarity: rotate and scale about ``centre``, then shift by
    (dx, dy) * ``unit`` pixels."""
    a = math.radians(nudge.angle_deg)
    c, s = nudge.scale * math.cos(a), nudge.scale * math.sin(a)
    cx, cy = float(centre[0]), float(centre[1])
    tx, ty = cx + nudge.dx * unit, cy + nudge.dy * unit
    return np.array([[c, -s, tx - c * cx + s * cy], [s, c, ty - s * cx - c * cy], [0.0, 0.0, 1.0]])


def nudged(matrix: np.ndarray, nudge: Nudge | None, anchor: np.ndarray | None) -> np.ndarray:
    """``matrix`` (upright original -> output pixels, framing included) with the nudge applied in
    output space: ``N @ matrix``, N anchored on where ``matrix`` puts the anchor points."""
    matrix = np.asarray(matrix, np.float64)
    if nudge is None or nudge.is_identity or anchor is None:
        return matrix
    pts = np.c_[np.asarray(anchor, np.float64), np.ones(2)] @ matrix.T
    centre = pts[:, :2].mean(axis=0)
    unit = float(np.linalg.norm(pts[0, :2] - pts[1, :2]))
    if not unit > 0:
        return matrix
    return nudge_matrix(nudge, centre, unit) @ matrix
