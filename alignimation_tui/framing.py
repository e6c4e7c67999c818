"""Where the subject lands in the output: the framing, the same for both modes.

Registration puts every frame onto the reference's canvas (the reference photo's own framing);
the framing is one similarity from that canvas to the output, so a frame's matrix is
``framing ∘ registration`` (``output_matrix``). It is computed at render time from the reference's
subject on the canvas, so changing it re-renders without registering again, and it is not part of
any registration fingerprint.

* face: the eye midpoint goes to (``eye_x``, ``eye_y``) of the output, the eye line level, the
  inter-ocular distance ``eye_distance`` of the output width;
* body: the person's box (from the reference's mask, through its registration) centred, its
  height ``body_height`` of the output height;
* ``framing = "reference"``: the registration canvas itself (the reference photo's framing).

A later per-frame correction in output space (a nudge) is left-multiplied onto ``output_matrix``;
``Framing.anchor`` and ``Framing.unit`` say where the subject is and how big, in output pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The output sizes ``render.size`` may name live with the config, which checks them.
from .config import MAX_SIDE, MIN_SIDE, SIZE_PRESETS, parse_size  # noqa: F401


@dataclass(frozen=True)
class SubjectOnCanvas:
    """The reference's subject on the registration canvas: face: ``centre`` the eye midpoint,
    ``size`` the inter-ocular distance, ``angle`` the eye line (radians, image axes); body:
    ``centre`` the person's box centre, ``size`` its height, ``angle`` 0."""

    kind: str  # "eyes" or "box"
    centre: tuple[float, float]
    size: float
    angle: float = 0.0
    width: float = 0.0  # body: the box's width (0: not known)

    @classmethod
    def from_eyes(cls, left: np.ndarray, right: np.ndarray) -> "SubjectOnCanvas":
        d = np.asarray(right, np.float64) - np.asarray(left, np.float64)
        mid = (np.asarray(left, np.float64) + np.asarray(right, np.float64)) / 2
        return cls("eyes", (float(mid[0]), float(mid[1])), float(np.hypot(*d)), float(math.atan2(d[1], d[0])))

    @classmethod
    def from_box(cls, x0: float, y0: float, x1: float, y1: float) -> "SubjectOnCanvas":
        return cls("box", ((x0 + x1) / 2, (y0 + y1) / 2), float(y1 - y0), 0.0, float(x1 - x0))


@dataclass(frozen=True)
class FramingSettings:
    style: str = "auto"  # "auto" (by the subject) or "reference"
    size: str = "auto"
    eye_x: float = 0.5
    eye_y: float = 0.42
    eye_distance: float = 0.2
    body_height: float = 0.85

    @classmethod
    def from_config(cls, config) -> "FramingSettings":
        rc = config.render
        return cls(rc.framing, rc.size, rc.eye_x, rc.eye_y, rc.eye_distance, rc.body_height)

    def output_size(self, default: str, canvas: tuple[int, int] | None = None) -> tuple[int, int]:
        """``size``, or with "auto" the mode's ``default`` (``Mode.default_size``): a preset, or
        "photos": the reference photo's shape (its canvas), 1080 on the short side."""
        size = parse_size(self.size)
        if size is not None:
            return size
        if default == "photos" and canvas is not None:
            return photo_shaped(canvas)
        return SIZE_PRESETS.get(default, SIZE_PRESETS["square"])


def photo_shaped(canvas: tuple[int, int], short_side: int = 1080) -> tuple[int, int]:
    """An output of ``canvas``'s shape with ``short_side`` pixels on its short side (even sides, at
    most ``MAX_SIDE``; no narrower than 1:3)."""
    w, h = canvas
    ratio = min(max(w / h, 1 / 3), 3.0)
    even = lambda v: max(MIN_SIDE, min(MAX_SIDE, int(round(v)) // 2 * 2))  # noqa: E731
    return (even(short_side * ratio), short_side) if ratio >= 1 else (short_side, even(short_side / ratio))


@dataclass(frozen=True)
class Framing:
    size: tuple[int, int]  # output width, height
    matrix: np.ndarray  # 3x3, registration canvas pixels -> output pixels
    anchor: tuple[float, float]  # output pixels: the eye midpoint (face) or the box centre (body)
    unit: float  # output pixels: the inter-ocular distance (face) or the box height (body)
    style: str  # "eyes", "box" or "reference"


def similarity(scale: float, angle: float, src: tuple[float, float], dst: tuple[float, float]) -> np.ndarray:
    """The 3x3 similarity that turns by ``angle``, scales by ``scale`` and takes ``src`` to ``dst``."""
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    m = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    m[:2, 2] = np.asarray(dst, np.float64) - m[:2, :2] @ np.asarray(src, np.float64)
    return m


def plan_framing(settings: FramingSettings, default_size: str, canvas: tuple[int, int],
                 subject: SubjectOnCanvas | None) -> Framing:
    """The framing for a registration ``canvas`` whose reference subject is ``subject``;
    ``default_size``: the preset ``size = "auto"`` stands for (the mode's)."""
    if settings.style == "reference" or subject is None or subject.size <= 0:
        cx, cy = canvas[0] / 2, canvas[1] / 2
        unit = subject.size if subject is not None else float(canvas[1])
        centre = subject.centre if subject is not None else (cx, cy)
        return Framing(tuple(canvas), np.eye(3), centre, unit, "reference")
    w, h = settings.output_size(default_size, canvas)
    if subject.kind == "eyes":
        anchor = (settings.eye_x * w, settings.eye_y * h)
        unit = settings.eye_distance * w
        matrix = similarity(unit / subject.size, -subject.angle, subject.centre, anchor)
    else:
        anchor = (w / 2, h / 2)
        unit = settings.body_height * h
        scale = unit / subject.size
        if subject.width > 0:  # a wide pose (arms out) still fits the width, with the same margin
            scale = min(scale, (1 - (1 - settings.body_height) / 2) * w / subject.width)
            unit = scale * subject.size
        matrix = similarity(scale, 0.0, subject.centre, anchor)
    return Framing((w, h), matrix, anchor, unit, subject.kind)


def output_matrix(registration: np.ndarray, framing: Framing) -> np.ndarray:
    """A frame's matrix from its upright photo to the output: the framing after the registration.
    (A per-frame correction in output space goes on the left of this.)"""
    return framing.matrix @ np.asarray(registration, np.float64)
