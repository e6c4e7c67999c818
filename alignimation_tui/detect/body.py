"""Body mode: Mask R-CNN (soft person masks) and Keypoint R-CNN (17 COCO keypoints), batched; which
side's keypoints to use; which person is the subject; person masks at the registration resolution.

Coordinates are upright original pixels, continuous (a pixel's centre is at +0.5). Masks cover the
whole upright original at ``mask_size`` pixels on the long side, as uint8 (255 = surely the person).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..domain import BodyDetection, Person
from ..models import KEYPOINT_DETECTOR, PERSON_SEGMENTER
from ..photos import Decoded

DETECTOR_ID = f"{PERSON_SEGMENTER.filename}+{KEYPOINT_DETECTOR.filename}"
KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
                  "left_knee", "right_knee", "left_ankle", "right_ankle")
PERSON_LABEL = 1  # COCO's "person" in Mask R-CNN's 91 categories
MIN_MASK_IOU = 0.3  # a keypoint person and a mask person are the same one above this box overlap
MAX_PERSONS = 10


def mask_shape(width: int, height: int, mask_size: int) -> tuple[int, int]:
    """(rows, cols) of a mask covering a ``width`` x ``height`` photo at ``mask_size`` long side."""
    s = mask_size / max(width, height)
    return max(1, round(height * s)), max(1, round(width * s))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) boxes -> (N, M) intersection over union."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


class BodyDetector:
    """Runs both R-CNNs on batches of decoded photos (the models were built for the decoded size,
    see ``models.load_person_segmenter``). Every person Keypoint R-CNN reports is kept (most
    confident first, at most ``MAX_PERSONS``); the score threshold applies when choosing the
    subject, so changing it needs no new detection. Each person gets the soft mask of the Mask
    R-CNN person whose box overlaps it most."""

    def __init__(self, segmenter, keypointer, device: str, batch_size: int, mask_size: int):
        self.segmenter, self.keypointer = segmenter, keypointer
        self.device, self.batch_size, self.mask_size = device, batch_size, mask_size
        self.calls = 0  # photos passed to the models, for tests and benchmarks

    def detect(self, photos: list[Decoded]) -> list[tuple[BodyDetection, np.ndarray]]:
        out = []
        for lo in range(0, len(photos), self.batch_size):
            out.extend(self._detect_batch(photos[lo:lo + self.batch_size]))
        return out

    def _detect_batch(self, photos: list[Decoded]) -> list[tuple[BodyDetection, np.ndarray]]:
        import torch
        from torchvision.transforms.functional import pil_to_tensor

        self.calls += len(photos)
        with torch.inference_mode():
            images = [pil_to_tensor(p.image).to(self.device, non_blocking=True).float().div_(255) for p in photos]
            segs = self.segmenter(images)
            kps = self.keypointer(images)
            return [self._combine(p, s, k) for p, s, k in zip(photos, segs, kps)]

    def _combine(self, photo: Decoded, seg: dict, kp: dict) -> tuple[BodyDetection, np.ndarray]:
        import torch
        import torch.nn.functional as F

        sx, sy = photo.scale_xy
        scale = np.array([sx, sy, sx, sy])
        people = (seg["labels"] == PERSON_LABEL).nonzero().flatten()
        seg_boxes = seg["boxes"][people].double().cpu().numpy() / scale
        n = min(MAX_PERSONS, len(kp["boxes"]))
        kp_boxes = kp["boxes"][:n].double().cpu().numpy() / scale
        kp_scores = kp["scores"][:n].double().cpu().numpy()
        points = kp["keypoints"][:n, :, :2].double().cpu().numpy() / scale[:2]
        point_scores = kp["keypoints_scores"][:n].double().cpu().numpy()

        iou = box_iou(kp_boxes, seg_boxes)
        pairs, taken = {}, set()
        for flat in np.argsort(-iou, axis=None):  # greedy, best overlaps first
            i, j = np.unravel_index(flat, iou.shape)
            if iou[i, j] < MIN_MASK_IOU:
                break
            if i not in pairs and j not in taken:
                pairs[i] = j
                taken.add(j)
        rows, cols = mask_shape(photo.width, photo.height, self.mask_size)
        chosen = [pairs[i] for i in sorted(pairs)]
        if chosen:
            soft = seg["masks"][people[chosen]].float()  # (M, 1, h, w) at the decoded size, 0..1
            small = F.interpolate(soft, size=(rows, cols), mode="bilinear", align_corners=False, antialias=True)
            masks = (small[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        else:
            masks = np.zeros((0, rows, cols), np.uint8)
        order = {i: k for k, i in enumerate(sorted(pairs))}
        persons = tuple(
            Person(box=tuple(float(v) for v in kp_boxes[i]), score=float(kp_scores[i]),
                   keypoints=tuple((float(x), float(y)) for x, y in points[i]),
                   keypoint_scores=tuple(float(s) for s in point_scores[i]),
                   mask_index=order.get(i, -1))
            for i in range(n))
        return BodyDetection(photo.width, photo.height, persons), masks


# -- which keypoints --------------------------------------------------------------------------------

def keypoint_name(part: str, side: str) -> str:
    return part if part == "nose" else f"{side}_{part}"


def choose_side(person: Person, parts: list[str], min_score: float, wanted: str = "auto") -> str:
    """``wanted`` unless it is "auto"; then the side whose configured keypoints are more often
    confident, ties broken by their summed scores (a profile shows one side much more surely)."""
    if wanted in ("left", "right"):
        return wanted

    def evidence(side: str) -> tuple[int, float]:
        scores = [person.keypoint_scores[KEYPOINT_NAMES.index(keypoint_name(p, side))] for p in parts]
        return sum(s >= min_score for s in scores), sum(scores)

    return "left" if evidence("left") >= evidence("right") else "right"


def subject_points(person: Person, parts: list[str], weights: list[float], side: str,
                   min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) points and (K,) weights for the configured parts on ``side``; a keypoint scoring below
    ``min_score`` is NaN with weight 0 (ignored by the fit and the refinement)."""
    pts = np.full((len(parts), 2), np.nan)
    w = np.zeros(len(parts))
    for k, part in enumerate(parts):
        i = KEYPOINT_NAMES.index(keypoint_name(part, side))
        if person.keypoint_scores[i] >= min_score:
            pts[k] = person.keypoints[i]
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
