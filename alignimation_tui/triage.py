"""What the triage table shows: one plain row per photo, outlier flags, filters and counts.

Pure functions over ``FrameResult``s, so the TUI only displays what this module computes (and the
tests can check it without a screen). No Textual here.
"""
from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .curate import is_blurry, subject_sharpness
from .domain import FacingScores, FrameResult, FrameStatus, Verdict, kept_property
from .medians import median
from .names import printable

FILTERS = ("all", "flagged", "rejected", "failed")
# A robust z-score (median / MAD) beyond this marks a value as far from the rest.
OUTLIER_Z = 3.5
# ...but a residual under this (% of canvas height) is never worth a look, however the rest are.
RESIDUAL_FLOOR_PCT = 1.0
RATIO_FLOOR = 0.1


@dataclass(frozen=True)
class FrameRow:
    """One table row, already formatted. ``flag`` is a short reason, "" when nothing is odd."""

    hash: str
    name: str
    date: str
    status: str
    verdict: str
    eye: str
    mouth: str
    confidence: str
    residual: str
    flag: str
    sharpness: str = ""
    # raw values, for sorting
    sort_values: tuple = ()
    residual_pct: float | None = None  # for the series plot under the table
    outlier: str = ""  # the ⚑ part of the flag alone
    side: str = ""  # body mode: the side registered and why ("left nearer the camera")
    identity: str = ""  # face mode: the face's distance from the subject's identity ("" when not measured)

    def cells(self) -> dict[str, str]:
        """Cell values in column order (the table adds rows in this order)."""
        return {key: getattr(self, key) for key, _, _ in COLUMNS}

    def cell_values(self) -> tuple[str, ...]:
        """The values of ``cells``, in column order, in one call."""
        return _cell_values(self)

    @kept_property
    def series_key(self) -> tuple:
        """Its place in the residual series (date, then name): made once per row (the series is
        put in order whenever rows change, 10,000 of them)."""
        return self.sort_values[1:2] + (self.name,)


# key, header, fixed width (None: as wide as the content). The most useful first: on a narrow
# terminal the columns on the right are the ones scrolled out of view. The short columns come
# before the flag, which is mostly empty (a reason where there is one; the preview's caption says it
# whole), so at 160x48 the date, eye, mouth, confidence and identity are all in view. The flag's 30
# is its most: the app gives it the width of its longest flag (tui.cells.FlagWidth).
# Widths leave room for the sort mark (▲ ▼) after the header.
COLUMNS = (("name", "photo", None), ("status", "status", 10), ("verdict", "verdict", 8),
           ("residual", "resid%", 7), ("sharpness", "sharp", 6), ("date", "date", 10), ("eye", "eye", 4),
           ("mouth", "mouth", 6), ("confidence", "conf", 5), ("identity", "ident", 5), ("flag", "flag", 30),
           ("side", "side", None))


_cell_values = operator.attrgetter(*(key for key, _, _ in COLUMNS))
_series_key = operator.attrgetter("series_key")


def next_sort_column(current: str, visible: list[str], chosen: bool) -> str:
    """The column `s` sorts by next: the columns in view after the photo, in order, then those out
    of view (on a narrow terminal the date and the flag are), then the photo itself: every sort is
    reachable. The first `s` (``chosen`` False: the table is in its default date order) takes the
    first column in view after the photo, not whatever follows the default."""
    order = [key for key, _, _ in COLUMNS]
    cycle = [k for k in order[1:] if k in visible] + [k for k in order[1:] if k not in visible] + [order[0]]
    if not chosen or current not in cycle:
        return cycle[0]
    return cycle[(cycle.index(current) + 1) % len(cycle)]


def _robust_outliers(keys: list[str], values, floor: float, high_only: bool) -> set[str]:
    """The keys whose value is far from the median in units of the MAD; differences below ``floor``
    never count (a tight set would otherwise flag a photo for a hair's difference). In one pass of
    arrays (every frame's flags are made again whenever one photo arrives)."""
    if len(values) < 5:
        return set()
    arr = np.array(values, np.float64)
    med = float(median(arr))
    mad = float(median(np.abs(arr - med))) * 1.4826
    d = arr - med if high_only else np.abs(arr - med)
    far = d > floor
    if mad != 0:
        far &= d / mad > OUTLIER_Z
    return {keys[k] for k in np.flatnonzero(far)}


