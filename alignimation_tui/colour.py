"""Steady exposure and colour (``render.match_colour``): every frame's subject region gets the
brightness and colour of the reference's, or of a smooth trend over time through the reference
(so a real tan or a new hair colour stays, and flicker goes).

Per frame, once: the mean of each channel, in linear light, over the middle of the subject's box
(the face box; the person's box in body mode), from a small decode of the photo; stored in the
cache beside the transform (``colour:{hash}:{fp}``). At render time the stored means give each
frame one gain per channel, applied in linear light through a 256-entry table: cheap, no
detection, no registration. The reference's gains are exactly 1: it is left as it is.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MATCH_CHOICES = ("off", "reference", "trend")
STATS_SIDE = 256  # the photo is decoded this small for its statistics
REGION_INNER = 0.6  # the middle of the subject's box, this fraction of its width and height
TREND_SIGMA = 3.0  # frames: the trend is a Gaussian-weighted mean over about twice this many
GAIN_LIMITS = (0.5, 2.0)  # a gain beyond these is a wrong region, not an exposure: clipped


def to_linear(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return 255.0 * np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def inner_box(box, scale_xy: tuple[float, float], size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The middle ``REGION_INNER`` of ``box`` (original pixels) in decoded pixels, clipped; None if empty."""
    x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * REGION_INNER / 2, (y1 - y0) * REGION_INNER / 2
    sx, sy = scale_xy
    left, top = max(0, int(round((cx - hw) * sx))), max(0, int(round((cy - hh) * sy)))
    right, bottom = min(size[0], int(round((cx + hw) * sx))), min(size[1], int(round((cy + hh) * sy)))
    return (left, top, right, bottom) if right - left >= 2 and bottom - top >= 2 else None


def region_means(image: Image.Image, box, scale_xy: tuple[float, float]) -> list[float] | None:
    """Mean R, G, B in linear light over the middle of ``box`` (original pixels) of a decoded photo."""
    inner = inner_box(box, scale_xy, image.size)
    if inner is None:
        return None
    pixels = np.asarray(image.convert("RGB").crop(inner), np.float64).reshape(-1, 3)
    means = to_linear(pixels).mean(axis=0)
    return [float(v) for v in means] if np.all(means > 1e-4) else None


@dataclass(frozen=True)
class ColourGain:
    """One gain per channel, in linear light."""

    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def is_identity(self) -> bool:
        return all(abs(g - 1.0) < 1e-6 for g in self.gains)

    def table(self) -> list[int]:
        """Pillow ``point`` table (3 x 256)."""
        levels = to_linear(np.arange(256))
        return [int(v) for g in self.gains for v in np.round(to_srgb(levels * g))]

    def apply(self, image: Image.Image) -> Image.Image:
        return image if self.is_identity else image.convert("RGB").point(self.table())


def plan_gains(means: list[list[float] | None], ref_index: int | None, how: str,
               sigma: float = TREND_SIGMA) -> list[ColourGain]:
    """Per frame (in date order), the gain that takes its region means to the target: the
    reference's means (``reference``), or a Gaussian-weighted trend of the log means over
    neighbouring frames, shifted to pass through the reference's (``trend``). Frames without
    means (and every frame, without a reference) keep their colours."""
    n = len(means)
    known = np.array([m is not None for m in means])
    if how == "off" or ref_index is None or not known[ref_index]:
        return [ColourGain()] * n
    logs = np.log(np.array([m if m is not None else [1.0, 1.0, 1.0] for m in means], np.float64))
    if how == "reference":
        target = np.broadcast_to(logs[ref_index], logs.shape)
    else:
        idx = np.arange(n)
        w = np.exp(-0.5 * ((idx[:, None] - idx[None, :]) / sigma) ** 2) * known[None, :]
        trend = (w @ logs) / w.sum(axis=1, keepdims=True)
        target = trend + (logs[ref_index] - trend[ref_index])
    gains = np.clip(np.exp(target - logs), *GAIN_LIMITS)
    return [ColourGain(tuple(float(g) for g in row)) if ok else ColourGain() for row, ok in zip(gains, known)]
