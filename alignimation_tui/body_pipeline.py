"""Body mode's steps of the pipeline (``Pipeline`` dispatches here when ``mode = "body"``):
detect people with both R-CNNs, choose the subject, register on the person mask times keypoint
Gaussians, hand the masks to the render for background removal.

Cache keys: ``body:{hash}:{fp}`` (JSON: every person, box, score, 17 keypoints and their scores)
and ``bodymask:{hash}:{fp}`` (``.npy`` uint8, one soft mask per person at ``body.mask_size``).
"""
from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import register as reg
from .config import ConfigError
from .detect import body as body_mod
from .domain import BodyDetection, BodySubject, FrameResult, FrameStatus, Transform, Verdict
from .models import load_keypoint_detector, load_person_segmenter
from .photos import open_photo
from .render import RenderItem
from .store import fingerprint

if TYPE_CHECKING:
    from .pipeline import Pipeline, Reference

AUTO_REFERENCE_KEY = "reference:auto-body:0"


@dataclasses.dataclass
class BodyState:
    detector: body_mod.BodyDetector | None = None
    reference_hash: str | None = None
    masks: dict = dataclasses.field(default_factory=dict)  # hash -> (P, h, w) uint8


def state(p: "Pipeline") -> BodyState:
    if "_body" not in p.__dict__:
        p.__dict__["_body"] = BodyState()
    return p.__dict__["_body"]


# cache ------------------------------------------------------------------------------------------
def detect_fp(p: "Pipeline") -> str:
    b = p.config.body
    return fingerprint(model=body_mod.DETECTOR_ID, size=b.detect_size, mask_size=b.mask_size)


def cached_detection(p: "Pipeline", content_hash: str) -> BodyDetection | None:
    cached = p.store.get_json(f"body:{content_hash}:{detect_fp(p)}")
    return None if cached is None else BodyDetection.from_json(cached)


def masks_of(p: "Pipeline", content_hash: str) -> np.ndarray | None:
    st = state(p)
    if content_hash not in st.masks:
        st.masks[content_hash] = p.store.get_array(f"bodymask:{content_hash}:{detect_fp(p)}")
    return st.masks[content_hash]


def needs_detection(p: "Pipeline", r: FrameResult) -> bool:
    return not isinstance(r.detection, BodyDetection) or masks_of(p, r.frame.hash) is None


# detect -----------------------------------------------------------------------------------------
def detector(p: "Pipeline") -> body_mod.BodyDetector:
    st = state(p)
    if st.detector is None:
        b = p.config.body
        st.detector = body_mod.BodyDetector(load_person_segmenter(p.device, b.detect_size),
                                            load_keypoint_detector(p.device, b.detect_size),
                                            p.device, b.batch_size, b.mask_size)
    return st.detector


def detect(p: "Pipeline", results: list[FrameResult] | None, progress: Callable[[FrameResult], None],
           cancel: threading.Event | None) -> int:
    todo = [r for r in (results if results is not None else p.results.values()) if needs_detection(p, r)]
    if not todo:
        return 0
    b = p.config.body
    det = detector(p)
    fp = detect_fp(p)

    def decode(r: FrameResult):
        return open_photo(r.frame.path, max_side=b.detect_size, max_pixels=p.config.scan.max_pixels)

    def flush(batch: list) -> None:
        for (r, _), (found, masks) in zip(batch, det.detect([photo for _, photo in batch])):
            p.store.put_json(f"body:{r.frame.hash}:{fp}", found.to_json())
            p.store.put_array(f"bodymask:{r.frame.hash}:{fp}", masks)
            state(p).masks[r.frame.hash] = masks
            r.detection, r.status, r.error = found, FrameStatus.QUEUED, None
            progress(r)

    return p.decode_in_batches(todo, decode, b.batch_size, flush, progress, cancel)


# select -----------------------------------------------------------------------------------------
def _subject(p: "Pipeline", det: BodyDetection, index: int, cost: float) -> BodySubject | None:
    b = p.config.body
    person = det.persons[index]
    side = body_mod.choose_side(person, b.keypoints, b.min_keypoint_score, b.side)
    pts, w = body_mod.subject_points(person, b.keypoints, b.keypoint_weights, side, b.min_keypoint_score)
    return BodySubject(index, person, side, tuple(map(tuple, pts)), tuple(w), cost)