def _flag_values(r: FrameResult) -> tuple[float, float, float, float]:
    """What ``outlier_flags`` judges of one aligned frame: its residual, whether it has facing
    scores (1.0; body mode has none) and their eye and mouth ratios (0.0 without)."""
    s = r.subject.facing
    if s is None:
        return float(r.transform.residual_pct), 0.0, 0.0, 0.0
    return float(r.transform.residual_pct), 1.0, float(s.eye_ratio), float(s.mouth_ratio)


def outlier_flags(results: list[FrameResult], min_sharpness: float = 0.0) -> dict[str, str]:
    """hash -> reason for frames whose residual or facing scores are far from the rest, or whose
    face is blurrier than ``min_sharpness`` (``select.min_sharpness``). Each frame's values are
    kept with its fit (``FrameResult.of_fit``) and judged as one array: every frame's flags are
    made again whenever one photo arrives."""
    aligned = [r for r in results if r.transform is not None and r.subject is not None]
    if not aligned:
        return {}
    hashes = [r.frame.hash for r in aligned]
    values = np.array([r.of_fit("flag_values", _flag_values) for r in aligned], np.float64)
    residual = _robust_outliers(hashes, values[:, 0], RESIDUAL_FLOOR_PCT, high_only=True)
    faces = np.flatnonzero(values[:, 1])
    keys = [hashes[k] for k in faces] if len(faces) < len(hashes) else hashes
    eye = _robust_outliers(keys, values[faces, 2], RATIO_FLOOR, False)
    mouth = _robust_outliers(keys, values[faces, 3], RATIO_FLOOR, False)
    blurry = {r.frame.hash for r in aligned if is_blurry(r, min_sharpness)} if min_sharpness > 0 else set()
    flags = {}
    for h in residual | eye | mouth | blurry:
        why = [w for w, s in (("residual", residual), ("eyes", eye), ("mouth", mouth), ("blurry", blurry)) if h in s]
        flags[h] = "⚑ " + ",".join(why)
    return {h: flags[h] for h in hashes if h in flags} if flags else {}  # (in frame order)


