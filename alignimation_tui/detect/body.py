"""Body mode: BlazePose (``detect.blazepose``: person detector, 33 pose landmarks and a person mask,
from weights that ship with the package), which side's keypoints to use, which person is the
subject, person masks at the registration resolution.

Coordinates are upright original pixels, continuous (a pixel's centre is at +0.5). Masks cover the
whole upright original at ``mask_size`` pixels on the long side, as uint8 (255 = surely the person).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..domain import BodyDetection, Person
from ..photos import Decoded
from .blazepose import LANDMARK_FILE, POINT_NAMES, BlazePose

DETECTOR_ID = f"blazepose-0.10.21:{LANDMARK_FILE}:2pass"
# The parts the config can name, as left/right pairs (COCO's 17 names); BlazePose numbers them its
# own way, so each is looked up by name.
KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
                  "left_knee", "right_knee", "left_ankle", "right_ankle")
_BLAZE_INDEX = np.array([POINT_NAMES.index(n) for n in KEYPOINT_NAMES])
MAX_PERSONS = 4


def mask_shape(width: int, height: int, mask_size: int) -> tuple[int, int]:
    """(rows, cols) of a mask covering a ``width`` x ``height`` photo at ``mask_size`` long side."""
    s = mask_size / max(width, height)
    return max(1, round(height * s)), max(1, round(width * s))


def person_of(pose, width: int, height: int, scale_xy: tuple[float, float], mask_index: int) -> Person:
    """A BlazePose pose (in decoded pixels) as a ``Person`` in the ``width`` x ``height`` original's
    pixels: the 17 named keypoints, each scored by the lower of its visibility and presence logits
    (a point outside the photo has a low presence), their depth, and the box of its mask (of its
    sure points without one)."""
    sx, sy = scale_xy
    pts = pose.points[_BLAZE_INDEX]
    xy = pts[:, :2] / [sx, sy]
    scores = np.minimum(pts[:, 3], pts[:, 4])
    rows, cols = pose.mask.shape
    ys, xs = np.nonzero(pose.mask >= 0.5)
    if len(xs):
        cw, ch = width / cols, height / rows
        box = (xs.min() * cw, ys.min() * ch, (xs.max() + 1) * cw, (ys.max() + 1) * ch)
    else:
        sure = xy[scores >= 0] if np.any(scores >= 0) else xy
        box = (*sure.min(0), *sure.max(0))
    return Person(box=tuple(float(v) for v in box), score=pose.score,
                  keypoints=tuple((float(x), float(y)) for x, y in xy),
                  keypoint_scores=tuple(float(s) for s in scores), mask_index=mask_index,
                  keypoint_z=tuple(float(v) for v in pts[:, 2] / sx))


FACE_POINTS = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")  # MTCNN's order: image-left first
_FACE_INDEX = np.array([POINT_NAMES.index(n) for n in FACE_POINTS])
MIN_FACE_EYES = 12.0  # decoded pixels between the eyes: below this a face is too small to describe
FRONTAL = 0.5  # eye distance over eye-to-mouth distance at least this: a face seen from the front


def face_points(pose) -> np.ndarray | None:
    """(5, 2) decoded pixels of a pose's face in MTCNN's order, when it is seen from the front,
    surely and large enough to be described (identity); None otherwise (a profile, a back)."""
    pts = pose.points[_FACE_INDEX]
    if np.minimum(pts[:, 3], pts[:, 4]).min() < 2.0:
        return None
    eyes = float(np.linalg.norm(pts[0, :2] - pts[1, :2]))
    eye_to_mouth = float(np.linalg.norm((pts[0, :2] + pts[1, :2]) / 2 - (pts[3, :2] + pts[4, :2]) / 2))
    if eyes < MIN_FACE_EYES or eyes < FRONTAL * eye_to_mouth:
        return None
    return pts[:, :2]


class BodyDetector:
    """BlazePose on decoded photos, one at a time (the TFLite runtime spreads each over the cores).
    Every person it finds is kept (surest first, at most ``MAX_PERSONS``); the score thresholds
    apply when choosing the subject, so changing them needs no new detection."""

    def __init__(self, mask_size: int, model: BlazePose | None = None, describer=None):
        self.model = model or BlazePose(max_persons=MAX_PERSONS)
        self.mask_size = mask_size
        # The face descriptor (``models.load_face_embedder``'s), or a callable that loads it when
        # a face is first seen from the front (a series of side views never needs it), or None.
        self.describer = describer
        self.calls = 0  # photos passed to the model, for tests and benchmarks
        self.faces: np.ndarray | None = None  # the last photo's (P, 128) face descriptors, NaN: no face seen

    def detect(self, photos: list[Decoded]) -> list[tuple[BodyDetection, np.ndarray]]:
        return [self.detect_one(p) for p in photos]

    def detect_one(self, photo: Decoded) -> tuple[BodyDetection, np.ndarray]:
        self.calls += 1
        rgb = Decoded.upright_array(photo.array(), photo.orientation)
        rows, cols = mask_shape(photo.width, photo.height, self.mask_size)
        poses = self.model.detect(rgb, (rows, cols))
        persons = tuple(person_of(p, photo.width, photo.height, photo.scale_xy, i) for i, p in enumerate(poses))
        masks = (np.stack([(p.mask * 255).round().astype(np.uint8) for p in poses]) if poses
                 else np.zeros((0, rows, cols), np.uint8))
        self.faces = self._describe(rgb, poses) if self.describer is not None else None
        return BodyDetection(photo.width, photo.height, persons), masks

    def _describe(self, rgb: np.ndarray, poses) -> np.ndarray:
        from .dlib_dat import face_chip

        out = np.full((len(poses), 128), np.nan, np.float32)
        seen = [(k, face_points(p)) for k, p in enumerate(poses)]
        seen = [(k, pts) for k, pts in seen if pts is not None]
        if seen:
            if not hasattr(self.describer, "embed"):
                self.describer = self.describer()
            vectors = self.describer.embed(np.stack([face_chip(rgb, pts) for _, pts in seen]))
            for (k, _), v in zip(seen, vectors):
                out[k] = v
        return out


# -- which keypoints --------------------------------------------------------------------------------

SIDES = ("auto", "left", "right", "both")
# Shoulders at least this far apart, in torso lengths, is a photo taken from the front (or the
# back): both sides are in view, and their middle is steadier than either side. A side view's
# shoulders are a few percent of the torso apart (BlazePose on the samples: 0.02-0.07 side, 0.7 front).
FRONT_RATIO = 0.35


def _point(person: Person, name: str) -> np.ndarray:
    return np.asarray(person.keypoints[KEYPOINT_NAMES.index(name)], np.float64)


def choose_side(person: Person, parts: list[str], wanted: str = "auto") -> tuple[str, str]:
    """(side, why): ``wanted`` unless it is "auto". A photo from the front: "both" (each part the
    middle of its left and right keypoints). A side view: the side nearer the camera (BlazePose's
    depth: its visibilities are high on both sides, the far side's points being guessed)."""
    if wanted != "auto":
        return wanted, "body.side"
    mid = lambda part: (_point(person, f"left_{part}") + _point(person, f"right_{part}")) / 2  # noqa: E731
    shoulders = mid("shoulder")
    torso = max(float(np.linalg.norm(mid("hip") - shoulders)),
                2.0 * float(np.linalg.norm(_point(person, "nose") - shoulders)), 1e-6)
    apart = float(np.linalg.norm(_point(person, "left_shoulder") - _point(person, "right_shoulder"))) / torso
    if apart >= FRONT_RATIO:
        return "both", f"facing: shoulders {apart:.2f} torso apart"
    sided = [p for p in parts if p != "nose"] or ["shoulder"]
    if person.keypoint_z:
        depth = {side: np.mean([person.keypoint_z[KEYPOINT_NAMES.index(f"{side}_{p}")] for p in sided])
                 for side in ("left", "right")}
        near = "left" if depth["left"] <= depth["right"] else "right"
        return near, f"{near} nearer the camera"
    score = {side: sum(person.keypoint_scores[KEYPOINT_NAMES.index(f"{side}_{p}")] for p in sided)
             for side in ("left", "right")}
    near = "left" if score["left"] >= score["right"] else "right"
    return near, f"{near} surer"


def _part(person: Person, part: str, side: str) -> tuple[np.ndarray, float]:
    """One part's point and score on ``side`` ("both": the middle of the two, the lower score)."""
    if part == "nose":
        i = KEYPOINT_NAMES.index("nose")
        return np.asarray(person.keypoints[i], np.float64), person.keypoint_scores[i]
    if side == "both":
        (a, sa), (b, sb) = _part(person, part, "left"), _part(person, part, "right")
        return (a + b) / 2, min(sa, sb)
    i = KEYPOINT_NAMES.index(f"{side}_{part}")
    return np.asarray(person.keypoints[i], np.float64), person.keypoint_scores[i]


def subject_points(person: Person, parts: list[str], weights: list[float], side: str,
                   min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) points and (K,) weights for the configured parts on ``side``; a keypoint scoring below
    ``min_score`` is NaN with weight 0 (ignored by the fit and the refinement)."""
    pts = np.full((len(parts), 2), np.nan)
    w = np.zeros(len(parts))
    for k, part in enumerate(parts):
        point, score = _part(person, part, side)
        if score >= min_score:
            pts[k] = point
            w[k] = weights[k]
    return pts, w


# -- which person ---------------------------------------------------------------------------------

GRID = 48  # masks are compared on a GRID x GRID grid over the whole photo


@dataclass(frozen=True)
class PersonShape:
    """Where a person is in a photo, independent of its size in pixels."""

    centre: np.ndarray  # (x, y) in fractions of the photo's width and height
    height: float  # box height, fraction of the photo's height
    grid: np.ndarray | None  # (GRID, GRID) soft mask in [0, 1] over the photo, None without a mask


def person_shape(det: BodyDetection, person: Person, masks: np.ndarray | None) -> PersonShape:
    cx, cy = person.centre
    grid = None
    if masks is not None and 0 <= person.mask_index < len(masks):
        img = Image.fromarray(masks[person.mask_index]).resize((GRID, GRID), Image.Resampling.BILINEAR)
        grid = np.asarray(img, np.float32) / 255.0
    return PersonShape(np.array([cx / det.width, cy / det.height]),
                       max(person.box[3] - person.box[1], 1.0) / det.height, grid)


def match_cost(a: PersonShape, b: PersonShape) -> float:
    """0 for the same place, size and outline; grows with distance (fractions of the frame), size
    ratio (log) and lack of mask overlap (1 - soft IoU; 0.5 when a mask is missing)."""
    position = float(np.linalg.norm(a.centre - b.centre))
    size = abs(math.log(a.height / b.height))
    if a.grid is not None and b.grid is not None:
        union = float(np.maximum(a.grid, b.grid).sum())
        overlap = 1.0 - (float(np.minimum(a.grid, b.grid).sum()) / union if union > 0 else 0.0)
    else:
        overlap = 0.5
    return 2.0 * position + size + overlap


def prominent_person(det: BodyDetection, candidates: list[int]) -> int | None:
    """In the reference photo: the largest candidate (by box area), the person the photo is of."""
    if not candidates:
        return None
    area = lambda p: (p.box[2] - p.box[0]) * (p.box[3] - p.box[1])  # noqa: E731
    return max(candidates, key=lambda i: area(det.persons[i]))


def choose_person(det: BodyDetection, masks: np.ndarray | None, candidates: list[int],
                  reference: PersonShape) -> tuple[int | None, float]:
    """The candidate that best matches the reference's person (not the first or surest detection)."""
    best, best_cost = None, math.inf
    for i in candidates:
        cost = match_cost(person_shape(det, det.persons[i], masks), reference)
        if cost < best_cost:
            best, best_cost = i, cost
    return best, best_cost


# -- masks at the registration's working resolution ------------------------------------------------

def resample_mask(mask: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Sample a uint8 mask through ``matrix`` (mask pixel coordinates -> output coordinates, both
    with pixel centres at integers) onto ``size`` = (width, height); float32 in [0, 1], 0 outside."""
    inv = np.linalg.inv(matrix)
    # PIL evaluates output pixel x at x + 0.5 and reads input at that continuous point; shift both.
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    m = shift @ inv @ np.linalg.inv(shift)
    out = Image.fromarray(mask).transform(size, Image.Transform.AFFINE, data=tuple(m[:2].ravel()),
                                          resample=Image.Resampling.BILINEAR, fillcolor=0)
    return np.asarray(out, np.float32) / 255.0


def working_mask(mask: np.ndarray, width: int, height: int, scale: float, size: tuple[int, int]) -> np.ndarray:
    """A photo's mask on a working grid where a point of the original at (x, y) is at
    (x, y) * ``scale`` (the registration's convention), ``size`` = (width, height) of the grid."""
    rows, cols = mask.shape
    # mask pixel index i has continuous coordinate i + 0.5 = original * cols / width
    to_original = np.array([[width / cols, 0, 0.5 * width / cols], [0, height / rows, 0.5 * height / rows],
                            [0, 0, 1.0]])
    return resample_mask(mask, np.diag([scale, scale, 1.0]) @ to_original, size)