def _candidates(p: "Pipeline", det: BodyDetection) -> list[int]:
    """People sure enough, with at least two confident keypoints to register by."""
    b = p.config.body
    out = []
    for i, person in enumerate(det.persons):
        if person.score < b.min_person_score:
            continue
        side = body_mod.choose_side(person, b.keypoints, b.min_keypoint_score, b.side)
        _, w = body_mod.subject_points(person, b.keypoints, b.keypoint_weights, side, b.min_keypoint_score)
        if np.count_nonzero(w) >= 2:
            out.append(i)
    return out


def _reference_hash(p: "Pipeline", candidates: dict[str, list[int]]) -> str | None:
    named = p._named_reference_hash()
    if named is not None:
        if not candidates.get(named):
            r = p.results[named]
            raise ConfigError("register.reference", f"{r.frame.path.name} has no usable person "
                              f"({r.error or 'no person with two confident keypoints'})")
        return named

    def usable(h: str | None) -> bool:
        return bool(h) and bool(candidates.get(h)) and p.results[h].verdict is not Verdict.REJECTED

    # Sticky, as in face mode: a photo added later is registered against the same reference.
    stored = (p.store.get_json(AUTO_REFERENCE_KEY) or {}).get("hash")
    if usable(stored):
        return stored
    first = next((h for h in p.results if usable(h)), None)  # results are in date order
    if first is not None:
        p.store.put_json(AUTO_REFERENCE_KEY, {"hash": first})
    return first


def select(p: "Pipeline") -> None:
    """Choose the subject in every photo: in the reference photo its most prominent person, in the
    others the person who best matches that one (position, size, mask overlap)."""
    usable = {h: r for h, r in p.results.items()
              if isinstance(r.detection, BodyDetection) and r.status is not FrameStatus.FAILED}
    candidates = {h: _candidates(p, r.detection) for h, r in usable.items()}
    ref_hash = state(p).reference_hash = _reference_hash(p, candidates)
    ref_shape = None
    if ref_hash is not None:
        det = usable[ref_hash].detection
        ref_index = body_mod.prominent_person(det, candidates[ref_hash])
        ref_shape = body_mod.person_shape(det, det.persons[ref_index], masks_of(p, ref_hash))
    for h, r in usable.items():
        det = r.detection
        r.transform = None
        if h == ref_hash:
            index, cost = body_mod.prominent_person(det, candidates[h]), 0.0
        else:
            index, cost = body_mod.choose_person(det, masks_of(p, h), candidates[h], ref_shape) \
                if ref_shape is not None else (None, 0.0)
        if index is None:
            r.subject, r.status = None, FrameStatus.NO_SUBJECT
            r.error = "no person found" if not det.persons else (
                f"no person with score >= {p.config.body.min_person_score} and two keypoints "
                f"(of {', '.join(p.config.body.keypoints)}) scoring >= {p.config.body.min_keypoint_score}")
            continue
        r.subject, r.status, r.error = _subject(p, det, index, cost), FrameStatus.QUEUED, None


# register ---------------------------------------------------------------------------------------
def _mask(p: "Pipeline", r: FrameResult) -> np.ndarray | None:
    masks = masks_of(p, r.frame.hash)
    i = r.subject.person.mask_index
    return masks[i] if masks is not None and 0 <= i < len(masks) else None


def choose_reference(p: "Pipeline") -> "Reference | None":
    from .pipeline import Reference

    h = state(p).reference_hash
    r = p.results.get(h) if h else None
    if r is None or not isinstance(r.subject, BodySubject):
        return None
    canvas, scale = reg.canvas_for(r.detection.width, r.detection.height, p.config.register.long_side)
    return Reference(h, np.asarray(r.subject.points, np.float64), canvas, scale)


