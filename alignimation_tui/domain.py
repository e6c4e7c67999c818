"""Small value types shared by every stage. No I/O, no heavy imports."""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .borders import PictureBox

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in upright photo pixels


class FrameStatus(str, enum.Enum):
    QUEUED = "queued"
    DETECTING = "detecting"
    ALIGNED = "aligned"
    TURNED = "turned"
    NO_SUBJECT = "no_subject"
    FAILED = "failed"
    SKIPPED = "skipped"  # aligned, but left out by the selection ([select]); the reason is kept
    OUTLIER = "outlier"  # registered, but implausibly for the series (outliers.py); the reason is kept
    STRANGER = "stranger"  # registered, but another person than the subject (identity); the reason in ``error``


class Verdict(str, enum.Enum):
    AUTO = "auto"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class kept_property:
    """A value computed from a frozen object on its first read and kept in the object (as
    ``functools.cached_property``, without the lock Python 3.11's takes on every first read: 10,000
    frames' sort keys took 0.1 s). Not a field: equality, hashing and ``replace`` ignore it."""

    def __init__(self, compute):
        self.compute, self.name, self.__doc__ = compute, compute.__name__, compute.__doc__

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.compute(obj)  # read from the object's dict from now on
        return value


@dataclass(frozen=True)
class FrameQuality:
    """Measured on the picture detection decoded (see ``curate``): stored with the detection."""

    dhash: int  # 64-bit difference hash of the whole photo
    sharpness: tuple[float, ...]  # per detected candidate (face), in detection order

    def to_json(self) -> dict:
        return {"dhash": f"{self.dhash:016x}", "sharpness": [round(s, 2) for s in self.sharpness]}

    @classmethod
    def from_json(cls, d: dict) -> "FrameQuality":
        return cls(int(d["dhash"], 16), tuple(float(s) for s in d["sharpness"]))


@dataclass(frozen=True)
class Frame:
    """One photo on disk, identified by the hash of its bytes."""

    path: Path
    hash: str
    taken_at: datetime
    date_source: str  # "exif", "name" or "mtime"
    file_size: int

    @kept_property
    def name(self) -> str:
        """The photo's file name (asked for every frame whenever one photo arrives: kept)."""
        return self.path.name

    @kept_property
    def sort_key(self) -> tuple:
        return (self.taken_at, self.name)


