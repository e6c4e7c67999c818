"""The gross-misregistration guard: a frame whose registration is implausible for the series.

A wrong fit (the eyes misplaced on a profile, a half face, landmarks swapped or moved) still gives a
similarity, often with a small residual: the two eyes fit any two points. What gives it away is
what the fit does to the rest of the face. With every frame's eyes put on the same canvas points,
the subject's box (MTCNN's face box; the person's box in body mode) lands about the same size, in
about the same place and upright in every frame; a wrong fit blows the box up or shrinks it,
throws it off to one side or turns it. So, per frame, from its transform and its subject only
(``FitSignals``, immutable):

* **size**: the box's size on the canvas against the series' median;
* **position**: how far the box's centre lands from the median centre, in box sizes;
* **turn**: the registration's rotation against the median rotation;
* **shape** (faces): the eye-to-mouth distance over the box height, in the photo;
* **residual**: the landmark error after the fit (nose and mouth against the reference's).

Each is judged robustly against the series (median and MAD: the frames being judged cannot move
the yardstick much) and must also pass a floor on the raw difference, so a tight series of
near-identical photos does not flag a frame for a hair. A frame is an ``outlier`` when any signal
is beyond both; the reason says which, in the person's words ("face 1.8x the median size",
"turned 22° beyond the rest"). The reference (it defines the canvas) and series of fewer than
``MIN_SERIES`` frames are never judged. Body mode uses the person's box: size, position and turn.

``apply_outliers`` is the one hook: after registration, ``aligned`` frames that are outliers get
the status ``outlier`` and ``outlier_reason``; the default render leaves them out (they are not
``aligned``) and accepting one puts it back, as for ``turned``. No Textual here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .domain import FrameResult, FrameStatus, Verdict

MIN_SERIES = 8  # fewer frames than this: no yardstick, nobody is judged
OUTLIER_Z = 3.5  # robust z-score (median / 1.4826 MAD) beyond which a value is far from the rest
# Floors on the raw difference from the median: below these a frame is never an outlier.
SIZE_RATIO = 1.25  # box size on the canvas, either way (x1.25 or /1.25)
POSITION_SIZES = 0.3  # box centre, in median box sizes
TURN_DEG = 15.0  # rotation of the fit
SHAPE_RATIO = 1.35  # eye-to-mouth distance over box height, either way
RESIDUAL_FLOOR_BOX = 0.05  # box sizes (the nose and mouth a twentieth of the face off), and at least
RESIDUAL_TIMES = 3.0  # ...this many times the median


@dataclass(frozen=True)
class FitSignals:
    """What one frame's fit does to its subject, on the registration canvas (and in the photo)."""

    hash: str
    size: float  # the subject's box (its longer side) on the canvas, pixels
    centre: tuple[float, float]  # the box centre on the canvas
    turn_deg: float  # the registration's rotation
    shape: float | None  # faces: eye midpoint to mouth midpoint over the box height (photo pixels)
    residual_pct: float
    residual_box: float  # the same landmark error in box sizes (comparable whatever the face's size)


def signals_of(r: FrameResult) -> FitSignals | None:
    """The signals of ``r``'s fit; None without a transform or a subject with a box. The shape is
    measured where the subject has facing scores and the five face landmarks (face mode)."""
    if r.transform is None or r.subject is None or getattr(r.subject, "box", None) is None:
        return None
    # Plain floats, not numpy: every frame's signals are measured again whenever one photo arrives.
    (a, b, tx), (c, d, ty) = ((float(v) for v in row) for row in r.transform.matrix[:2])
    scale = math.sqrt(abs(a * d - b * c))
    x0, y0, x1, y1 = (float(v) for v in r.subject.box)
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    cx, cy = a * mx + b * my + tx, c * mx + d * my + ty
    shape = None
    points = r.subject.points
    if r.subject.facing is not None and len(points) == 5 and y1 > y0:  # eyes, nose, mouth corners
        (lx, ly), (rx, ry), _, (mlx, mly), (mrx, mry) = points
        shape = math.hypot((mlx + mrx) / 2 - (lx + rx) / 2, (mly + mry) / 2 - (ly + ry) / 2) / (y1 - y0)
    size = scale * max(x1 - x0, y1 - y0)
    return FitSignals(r.frame.hash, size, (cx, cy), math.degrees(math.atan2(c, a)), shape,
                      float(r.transform.residual_pct),
                      float(r.transform.residual_pct) / 100 * r.transform.canvas[1] / max(size, 1e-9))