def register(p: "Pipeline") -> "Reference | None":
    """Closed form from the chosen keypoints, then the batched refinement on person mask x keypoint
    Gaussians (the mask also as its own channel). Cached per reference and settings."""
    p.reference = ref = choose_reference(p)
    subjects = [r for r in p.results.values() if isinstance(r.subject, BodySubject)]
    if ref is None or not subjects:
        return ref
    rc, b = p.config.register, p.config.body
    ref_r = p.results[ref.hash]
    ref_w = np.asarray(ref_r.subject.weights, np.float64)
    ref_mask = _mask(p, ref_r)
    fp = fingerprint(ref=ref.hash, ref_person=ref_r.subject.person_index, ref_side=ref_r.subject.side,
                     canvas=ref.canvas, detect=detect_fp(p), keypoints=b.keypoints, weights=b.keypoint_weights,
                     min_score=b.min_keypoint_score, refine=[rc.refine, rc.sigma, rc.work_size, rc.iterations])
    todo = []
    for r in subjects:
        common = np.count_nonzero(np.asarray(r.subject.weights) * (ref_w > 0))
        if common < 2:
            r.subject, r.status = None, FrameStatus.NO_SUBJECT
            r.error = "fewer than two confident keypoints in common with the reference"
            continue
        key = f"transform:{r.frame.hash}:{fingerprint(fp=fp, person=r.subject.person_index, side=r.subject.side)}"
        cached = p.store.get_json(key)
        if cached is not None:
            r.transform = Transform.from_json(cached)
        else:
            todo.append((r, key))
        r.status = FrameStatus.ALIGNED
    has_mask = [ref_mask is not None and _mask(p, r) is not None for r, _ in todo]
    with_mask = [t for t, m in zip(todo, has_mask) if m]
    without = [t for t, m in zip(todo, has_mask) if not m]
    settings = reg.RefineSettings(rc.sigma, rc.work_size, rc.iterations, batch_size=rc.batch_size) \
        if rc.refine else None
    _register_group(p, ref, ref_w, ref_mask, with_mask, settings)
    _register_group(p, ref, ref_w, None, without, None)  # no person mask: closed form only
    return ref


def _register_group(p: "Pipeline", ref: "Reference", ref_w: np.ndarray, ref_mask: np.ndarray | None,
                    group: list, settings: reg.RefineSettings | None) -> None:
    if not group:
        return
    src = np.stack([np.asarray(r.subject.points, np.float64) for r, _ in group])
    weights = np.stack([np.asarray(r.subject.weights, np.float64) for r, _ in group]) * (ref_w > 0)
    sizes = np.array([[r.detection.width, r.detection.height] for r, _ in group], np.float64)
    masks = ref_work = None
    if settings is not None and settings.iterations > 0:
        work = settings.work_size
        cw, ch = ref.canvas
        dst_scale = work / max(cw, ch)
        dh, dw = max(2, round(ch * dst_scale)), max(2, round(cw * dst_scale))
        ref_det = p.results[ref.hash].detection
        ref_work = body_mod.working_mask(ref_mask, ref_det.width, ref_det.height, ref.scale * dst_scale,
                                         (dw, dh))[None, None]
        masks = np.stack([body_mod.working_mask(_mask(p, r), r.detection.width, r.detection.height,
                                                work / max(r.detection.width, r.detection.height), (work, work))
                          for r, _ in group])[:, None]
    matrices, _, _ = reg.register_frames(src, weights, sizes, ref.landmarks, ref_w, ref.canvas, ref.scale,
                                         settings=settings, device=p.device, masks=masks, ref_mask=ref_work)
    used = np.where(weights[..., None] > 0, src, np.nan)
    residuals = reg.residual_pct(matrices, used, ref.landmarks * ref.scale, ref.canvas[1])
    for (r, key), m, res in zip(group, matrices, residuals):
        r.transform = Transform(tuple(tuple(float(v) for v in row) for row in m), ref.canvas, float(res))
        p.store.put_json(key, r.transform.to_json())


# render -----------------------------------------------------------------------------------------
def render_items(p: "Pipeline", kept: list[FrameResult], items: list[RenderItem]) -> list[RenderItem]:
    """Attach each frame's person mask when the background is to be replaced."""
    b = p.config.body
    if b.background == "keep":
        return items
    return [dataclasses.replace(item, mask=_mask(p, r), background=b.background, feather_px=b.feather_px)
            if isinstance(r.subject, BodySubject) else item for r, item in zip(kept, items)]
