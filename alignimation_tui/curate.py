"""Which photos go in when there are too many: sharpness, near-duplicates, one photo per period.

Measured on the picture detection already decoded (no second decode), cached with the detection:

* **sharpness** of each face: the variance of the Laplacian of the face box in grey, resampled to
  ``SHARPNESS_SIDE`` pixels square first, so a big face and a small one are measured on the same
  scale (the resampling is the normalisation for the crop's size; at 64 px a 200 px and a 100 px
  face of the same photo score within 10 %, a 50 px one about half: it has less detail);
* a 64-bit **difference hash** (dHash) of the whole photo, for exact and near duplicates.

Selection (``[select]``), applied after registration, in this order:

1. near-duplicates (dHash within ``duplicate_bits`` bits) and bursts (taken within
   ``burst_seconds`` of each other) form groups; each group keeps one photo;
2. ``every = day | week | month`` keeps one photo per calendar day, ISO week or month.

The photo kept is the best by ``frame_score``: a sharp photo beats a blurry one (below
``min_sharpness``) whatever else; then the highest sharpness relative to the series' median
(capped at 2) x cos(yaw) / (1 + residual %); ties go to the earlier photo. A photo you
accepted always stays and is its group's pick; a rejected one takes no part. The others get the
status ``skipped`` and the reason. No Textual here.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .domain import FrameQuality  # noqa: F401  (it lived here: domain.py holds the stored value types)
from .domain import Box, FrameResult, FrameStatus, Verdict, is_kept
from .medians import median

SHARPNESS_SIDE = 64  # most faces are larger and are shrunk to it: scores hardly depend on face size
NEIGHBOURS = 30  # near-duplicates are looked for among this many neighbours in date order
PERIODS = ("day", "week", "month")


def dhash(image: Image.Image) -> int:
    """Difference hash: grey 9x8 thumbnail, one bit per horizontal neighbour pair (left brighter)."""
    small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BOX, reducing_gap=2.0), np.int16)
    bits = (small[:, :-1] > small[:, 1:]).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def laplacian_variance(grey: np.ndarray) -> float:
    a = grey.astype(np.float64)
    lap = a[1:-1, :-2] + a[1:-1, 2:] + a[:-2, 1:-1] + a[2:, 1:-1] - 4 * a[1:-1, 1:-1]
    return float(lap.var())


def face_sharpness(image: Image.Image, box: tuple[float, float, float, float]) -> float:
    """Variance of the Laplacian of ``box`` (in ``image``'s pixels), resampled to a fixed square."""
    x0, y0, x1, y1 = (max(0, round(box[0])), max(0, round(box[1])),
                      min(image.width, round(box[2])), min(image.height, round(box[3])))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0
    crop = image.crop((x0, y0, x1, y1)).convert("L").resize((SHARPNESS_SIDE, SHARPNESS_SIDE),
                                                            Image.Resampling.BILINEAR)
    return laplacian_variance(np.asarray(crop))


def frame_quality(photo, boxes: tuple[Box, ...]) -> FrameQuality:
    """From a decoded photo (``photos.Decoded``) and the boxes (original pixels) whose sharpness
    is measured: a face mode's every face, in detection order."""
    sx, sy = photo.scale_xy
    sharp = tuple(face_sharpness(photo.image, (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy)) for b in boxes)
    return FrameQuality(dhash(photo.image), sharp)


def subject_sharpness(r: FrameResult) -> float | None:
    """The sharpness of the subject's region (the quality holds one per detected candidate)."""
    q, s = r.quality, r.subject
    if q is None or s is None or not 0 <= s.index < len(q.sharpness):
        return None
    return q.sharpness[s.index]


def is_blurry(r: FrameResult, min_sharpness: float) -> bool:
    s = subject_sharpness(r)
    return min_sharpness > 0 and s is not None and s < min_sharpness


def frame_score(r: FrameResult, median_sharpness: float, min_sharpness: float) -> tuple[bool, float]:
    """Higher is better: (not blurry, sharpness vs median (<= 2) x cos(yaw) / (1 + residual %))."""
    sharp = subject_sharpness(r)
    relative = min(sharp / median_sharpness, 2.0) if sharp is not None and median_sharpness > 0 else 1.0
    facing = r.subject.facing if r.subject is not None else None
    yaw = facing.yaw_deg if facing is not None else 0.0
    residual = r.transform.residual_pct if r.transform is not None else 0.0
    return (not is_blurry(r, min_sharpness), relative * math.cos(math.radians(min(abs(yaw), 89.0))) / (1 + residual))


def period_of(r: FrameResult, every: str) -> str:
    t = r.frame.taken_at
    if every == "day":
        return f"day {t:%Y-%m-%d}"
    if every == "week":
        year, week, _ = t.isocalendar()
        return f"week {year}-W{week:02d}"
    return f"month {t:%Y-%m}"


def _candidates(results: list[FrameResult], keep_turned: bool) -> list[FrameResult]:
    out = [r for r in results if is_kept(r, keep_turned, skipped=True)]
    return sorted(out, key=lambda r: r.frame.sort_key)


def _groups(frames: list[FrameResult], duplicate_bits: int | None, burst_seconds: float) -> list[list[int]]:
    """Indices (into date-ordered ``frames``) of near-duplicate / burst groups of two or more."""
    parent = list(range(len(frames)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_hash: dict[int, int] = {}
    for i, r in enumerate(frames):
        for j in range(max(0, i - NEIGHBOURS), i):
            o = frames[j]
            close = burst_seconds > 0 and abs((r.frame.taken_at - o.frame.taken_at).total_seconds()) <= burst_seconds
            if not close and duplicate_bits is not None and r.quality is not None and o.quality is not None:
                close = hamming(r.quality.dhash, o.quality.dhash) <= duplicate_bits
            if close:
                parent[root(i)] = root(j)
        if duplicate_bits is not None and r.quality is not None:  # exact duplicates however far apart
            first = by_hash.setdefault(r.quality.dhash, i)
            if first != i:
                parent[root(i)] = root(first)
    groups: dict[int, list[int]] = {}
    for i in range(len(frames)):
        groups.setdefault(root(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _pick(group: list[FrameResult], score) -> list[FrameResult]:
    accepted = [r for r in group if r.verdict is Verdict.ACCEPTED]
    if accepted:
        return accepted
    return [max(group, key=lambda r: (score(r), -group.index(r)))]


def skipped_frames(results: list[FrameResult], cfg, keep_turned: bool = False) -> dict[str, str]:
    """hash -> why it is skipped, for the ``[select]`` settings ``cfg``."""
    duplicate_bits = cfg.duplicate_bits if cfg.duplicates else None
    if duplicate_bits is None and cfg.burst_seconds <= 0 and cfg.every not in PERIODS:
        return {}  # the selection is off (the default): nothing to sort or score (10,000 frames: 0.05 s a pass)
    frames = _candidates(results, keep_turned)
    sharp = [s for s in map(subject_sharpness, frames) if s is not None]
    typical = float(median(sharp)) if sharp else 0.0

    def score(r: FrameResult):
        return frame_score(r, typical, cfg.min_sharpness)

    reasons: dict[str, str] = {}
    if duplicate_bits is not None or cfg.burst_seconds > 0:
        for indices in _groups(frames, duplicate_bits, cfg.burst_seconds):
            group = [frames[i] for i in indices]
            kept = _pick(group, score)
            for r in group:
                if r not in kept:
                    reasons[r.frame.hash] = f"near-duplicate of {kept[0].frame.path.name}"
    if cfg.every in PERIODS:
        periods: dict[str, list[FrameResult]] = {}
        for r in frames:
            if r.frame.hash not in reasons:
                periods.setdefault(period_of(r, cfg.every), []).append(r)
        for period, group in periods.items():
            kept = _pick(group, score)
            for r in group:
                if r not in kept:
                    reasons[r.frame.hash] = f"{period} keeps {kept[0].frame.path.name}"
    return reasons


def apply_selection(results: list[FrameResult], cfg, keep_turned: bool = False) -> None:
    """Mark the frames the selection leaves out ``skipped`` (with ``skip_reason``); an accepted frame
    is never skipped. Idempotent: a frame no longer skipped goes back to ``aligned``."""
    reasons = skipped_frames(results, cfg, keep_turned)
    aligned, skipped, accepted = FrameStatus.ALIGNED, FrameStatus.SKIPPED, Verdict.ACCEPTED
    can_skip = (aligned, skipped, FrameStatus.TURNED)
    for r in results:
        why = reasons.get(r.frame.hash) if reasons else None
        if why is not None and r.verdict is not accepted and r.status in can_skip:
            r.status, r.skip_reason = skipped, why
        else:
            if r.status is skipped:
                r.status = aligned
            r.skip_reason = None