def _far(values: np.ndarray, centre: float, floor: float) -> np.ndarray:
    """Whether each value is beyond ``floor`` from ``centre`` and OUTLIER_Z MADs from it."""
    d = np.abs(values - centre)
    mad = float(np.median(np.abs(values - np.median(values)))) * 1.4826
    return (d > floor) & ((mad <= 0) | (d > OUTLIER_Z * max(mad, 1e-12)))


def _wrap(deg: np.ndarray) -> np.ndarray:
    return (deg + 180.0) % 360.0 - 180.0


def find_outliers(signals: list[FitSignals], exempt: frozenset[str] = frozenset()) -> dict[str, str]:
    """hash -> the reason, for the frames among ``signals`` whose fit is implausible for the
    series (``exempt``: judged as yardstick only, never flagged: the reference)."""
    if len(signals) < MIN_SERIES:
        return {}
    reasons: dict[str, list[str]] = {}

    def note(k: int, why: str) -> None:
        if signals[k].hash not in exempt:
            reasons.setdefault(signals[k].hash, []).append(why)

    log_size = np.log([max(s.size, 1e-9) for s in signals])
    med_size = float(np.median(log_size))
    for k in np.flatnonzero(_far(log_size, med_size, math.log(SIZE_RATIO))):
        note(k, f"face {math.exp(log_size[k] - med_size):.1f}x the median size")

    centres = np.array([s.centre for s in signals])
    off = np.linalg.norm(centres - np.median(centres, axis=0), axis=1) / math.exp(med_size)
    for k in np.flatnonzero(_far(off, float(np.median(off)), POSITION_SIZES) & (off > np.median(off))):
        note(k, f"face {off[k]:.1f} of its size away from where the rest land")

    turns = np.array([s.turn_deg for s in signals])
    med_turn = float(np.degrees(np.arctan2(np.median(np.sin(np.radians(turns))),
                                           np.median(np.cos(np.radians(turns))))))
    rel = _wrap(turns - med_turn)
    for k in np.flatnonzero(_far(rel, float(np.median(rel)), TURN_DEG)):
        note(k, f"turned {abs(rel[k] - np.median(rel)):.0f}° beyond the rest")

    shaped = [k for k, s in enumerate(signals) if s.shape is not None and s.shape > 0]
    if len(shaped) >= MIN_SERIES:
        log_shape = np.log([signals[k].shape for k in shaped])
        med_shape = float(np.median(log_shape))
        for j in np.flatnonzero(_far(log_shape, med_shape, math.log(SHAPE_RATIO))):
            ratio = math.exp(log_shape[j] - med_shape)
            note(shaped[j], f"mouth {ratio:.1f}x the usual distance below the eyes for the face box")

    residual = np.array([s.residual_box for s in signals])
    med_res = float(np.median(residual))
    floor = max(RESIDUAL_FLOOR_BOX, RESIDUAL_TIMES * med_res) - med_res
    med_pct = float(np.median([s.residual_pct for s in signals]))
    for k in np.flatnonzero(_far(residual, med_res, floor) & (residual > med_res)):
        note(k, f"landmark fit residual {signals[k].residual_pct:.1f} % (the rest: about {med_pct:.1f} %)")
    return {h: "; ".join(why) for h, why in reasons.items()}


def judged(results: list[FrameResult]) -> list[FrameResult]:
    """The frames the series is made of: registered, aligned (or already an outlier), not rejected."""
    return [r for r in results if r.transform is not None and r.verdict is not Verdict.REJECTED
            and r.status in (FrameStatus.ALIGNED, FrameStatus.OUTLIER)]


def apply_outliers(results: list[FrameResult], reference: str | None) -> None:
    """Mark the implausible fits ``outlier`` with their reason; the others (back) to ``aligned``.
    Idempotent; run after registration, before the selection."""
    series = judged(results)
    signals = [s for s in map(signals_of, series) if s is not None]
    reasons = find_outliers(signals, frozenset({reference}) if reference else frozenset())
    for r in series:
        why = reasons.get(r.frame.hash)
        r.status = FrameStatus.OUTLIER if why else FrameStatus.ALIGNED
        r.outlier_reason = why
    for r in results:
        if r.status is not FrameStatus.OUTLIER:
            r.outlier_reason = None
