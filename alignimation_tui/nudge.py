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
from dataclasses import dataclass

import numpy as np

# (move in inter-ocular distances, rotation in degrees, scale step as a fraction)
STEPS = {"coarse": (0.05, 1.0, 0.02), "fine": (0.01, 0.2, 0.004)}
LIMITS = {"shift": 2.0, "angle": 45.0, "scale": (0.5, 2.0)}


@dataclass(frozen=True)
class Nudge:
    """``dx``, ``dy``: shift of the picture in aligned inter-ocular distances (+x right, +y down);
    ``angle_deg``: rotation about the eye midpoint (+ clockwise on screen, y pointing down);
    ``scale``: zoom factor about the eye midpoint."""

    dx: float = 0.0
    dy: float = 0.0
    angle_deg: float = 0.0
    scale: float = 1.0

    @property
    def is_identity(self) -> bool:
        return (abs(self.dx) < 1e-9 and abs(self.dy) < 1e-9 and abs(self.angle_deg) < 1e-9
                and abs(self.scale - 1.0) < 1e-9)

    def to_json(self) -> dict:
        return {"dx": round(self.dx, 6), "dy": round(self.dy, 6), "angle_deg": round(self.angle_deg, 6),
                "scale": round(self.scale, 6)}

    @classmethod
    def from_json(cls, d: dict) -> "Nudge":
        n = cls(float(d.get("dx", 0.0)), float(d.get("dy", 0.0)), float(d.get("angle_deg", 0.0)),
                float(d.get("scale", 1.0)))
        if not all(math.isfinite(v) for v in (n.dx, n.dy, n.angle_deg, n.scale)) or n.scale <= 0:
            raise ValueError(f"not a valid nudge: {d!r}")
        return n

    def stepped(self, what: str, direction: int, size: str = "coarse") -> "Nudge":
        """One key press: ``what`` is "x", "y", "angle" or "scale"; ``direction`` +1 or -1."""
        move, turn, zoom = STEPS[size]
        lim = LIMITS
        if what == "x":
            return _replace(self, dx=_clamp(self.dx + direction * move, -lim["shift"], lim["shift"]))
        if what == "y":
            return _replace(self, dy=_clamp(self.dy + direction * move, -lim["shift"], lim["shift"]))
        if what == "angle":
            return _replace(self, angle_deg=_clamp(self.angle_deg + direction * turn, -lim["angle"], lim["angle"]))
        if what == "scale":
            return _replace(self, scale=_clamp(self.scale * (1 + zoom) ** direction, *lim["scale"]))
        raise ValueError(f"unknown nudge axis {what!r}")

    def describe(self) -> str:
        parts = []
        if abs(self.dx) > 1e-9 or abs(self.dy) > 1e-9:
            parts.append(f"shift {self.dx:+.2f},{self.dy:+.2f} eye-dist")
        if abs(self.angle_deg) > 1e-9:
            parts.append(f"rot {self.angle_deg:+.1f}°")
        if abs(self.scale - 1) > 1e-9:
            parts.append(f"scale ×{self.scale:.3f}")
        return ", ".join(parts) or "none"


def _clamp(v: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, round(v, 6)))


def _replace(n: Nudge, **kw) -> Nudge:
    values = {"dx": n.dx, "dy": n.dy, "angle_deg": n.angle_deg, "scale": n.scale, **kw}
    return Nudge(**values)


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
