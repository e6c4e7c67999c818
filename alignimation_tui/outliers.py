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
near-identical photos does not flag a frame for a hair. The pose is not the fit: a head turned
three-quarters shows a face box large against its eye distance (about 1/cos(yaw)), so the size is
judged after that is taken out (the face's own yaw estimate, up to 60°).

Two floors per signal. Beyond the first, the check is unsure: the frame stays in the video and is
flagged (``⚑ unsure: …`` in the table, ``n`` reaches it). It is an ``outlier`` (left out, with its
reason in the person's words: "face 1.8x the median size", "turned 178° beyond the rest") when one
signal is beyond the second, far floor, which no head explains (a face box half again its usual
size once the turn is taken out, the fit turned 40° from the rest, eyes swapped), or when two
signals are beyond the first at once (week 34 of a side-view series: eyes misplaced on a profile,
1.8x the size and turned 22°). The reference (it defines the canvas) and series of fewer than
``MIN_SERIES`` frames are never judged. Body mode uses the person's box: size, position and turn.

``apply_outliers`` is the one hook: after registration, ``aligned`` frames that are outliers get
the status ``outlier`` and ``outlier_reason``; the default render leaves them out (they are not
``aligned``) and accepting one puts it back, as for ``turned``; an unsure frame keeps ``aligned``
with ``unsure_reason``. No Textual here.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .domain import FrameResult, FrameStatus, Verdict
from .medians import median

MIN_SERIES = 8  # fewer frames than this: no yardstick, nobody is judged
OUTLIER_Z = 3.5  # robust z-score (median / 1.4826 MAD) beyond which a value is far from the rest
# Floors on the raw difference from the median, (unsure, no head explains it): below the first a
# frame is never flagged.
SIZE_RATIO = (1.25, 1.5)  # box size on the canvas (the turn taken out), either way
POSITION_SIZES = (0.3, 0.5)  # box centre, in median box sizes
TURN_DEG = (15.0, 40.0)  # rotation of the fit
SHAPE_RATIO = (1.35, 1.7)  # eye-to-mouth distance over box height, either way
RESIDUAL_FLOOR_BOX = (0.05, 0.15)  # box sizes (the nose and mouth a twentieth of the face off), and at least
RESIDUAL_TIMES = (3.0, 6.0)  # ...this many times the median
MAX_YAW_EXPLAINED = 60.0  # a turn up to this explains a larger box (1/cos(yaw)); beyond it is a profile


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
    yaw_deg: float = 0.0  # faces: the head's estimated yaw (facing.py); 0 when unknown

    @functools.cached_property
    def values(self) -> tuple[float, ...]:
        """The numbers ``judge`` reads: size, yaw, centre x and y, turn, shape (NaN where there is
        none), the residual in box sizes and in %. Every frame's are put in one array whenever one
        photo arrives; they are made once per fit."""
        return (self.size, self.yaw_deg, self.centre[0], self.centre[1], self.turn_deg,
                math.nan if self.shape is None else self.shape, self.residual_box, self.residual_pct)


def signals_of(r: FrameResult) -> FitSignals | None:
    """The signals of ``r``'s fit; None without a transform or a subject with a box. The shape is
    measured where the subject has facing scores and the five face landmarks (face mode)."""
    if r.transform is None or r.subject is None or getattr(r.subject, "box", None) is None:
        return None
    # Plain floats, not numpy: every frame's signals are measured again whenever one photo arrives.
    (a, b, tx), (c, d, ty) = r.transform.matrix[:2]
    a, b, tx, c, d, ty = float(a), float(b), float(tx), float(c), float(d), float(ty)
    x0, y0, x1, y1 = r.subject.box
    x0, y0, x1, y1 = float(x0), float(y0), float(x1), float(y1)
    scale = math.sqrt(abs(a * d - b * c))
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    cx, cy = a * mx + b * my + tx, c * mx + d * my + ty
    shape = None
    points = r.subject.points
    if r.subject.facing is not None and len(points) == 5 and y1 > y0:  # eyes, nose, mouth corners
        (lx, ly), (rx, ry), _, (mlx, mly), (mrx, mry) = points
        shape = math.hypot((mlx + mrx) / 2 - (lx + rx) / 2, (mly + mry) / 2 - (ly + ry) / 2) / (y1 - y0)
    size = scale * max(x1 - x0, y1 - y0)
    yaw = float(r.subject.facing.yaw_deg) if r.subject.facing is not None else 0.0
    return FitSignals(r.frame.hash, size, (cx, cy), math.degrees(math.atan2(c, a)), shape,
                      float(r.transform.residual_pct),
                      float(r.transform.residual_pct) / 100 * r.transform.canvas[1] / max(size, 1e-9), yaw)


def _mad(values: np.ndarray) -> float:
    return float(median(np.abs(values - median(values)))) * 1.4826


def _far(values: np.ndarray, centre: float, floor: float, mad: float | None = None) -> np.ndarray:
    """Whether each value is beyond ``floor`` from ``centre`` and OUTLIER_Z MADs from it (``mad``:
    ``values``' own, when the caller has it)."""
    d = np.abs(values - centre)
    mad = _mad(values) if mad is None else mad
    return (d > floor) & ((mad <= 0) | (d > OUTLIER_Z * max(mad, 1e-12)))


def _tiers(values: np.ndarray, centre: float, floors: tuple[float, float], mask=None) -> np.ndarray:
    """Per value: 0 fine, 1 beyond the first floor (unsure), 2 beyond the second (no head explains it)."""
    mad = _mad(values)
    level = _far(values, centre, floors[0], mad).astype(int) + _far(values, centre, floors[1], mad)
    return level if mask is None else level * mask


def _wrap(deg: np.ndarray) -> np.ndarray:
    return (deg + 180.0) % 360.0 - 180.0


def judge(signals: list[FitSignals], exempt: frozenset[str] = frozenset()) -> dict[str, tuple[bool, str]]:
    """hash -> (left out, the reason) for the frames among ``signals`` whose fit is implausible
    (left out) or doubtful (flagged) for the series; ``exempt``: judged as yardstick only, never
    flagged (the reference)."""
    if len(signals) < MIN_SERIES:
        return {}
    found: dict[str, list[tuple[int, str]]] = {}

    def note(levels: np.ndarray, why) -> None:
        for k in np.flatnonzero(levels):
            if signals[k].hash not in exempt:
                found.setdefault(signals[k].hash, []).append((int(levels[k]), why(k)))

    table = np.array([s.values for s in signals], np.float64)  # one row a frame (``FitSignals.values``)
    size, yaw, centres, turns, shape, residual, residual_pct = (
        table[:, 0], table[:, 1], table[:, 2:4], table[:, 4], table[:, 5], table[:, 6], table[:, 7])

    # The box against the eye distance. A larger box is doubtful as it is; it is beyond what any
    # head explains only once the head's own turn is taken out (a box grows as 1/cos(yaw)).
    log_size = np.log(np.maximum(size, 1e-9))
    med_size = float(median(log_size))
    turned = np.log(np.cos(np.radians(np.minimum(np.abs(yaw), MAX_YAW_EXPLAINED))))
    explained = np.where(log_size > med_size, np.maximum(log_size + turned, med_size), log_size)
    doubt = _far(log_size, med_size, math.log(SIZE_RATIO[0]))
    note(doubt.astype(int) + (doubt & _far(explained, med_size, math.log(SIZE_RATIO[1]))),
         lambda k: f"face {math.exp(log_size[k] - med_size):.1f}x the median size")

    off = np.linalg.norm(centres - median(centres, axis=0), axis=1) / math.exp(med_size)
    note(_tiers(off, float(median(off)), POSITION_SIZES, off > median(off)),
         lambda k: f"face {off[k]:.1f} of its size away from where the rest land")

    med_turn = float(np.degrees(np.arctan2(median(np.sin(np.radians(turns))),
                                           median(np.cos(np.radians(turns))))))
    rel = _wrap(turns - med_turn)
    note(_tiers(rel, float(median(rel)), TURN_DEG), lambda k: f"turned {abs(rel[k] - median(rel)):.0f}° beyond the rest")

    shaped = np.flatnonzero(shape > 0)  # (NaN where there is none: not > 0)
    if len(shaped) >= MIN_SERIES:
        log_shape = np.full(len(signals), np.nan)
        log_shape[shaped] = np.log(shape[shaped])
        med_shape = float(median(log_shape[~np.isnan(log_shape)]))
        filled = np.where(np.isnan(log_shape), med_shape, log_shape)
        note(_tiers(filled, med_shape, tuple(math.log(v) for v in SHAPE_RATIO)),
             lambda k: f"mouth {math.exp(filled[k] - med_shape):.1f}x the usual distance below the eyes for the face box")

    med_res = float(median(residual))
    floors = tuple(max(f, t * med_res) - med_res for f, t in zip(RESIDUAL_FLOOR_BOX, RESIDUAL_TIMES))
    med_pct = float(median(residual_pct))
    note(_tiers(residual, med_res, floors, residual > med_res),
         lambda k: f"landmark fit residual {signals[k].residual_pct:.1f} % (the rest: about {med_pct:.1f} %)")

    out = {}
    for h, notes in found.items():
        left_out = any(level >= 2 for level, _ in notes) or len(notes) >= 2
        out[h] = (left_out, "; ".join(why for _, why in notes))
    return out


def find_outliers(signals: list[FitSignals], exempt: frozenset[str] = frozenset()) -> dict[str, str]:
    """hash -> the reason, for the frames ``judge`` leaves out."""
    return {h: why for h, (out, why) in judge(signals, exempt).items() if out}


def find_unsure(signals: list[FitSignals], exempt: frozenset[str] = frozenset()) -> dict[str, str]:
    """hash -> the reason, for the frames ``judge`` only flags."""
    return {h: why for h, (out, why) in judge(signals, exempt).items() if not out}


def judged(results: list[FrameResult]) -> list[FrameResult]:
    """The frames the series is made of: registered, aligned (or already an outlier), not rejected."""
    aligned, outlier, rejected = FrameStatus.ALIGNED, FrameStatus.OUTLIER, Verdict.REJECTED
    return [r for r in results if (r.status is aligned or r.status is outlier) and r.transform is not None
            and r.verdict is not rejected]


def apply_outliers(results: list[FrameResult], reference: str | None) -> None:
    """Mark the implausible fits ``outlier`` with their reason, the doubtful ones ``unsure_reason``;
    the others (back) to ``aligned``. Idempotent; run after registration, before the selection.
    (Its loops are plain: they pass over every frame whenever one photo arrives.)"""
    series = judged(results)
    signals = [s for s in (r.of_fit("fit_signals", signals_of) for r in series) if s is not None]
    verdicts = judge(signals, frozenset({reference}) if reference else frozenset())
    aligned, outlier, skipped = FrameStatus.ALIGNED, FrameStatus.OUTLIER, FrameStatus.SKIPPED
    fine = (False, None)
    for r in series:
        left_out, why = verdicts.get(r.frame.hash, fine) if verdicts else fine
        if left_out:
            r.status, r.outlier_reason, r.unsure_reason = outlier, why, None
        else:
            r.status, r.outlier_reason, r.unsure_reason = aligned, None, why
    for r in results:
        status = r.status
        if status is not outlier and r.outlier_reason is not None:
            r.outlier_reason = None
        if status is not aligned and status is not skipped and r.unsure_reason is not None:
            r.unsure_reason = None