@dataclass(frozen=True)
class Face:
    """One detected face, in pixels of the upright (EXIF-rotated) original."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    prob: float
    landmarks: tuple[tuple[float, float], ...]  # left eye, right eye, nose, mouth left, mouth right

    @property
    def size(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, y1 - y0)

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2, (y0 + y1) / 2)

    def to_json(self) -> dict:
        return {"box": list(self.box), "prob": self.prob, "landmarks": [list(p) for p in self.landmarks]}

    @classmethod
    def from_json(cls, d: dict) -> "Face":
        return cls(
            box=tuple(map(float, d["box"])),
            prob=float(d["prob"]),
            landmarks=tuple((float(x), float(y)) for x, y in d["landmarks"]),
        )


@dataclass(frozen=True)
class FaceDetection:
    """Every face in one photo, and the upright size of that photo in pixels."""

    width: int
    height: int
    faces: tuple[Face, ...]

    def to_json(self) -> dict:
        return {"width": self.width, "height": self.height, "faces": [f.to_json() for f in self.faces]}

    @classmethod
    def from_json(cls, d: dict, landmarks: list | None = None) -> "FaceDetection":
        """``landmarks``: each face's landmarks instead of the stored ones ((x, y) pairs per face, one
        list per face, as many as there are faces): the faces are made once, with them."""
        if landmarks is None:
            return cls(int(d["width"]), int(d["height"]), tuple(Face.from_json(f) for f in d["faces"]))
        return cls(int(d["width"]), int(d["height"]),
                   tuple(Face(tuple(map(float, f["box"])), float(f["prob"]), tuple(map(tuple, lm)))
                         for f, lm in zip(d["faces"], landmarks, strict=True)))

    @property
    def boxes(self) -> tuple[Box, ...]:
        return tuple(f.box for f in self.faces)


@dataclass(frozen=True)
class FacingScores:
    """How squarely the face looks at the camera. Ratios are 1.0 for a perfectly frontal face."""

    eye_ratio: float
    mouth_ratio: float
    yaw_deg: float

    def to_json(self) -> dict:
        return {"eye_ratio": round(self.eye_ratio, 4), "mouth_ratio": round(self.mouth_ratio, 4),
                "yaw_deg": round(self.yaw_deg, 2)}


@dataclass(frozen=True)
class Subject:
    """The face chosen as the person in one photo (``modes.base.Subject`` is what the rest of the
    program may read of it)."""

    face_index: int
    face: Face
    scores: FacingScores
    identity_distance: float | None  # None when identity matching is off

    @property
    def index(self) -> int:
        return self.face_index

    @property
    def box(self) -> Box:
        return self.face.box

    @property
    def confidence(self) -> float:
        return self.face.prob

    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        return self.face.landmarks

    @property
    def facing(self) -> FacingScores:
        return self.scores

    @property
    def pivot(self) -> tuple[tuple[float, float], ...]:
        """The eyes: the nudge turns and zooms about their midpoint, in units of their distance."""
        return self.face.landmarks[:2]


FaceSubject = Subject


@dataclass(frozen=True)
class Transform:
    """3x3 matrix from upright original pixels to output canvas pixels."""

    matrix: tuple[tuple[float, float, float], ...]
    canvas: tuple[int, int]  # width, height
    residual_pct: float

    def to_json(self) -> dict:
        return {"matrix": [list(r) for r in self.matrix], "canvas": list(self.canvas),
                "residual_pct": self.residual_pct}

    @classmethod
    def from_json(cls, d: dict) -> "Transform":
        return cls(tuple(tuple(map(float, r)) for r in d["matrix"]),
                   (int(d["canvas"][0]), int(d["canvas"][1])), float(d["residual_pct"]))


@dataclass
class FrameResult:
    """Everything the front ends show about one photo; mutable as work progresses."""

    frame: Frame
    status: FrameStatus = FrameStatus.QUEUED
    verdict: Verdict = Verdict.AUTO
    detection: FaceDetection | BodyDetection | None = None
    subject: Subject | BodySubject | None = None
    transform: Transform | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)
    quality: FrameQuality | None = None  # sharpness per face and the photo's hash (curate.py)
    skip_reason: str | None = None  # why the selection left it out (status skipped)
    nudge: Nudge | None = None  # the person's correction (nudge.py), from the decisions file
    outlier_reason: str | None = None  # why the fit looks implausible (status outlier; outliers.py)
    unsure_reason: str | None = None  # why the fit looks doubtful, though kept (status aligned; outliers.py)
    identity_doubt: str | None = None  # kept, but the face is not surely the subject's (identity.doubt_distance)

    @property
    def doubts(self) -> str | None:
        """Every reason to look at this kept frame again ("" parts left out), or None."""
        return "; ".join(d for d in (self.identity_doubt, self.unsure_reason) if d) or None

    def of_fit(self, name: str, measure):
        """``measure(self)``, kept in ``extra`` with the transform and subject objects it was
        measured from (both frozen): after one new photo among thousands, the others' fits are the
        same objects and what is measured from them is not measured again."""
        kept = self.extra.get(name)
        if kept is not None and kept[0] is self.transform and kept[1] is self.subject:
            return kept[2]
        value = measure(self)
        self.extra[name] = (self.transform, self.subject, value)
        return value
    picture: PictureBox | None = None  # the photo without its flat borders (borders.py); None: not found yet



def is_kept(r: FrameResult, keep_turned: bool = False, skipped: bool = False) -> bool:
    """The one rule for whether a frame goes into the animation: registered, not rejected, and
    accepted, aligned, or turned with ``facing.keep_turned``. ``skipped``: as the selection sees the
    frames (one it skipped before counts as aligned, since the selection decides again)."""
    # (The members as module names: an enum member looked up on its class costs 0.13 us here, and
    # this is asked of every frame whenever one photo arrives.)
    verdict = r.verdict
    if r.transform is None or verdict is _REJECTED:
        return False
    if verdict is _ACCEPTED or r.status is _ALIGNED:
        return True
    return (keep_turned and r.status is _TURNED) or (skipped and r.status is _SKIPPED)


_REJECTED, _ACCEPTED = Verdict.REJECTED, Verdict.ACCEPTED
_ALIGNED, _TURNED, _SKIPPED = FrameStatus.ALIGNED, FrameStatus.TURNED, FrameStatus.SKIPPED


@dataclass(frozen=True)
class Person:
    """One person found in body mode, in pixels of the upright original. ``keypoints``: the 17 COCO
    names' keypoints (x, y), in COCO's order; ``keypoint_scores``: how sure each is, a logit (BlazePose:
    the lower of its visibility and presence logits; 2 and above is a confident point);
    ``keypoint_z``: each one's depth in pixels, smaller nearer the camera (empty when unknown);
    ``mask_index``: this person's soft mask in the stored mask array, or -1 without one."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: tuple[tuple[float, float], ...]
    keypoint_scores: tuple[float, ...]
    mask_index: int = -1
    keypoint_z: tuple[float, ...] = ()

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2, (y0 + y1) / 2)

    def to_json(self) -> dict:
        return {"box": [round(v, 2) for v in self.box], "score": round(self.score, 4),
                "keypoints": [[round(x, 2), round(y, 2)] for x, y in self.keypoints],
                "keypoint_scores": [round(s, 3) for s in self.keypoint_scores], "mask_index": self.mask_index,
                "keypoint_z": [round(z, 2) for z in self.keypoint_z]}

    @classmethod
    def from_json(cls, d: dict) -> "Person":
        return cls(tuple(float(v) for v in d["box"]), float(d["score"]),
                   tuple((float(x), float(y)) for x, y in d["keypoints"]),
                   tuple(float(s) for s in d["keypoint_scores"]), int(d["mask_index"]),
                   tuple(float(z) for z in d.get("keypoint_z", ())))