def _num(v: float | None, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def _scores(r: FrameResult) -> FacingScores | None:
    return r.subject.facing if r.subject is not None else None


def _confidence(r: FrameResult) -> float | None:
    """The subject's detection score (a face's probability, a person's score)."""
    return r.subject.confidence if r.subject is not None else None


NUDGE_MARK = "✥ nudged"
SKIP_MARK = "⊘"
OUTLIER_MARK = "⚑ outlier:"
UNSURE_MARK = "⚑ unsure:"  # flagged, kept: the fit looks doubtful but not wrong
STRANGER_MARK = "≠"


def flag_text(r: FrameResult, outlier: str = "") -> str:
    """The flag column: an outlier reason (⚑), why it failed (✗) or was skipped (⊘), and a mark
    for a frame the person nudged."""
    parts = [outlier] if outlier else []
    if r.status is FrameStatus.OUTLIER and r.outlier_reason:
        parts.insert(0, f"{OUTLIER_MARK} {printable(r.outlier_reason)}")
    elif r.doubts and r.status in (FrameStatus.ALIGNED, FrameStatus.SKIPPED):
        parts.insert(0, f"{UNSURE_MARK} {printable(r.doubts)}")
    if r.error and r.status is FrameStatus.FAILED:
        parts.append(f"✗ {printable(r.error)}")
    elif r.error and r.status is FrameStatus.STRANGER:
        parts.insert(0, f"{STRANGER_MARK} {printable(r.error)}")
    elif r.status is FrameStatus.SKIPPED and r.skip_reason:
        parts.append(f"{SKIP_MARK} {printable(r.skip_reason)}")
    if r.nudge is not None and not r.nudge.is_identity:
        parts.append(NUDGE_MARK)
    return " ".join(parts)


def with_nudge_mark(flag: str, nudged: bool) -> str:
    """``flag`` (a row's flag column) with the nudge's mark set or cleared."""
    plain = flag.replace(NUDGE_MARK, "").strip()
    if not nudged:
        return plain
    return f"{plain} {NUDGE_MARK}" if plain else NUDGE_MARK


def frame_row(r: FrameResult, flag: str = "") -> FrameRow:
    s = _scores(r)
    conf = _confidence(r)
    resid = r.transform.residual_pct if r.transform else None
    sharp = subject_sharpness(r)
    status = r.status.value
    outlier, flag = flag, flag_text(r, flag)
    return FrameRow(
        hash=r.frame.hash, name=printable(r.frame.name), date=r.frame.taken_at.strftime("%Y-%m-%d"),
        status=status, verdict=r.verdict.value,
        eye=_num(s.eye_ratio if s else None, ".2f"), mouth=_num(s.mouth_ratio if s else None, ".2f"),
        confidence=_num(conf, ".3f"), residual=_num(resid, ".2f"), flag=flag,
        sharpness="" if sharp is None else f"{min(sharp, 99999):.0f}",
        sort_values=(r.frame.name.lower(), r.frame.taken_at, status, r.verdict.value,
                     -1.0 if s is None else s.eye_ratio, -1.0 if s is None else s.mouth_ratio,
                     -1.0 if conf is None else conf, -1.0 if resid is None else resid, flag,
                     -1.0 if sharp is None else sharp),
        residual_pct=resid, outlier=outlier, side=_side(r),
        identity=_num(getattr(r.subject, "identity_distance", None), ".2f"))


def _side(r: FrameResult) -> str:
    """Body mode: which side's keypoints register the person, and why; "" elsewhere."""
    side, why = getattr(r.subject, "side", None), getattr(r.subject, "side_reason", "")
    if side is None:
        return ""
    return printable(why if why.startswith(side) else f"{side} ({why})" if why else side)


def frame_rows(results: list[FrameResult], min_sharpness: float = 0.0) -> list[FrameRow]:
    flags = outlier_flags(results, min_sharpness)
    return [frame_row(r, flags.get(r.frame.hash, "")) for r in results]


def is_flagged(row: FrameRow) -> bool:
    return row.flag.startswith(("⚑", STRANGER_MARK)) or row.status in (
        FrameStatus.FAILED.value, FrameStatus.NO_SUBJECT.value, FrameStatus.TURNED.value, FrameStatus.OUTLIER.value,
        FrameStatus.STRANGER.value)


def matches(row: FrameRow, which: str) -> bool:
    if which == "flagged":
        return is_flagged(row)
    if which == "rejected":
        return row.verdict == Verdict.REJECTED.value
    if which == "failed":
        return row.status == FrameStatus.FAILED.value
    return True


def status_counts(rows: list[FrameRow]) -> dict[str, int]:
    return counts_by_status(Counter(r.status for r in rows))


def counts_by_status(counts: Counter) -> dict[str, int]:
    """The rows per status (``counts``: status -> rows), in the statuses' order, those with none left out."""
    return {s.value: counts[s.value] for s in FrameStatus if counts.get(s.value)}


SPARK_BARS = "▁▂▃▄▅▆▇█"


def residual_order(rows: list[FrameRow]) -> list[FrameRow]:
    """The rows with a residual, in date order: what ``residual_bars`` draws."""
    return sorted((r for r in rows if r.residual_pct is not None), key=_series_key)


def residual_bars(ordered: list[FrameRow], width: int) -> tuple[str, float]:
    """Bars for the residual of every aligned frame in date order (``ordered``: ``residual_order``'s),
    squeezed into ``width`` columns (a column shows the worst of the frames it covers, so an outlier
    is never hidden), and the value of a full bar."""
    n = len(ordered)
    if n == 0 or width <= 0:
        return "", 0.0
    cols = min(n, width)
    top = max(max(r.residual_pct for r in ordered), 1e-9)
    bars = []
    for c in range(cols):
        chunk = ordered[c * n // cols:max(c * n // cols + 1, (c + 1) * n // cols)]
        worst = max(r.residual_pct for r in chunk)
        bars.append(SPARK_BARS[min(len(SPARK_BARS) - 1, round(worst / top * (len(SPARK_BARS) - 1)))])
    return "".join(bars), top


def marked_column(index: int | None, n: int, width: int) -> int | None:
    """The column of the ``index``-th of ``n`` ordered rows squeezed into ``width`` columns."""
    return None if index is None or n == 0 or width <= 0 else index * min(n, width) // n
