"""Steady exposure and colour (``render.match_colour``): every frame's subject region gets the
brightness of the reference's, or of a smooth trend over time through the reference (so a real tan
stays, and flicker goes), and its colour cast nudged the same way, never its character.

Exposure and colour are separate. The exposure gain (one for all three channels: a greyscale photo
stays exactly grey) takes the region's luminance to the target's. The colour correction is a
luminance-neutral change of the channel ratios towards the target's, bounded (``CAST_BOUND``, ±10 %
per channel ratio) and scaled by the photo's own saturation (``saturation_weight``: none for a grey
photo, in full from a skin tone's saturation up): a white-balance drift is steadied, a
black-and-white, sepia or filtered photo keeps its look. The colour target is a trend over the
saturated frames only, so grey frames among colour ones do not pull it. ``brightness`` matches the
exposure alone.

What is neutral stays neutral (body mode, ``Mode.keeps_neutral``): a body photo is mostly wall, and
steering its colours towards the person's ratios in the reference tints a white wall, differently
every week. There the cast is measured on the photo's bright near-grey pixels (``neutral_means``: a
wall, a sheet, a grey shirt), and every frame, the reference too, is corrected so that they are
grey (bounded by ``NEUTRAL_BOUND``); a photo without enough of them keeps its colours. The exposure
is still matched on the subject's region.

Per frame, once: the mean of each channel, in linear light, over the middle of the subject's box
(the face box; the person's box in body mode), from a small decode of the photo; stored in the
cache beside the transform (``colour:{hash}:{fp}``). At render time the stored means give each
frame one gain per channel, applied in linear light through a 256-entry table: cheap, no
detection, no registration. The reference's gains are exactly 1: it is left as it is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .fingerprint import fingerprint

MATCH_CHOICES = ("off", "brightness", "reference", "trend")
STATS_SIDE = 256  # the photo is decoded this small for its statistics
REGION_INNER = 0.6  # the middle of the subject's box, this fraction of its width and height
TREND_SIGMA = 3.0  # frames: the trend is a Gaussian-weighted mean over about twice this many
TREND_REACH = 12  # sigmas: frames further apart do not weigh in the trend (under e^-72)
GAIN_LIMITS = (0.5, 2.0)  # a gain beyond these is a wrong region, not an exposure: clipped
CAST_BOUND = 0.10  # the colour correction changes no channel ratio by more than this
FULL_SATURATION = 0.35  # region saturation (linear light) from which a cast is corrected in full
LUMA = np.array([0.2126, 0.7152, 0.0722])  # Rec. 709 luminance of linear RGB
NEUTRAL_CHROMA = 0.15  # a pixel whose (max - min) / max in sRGB is below this is near-grey
NEUTRAL_MIN_LEVEL = 90  # ... and whose brightest channel is at least this (dark pixels are noise)
NEUTRAL_MIN_SHARE = 0.05  # near-grey pixels needed, a share of the photo, to judge its cast by
NEUTRAL_BOUND = 0.15  # the neutral correction changes no channel by more than this


def to_linear(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


_LINEAR_LEVELS = to_linear(np.arange(256))  # each 8-bit level in linear light: the same numbers, looked up


def levels_to_linear(pixels: np.ndarray) -> np.ndarray:
    """``to_linear`` of 8-bit pixels, by table (a power per value cost a photo's statistics ~10 ms)."""
    return _LINEAR_LEVELS[np.asarray(pixels, np.uint8)]


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


def means_key(content_hash: str, box) -> str:
    """The store key of a photo's ``region_means`` over ``box``: measured on any decode of at least
    ``STATS_SIDE`` pixels (the means of a region hardly depend on the decode's size), so the one
    detection decodes serves (``FaceMode.measure_decoded``) and a third decode is saved."""
    return f"colour:{content_hash}:{fingerprint(box=[round(float(v), 2) for v in box], v=2)}"


def region_means(image: Image.Image, box, scale_xy: tuple[float, float]) -> list[float] | None:
    """Mean R, G, B in linear light over the middle of ``box`` (original pixels) of a decoded photo."""
    inner = inner_box(box, scale_xy, image.size)
    if inner is None:
        return None
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # (an RGB image: no whole copy first)
    pixels = np.asarray(rgb.crop(inner)).reshape(-1, 3)
    means = levels_to_linear(pixels).mean(axis=0)
    return [float(v) for v in means] if np.all(means > 1e-4) else None


def neutral_key(content_hash: str) -> str:
    return f"neutral:{content_hash}:v1"


def neutral_means(image: Image.Image) -> list[float] | None:
    """Mean R, G, B in linear light of the bright near-grey pixels of a decoded photo (a white
    wall, a sheet); None when fewer than ``NEUTRAL_MIN_SHARE`` of its pixels are."""
    px = np.asarray(image if image.mode == "RGB" else image.convert("RGB")).reshape(-1, 3)
    hi, lo = px.max(axis=1).astype(np.float64), px.min(axis=1).astype(np.float64)
    near_grey = (hi >= NEUTRAL_MIN_LEVEL) & ((hi - lo) <= NEUTRAL_CHROMA * hi)
    if near_grey.mean() < NEUTRAL_MIN_SHARE:
        return None
    return [float(v) for v in levels_to_linear(px[near_grey]).mean(axis=0)]


def neutral_cast(neutral: list[float] | None) -> np.ndarray:
    """Per channel, the luminance-neutral gains that make ``neutral`` grey, bounded; 1 without it."""
    if neutral is None:
        return np.ones(3)
    rgb = np.asarray(neutral, np.float64)
    y = float(rgb @ LUMA)
    cast = np.clip(y / np.maximum(rgb, 1e-9), 1 - NEUTRAL_BOUND, 1 + NEUTRAL_BOUND)
    return cast / ((rgb * cast) @ LUMA / y)


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

    def apply(self, image: Image.Image | np.ndarray) -> Image.Image | np.ndarray:
        """The corrected picture: a Pillow image, or an RGB array (through OpenCV's look-up)."""
        if self.is_identity:
            return image
        if isinstance(image, np.ndarray):
            import cv2

            return cv2.LUT(image, np.asarray(self.table(), np.uint8).reshape(3, 256).T.reshape(256, 1, 3))
        return image.convert("RGB").point(self.table())


def saturation_weight(means: np.ndarray) -> np.ndarray:
    """Per frame, how much of a colour correction it takes: its region's saturation ((max - min) /
    max of the linear means) over ``FULL_SATURATION``, at most 1; 0 for a grey photo."""
    sat = (means.max(axis=1) - means.min(axis=1)) / np.maximum(means.max(axis=1), 1e-9)
    return np.clip(sat / FULL_SATURATION, 0.0, 1.0)


def _target(values: np.ndarray, weights: np.ndarray, ref_index: int, how: str, sigma: float) -> np.ndarray:
    """Per frame, the reference's value (``reference``), or a Gaussian-weighted trend of ``values``
    over neighbouring frames (``weights`` per frame), shifted to pass through the reference's."""
    if how == "reference":
        return np.broadcast_to(values[ref_index], values.shape)
    # The Gaussian cut at TREND_REACH sigmas (a banded sum, not an N x N matrix: 10,000 frames made
    # two 800 MB matrices); what it leaves out weighs under e^-72, nothing beside the 1e-12 floor.
    n, reach = len(values), math.ceil(TREND_REACH * sigma)
    kernel = np.exp(-0.5 * (np.arange(-reach, reach + 1) / sigma) ** 2)
    total = np.convolve(weights, kernel)[reach:reach + n]
    summed = np.stack([np.convolve(weights * values[:, j], kernel)[reach:reach + n]
                       for j in range(values.shape[1])], axis=1)
    trend = summed / np.maximum(total[:, None], 1e-12)
    return trend + (values[ref_index] - trend[ref_index])


def plan_gains(means: list[list[float] | None], ref_index: int | None, how: str,
               sigma: float = TREND_SIGMA, neutral: list[list[float] | None] | None = None) -> list[ColourGain]:
    """Per frame (in date order), the gains for its region means (linear RGB): the exposure gain
    that takes its luminance to the target's (``reference``: the reference's; ``trend``,
    ``brightness``: a trend through the reference's), times, except for ``brightness``, a colour
    correction towards the target's channel ratios, luminance-neutral, bounded by ``CAST_BOUND``
    and scaled by the frame's ``saturation_weight`` (the colour trend is weighted by it too).
    With ``neutral`` (each frame's ``neutral_means``, body mode) the colour correction is instead
    ``neutral_cast``, the reference's included. Frames without means (and every frame, without a
    reference) keep their colours."""
    n = len(means)
    known = np.array([m is not None for m in means])
    if how == "off" or ref_index is None or not known[ref_index]:
        return [ColourGain()] * n
    rgb = np.array([m if m is not None else [1.0, 1.0, 1.0] for m in means], np.float64)
    log_y = np.log(rgb @ LUMA)
    target_how = "reference" if how == "reference" else "trend"
    exposure = np.clip(np.exp(_target(log_y[:, None], known.astype(np.float64), ref_index, target_how, sigma)[:, 0]
                              - log_y), *GAIN_LIMITS)
    gains = np.repeat(exposure[:, None], 3, axis=1)
    if how != "brightness" and neutral is not None:
        gains[ref_index] = 1.0
        gains *= np.array([neutral_cast(v) for v in neutral])
        return [ColourGain(tuple(float(g) for g in row)) if ok else ColourGain(tuple(neutral_cast(v)))
                for row, ok, v in zip(gains, known, neutral)]
    if how != "brightness":
        weight = saturation_weight(rgb) * known
        log_ratio = np.log(rgb) - log_y[:, None]  # the channel ratios against the luminance
        # the colour target: the saturated frames' trend (a grey reference gives no colour target)
        wanted = _target(log_ratio, weight, ref_index, target_how, sigma) if weight[ref_index] > 0 else log_ratio
        cast = np.clip(wanted - log_ratio, math.log(1 - CAST_BOUND), math.log(1 + CAST_BOUND)) * weight[:, None]
        cast = np.exp(cast)
        cast /= ((rgb * cast) @ LUMA / (rgb @ LUMA))[:, None]  # luminance-neutral: the exposure is the exposure gain's
        gains *= cast
    gains[ref_index] = 1.0
    return [ColourGain(tuple(float(g) for g in row)) if ok else ColourGain() for row, ok in zip(gains, known)]