@dataclass(frozen=True)
class BodyDetection:
    """Every person in one photo (most confident first) and the upright size of that photo."""

    width: int
    height: int
    persons: tuple[Person, ...]

    def to_json(self) -> dict:
        return {"width": self.width, "height": self.height, "persons": [p.to_json() for p in self.persons]}

    @classmethod
    def from_json(cls, d: dict) -> "BodyDetection":
        return cls(int(d["width"]), int(d["height"]), tuple(Person.from_json(p) for p in d["persons"]))

    @property
    def boxes(self) -> tuple[Box, ...]:
        return tuple(p.box for p in self.persons)


@dataclass(frozen=True)
class BodySubject:
    """The person chosen in one photo (body mode) and the keypoints that register it.

    ``points``: (x, y) per configured keypoint on the chosen ``side``, NaN where it is missing or
    below the score threshold; ``weights``: the configured weight, 0 where it is missing."""

    person_index: int
    person: Person
    side: str  # "left", "right" or "both" (each part the middle of its two sides)
    points: tuple[tuple[float, float], ...]
    weights: tuple[float, ...]
    match_cost: float  # how far from the reference's person (0 = same place, size and outline)
    side_reason: str = ""  # why that side: "left nearer the camera", "facing: shoulders 0.71 torso apart"
    identity_distance: float | None = None  # the face's distance from the subject's, where a face was seen

    @property
    def index(self) -> int:
        return self.person_index

    @property
    def box(self) -> Box:
        return self.person.box

    @property
    def confidence(self) -> float:
        return self.person.score

    @property
    def facing(self) -> None:
        return None

    @property
    def pivot(self) -> tuple[tuple[float, float], ...] | None:
        """The two registered keypoints farthest apart; None with fewer than two."""
        return farthest_pair(self.points)


def farthest_pair(points) -> tuple[tuple[float, float], ...] | None:
    """The two finite points of ``points`` farthest apart, or None with fewer than two."""
    import numpy as np

    pts = np.asarray(points, np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) < 2:
        return None
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    i, j = np.unravel_index(np.argmax(d), d.shape)
    return tuple(map(tuple, pts[[i, j]].tolist()))


# -- the person's manual correction of a frame (its use: nudge.py) ---------------------------------

# (move in inter-ocular distances, rotation in degrees, scale step as a fraction)
NUDGE_STEPS = {"coarse": (0.05, 1.0, 0.02), "fine": (0.01, 0.2, 0.004)}
NUDGE_LIMITS = {"shift": 2.0, "angle": 45.0, "scale": (0.5, 2.0)}


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
        move, turn, zoom = NUDGE_STEPS[size]
        lim = NUDGE_LIMITS
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
