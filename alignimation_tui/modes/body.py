"""Body mode's steps: detect people with both R-CNNs, choose the subject, register on the person
mask times keypoint Gaussians, hand the masks to the render for background removal, and the
person's box to the framing.

Cache keys: ``body:{hash}:{fp}`` (JSON: every person, box, score, 17 keypoints and their scores)
and ``bodymask:{hash}:{fp}`` (``.npy`` uint8, one soft mask per person at ``body.mask_size``).
"""
from __future__ import annotations

import dataclasses
import threading

import numpy as np

from .. import register as reg
from ..config import ConfigError
from ..detect import body as body_mod
from ..domain import BodyDetection, BodySubject, FrameResult, FrameStatus, Transform, Verdict
from ..framing import SubjectOnCanvas
from ..models import load_keypoint_detector, load_person_segmenter
from ..photos import open_photo
from ..render import RenderItem
from ..store import fingerprint
from .base import Mode, ModeContext, Progress, Reference

AUTO_REFERENCE_KEY = "reference:auto-body:0"


def _subject(b, det: BodyDetection, index: int, cost: float) -> BodySubject:
    person = det.persons[index]
    side = body_mod.choose_side(person, b.keypoints, b.min_keypoint_score, b.side)
    pts, w = body_mod.subject_points(person, b.keypoints, b.keypoint_weights, side, b.min_keypoint_score)
    return BodySubject(index, person, side, tuple(map(tuple, pts)), tuple(w), cost)


def _candidates(b, det: BodyDetection) -> list[int]:
    """People sure enough, with at least two confident keypoints to register by."""
    out = []
    for i, person in enumerate(det.persons):
        if person.score < b.min_person_score:
            continue
        side = body_mod.choose_side(person, b.keypoints, b.min_keypoint_score, b.side)
        _, w = body_mod.subject_points(person, b.keypoints, b.keypoint_weights, side, b.min_keypoint_score)
        if np.count_nonzero(w) >= 2:
            out.append(i)
    return out


class BodyMode(Mode):
    name = "body"
    subject_word = "person"

    def __init__(self, context: ModeContext):
        super().__init__(context)
        self._detector: body_mod.BodyDetector | None = None
        self.reference_hash: str | None = None
        self.masks: dict[str, np.ndarray | None] = {}  # hash -> (P, h, w) uint8

    # fingerprints and the cache -----------------------------------------------------------------
    @property
    def detect_fp(self) -> str:
        b = self.ctx.config.body
        return fingerprint(model=body_mod.DETECTOR_ID, size=b.detect_size, mask_size=b.mask_size)

    def register_fp(self, ref: Reference) -> str:
        rc, b = self.ctx.config.register, self.ctx.config.body
        ref_r = self.ctx.results[ref.hash]
        return fingerprint(ref=ref.hash, ref_person=ref_r.subject.person_index, ref_side=ref_r.subject.side,
                           canvas=ref.canvas, detect=self.detect_fp, keypoints=b.keypoints,
                           weights=b.keypoint_weights, min_score=b.min_keypoint_score,
                           refine=[rc.refine, rc.sigma, rc.work_size, rc.iterations])

    def cached_detection(self, content_hash: str) -> BodyDetection | None:
        cached = self.ctx.store.get_json(f"body:{content_hash}:{self.detect_fp}")
        return None if cached is None else BodyDetection.from_json(cached)

    def masks_of(self, content_hash: str) -> np.ndarray | None:
        if content_hash not in self.masks:
            self.masks[content_hash] = self.ctx.store.get_array(f"bodymask:{content_hash}:{self.detect_fp}")
        return self.masks[content_hash]

    def needs_detection(self, r: FrameResult) -> bool:
        return not isinstance(r.detection, BodyDetection) or self.masks_of(r.frame.hash) is None

    # detect -------------------------------------------------------------------------------------
    def detector(self) -> body_mod.BodyDetector:
        if self._detector is None:
            b, device = self.ctx.config.body, self.ctx.device
            self._detector = body_mod.BodyDetector(load_person_segmenter(device, b.detect_size),
                                                   load_keypoint_detector(device, b.detect_size),
                                                   device, b.batch_size, b.mask_size)
        return self._detector

    def detect(self, todo: list[FrameResult], progress: Progress, cancel: threading.Event | None) -> int:
        p = self.ctx
        b = p.config.body
        det = self.detector()
        fp = self.detect_fp

        def decode(r: FrameResult):
            return open_photo(r.frame.path, max_side=b.detect_size, max_pixels=p.config.scan.max_pixels)

        def flush(batch: list) -> None:
            for (r, _), (found, masks) in zip(batch, det.detect([photo for _, photo in batch])):
                p.store.put_json(f"body:{r.frame.hash}:{fp}", found.to_json())
                p.store.put_array(f"bodymask:{r.frame.hash}:{fp}", masks)
                self.masks[r.frame.hash] = masks
                r.detection, r.status, r.error = found, FrameStatus.QUEUED, None
                progress(r)

        return p.decode_in_batches(todo, decode, b.batch_size, flush, progress, cancel)

    # select -------------------------------------------------------------------------------------
    def _reference_hash(self, candidates: dict[str, list[int]]) -> str | None:
        p = self.ctx
        named = p.named_reference_hash()
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

    def select(self) -> None:
        """Choose the subject in every photo: in the reference photo its most prominent person, in the
        others the person who best matches that one (position, size, mask overlap)."""
        p = self.ctx
        b = p.config.body
        usable = {h: r for h, r in p.results.items()
                  if isinstance(r.detection, BodyDetection) and r.status is not FrameStatus.FAILED}
        candidates = {h: _candidates(b, r.detection) for h, r in usable.items()}
        ref_hash = self.reference_hash = self._reference_hash(candidates)
        ref_shape = None
        if ref_hash is not None:
            det = usable[ref_hash].detection
            ref_index = body_mod.prominent_person(det, candidates[ref_hash])
            ref_shape = body_mod.person_shape(det, det.persons[ref_index], self.masks_of(ref_hash))
        for h, r in usable.items():
            det = r.detection
            r.transform = None
            if h == ref_hash:
                index, cost = body_mod.prominent_person(det, candidates[h]), 0.0
            else:
                index, cost = body_mod.choose_person(det, self.masks_of(h), candidates[h], ref_shape) \
                    if ref_shape is not None else (None, 0.0)
            if index is None:
                r.subject, r.status = None, FrameStatus.NO_SUBJECT
                r.error = "no person found" if not det.persons else (
                    f"no person with score >= {b.min_person_score} and two keypoints "
                    f"(of {', '.join(b.keypoints)}) scoring >= {b.min_keypoint_score}")
                continue
            r.subject, r.status, r.error = _subject(b, det, index, cost), FrameStatus.QUEUED, None

    # reference and register ---------------------------------------------------------------------
    def _mask(self, r: FrameResult) -> np.ndarray | None:
        masks = self.masks_of(r.frame.hash)
        i = r.subject.person.mask_index
        return masks[i] if masks is not None and 0 <= i < len(masks) else None

    def choose_reference(self) -> Reference | None:
        h = self.reference_hash
        r = self.ctx.results.get(h) if h else None
        if r is None or not isinstance(r.subject, BodySubject):
            return None
        canvas, scale = reg.canvas_for(r.detection.width, r.detection.height, self.ctx.config.register.long_side)
        return Reference(h, np.asarray(r.subject.points, np.float64), canvas, scale)

    def register(self, ref: Reference, compute: bool) -> None:
        """Closed form from the chosen keypoints, then the batched refinement on person mask x keypoint
        Gaussians (the mask also as its own channel). Cached per reference and settings."""
        p = self.ctx
        subjects = [r for r in p.results.values() if isinstance(r.subject, BodySubject)]
        if not subjects:
            return
        rc = p.config.register
        ref_r = p.results[ref.hash]
        ref_w = np.asarray(ref_r.subject.weights, np.float64)
        ref_mask = self._mask(ref_r)
        fp = self.register_fp(ref)
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
            elif not compute:
                r.error = "no stored transform"
                continue
            else:
                todo.append((r, key))
            r.status = FrameStatus.ALIGNED
        has_mask = [ref_mask is not None and self._mask(r) is not None for r, _ in todo]
        with_mask = [t for t, m in zip(todo, has_mask) if m]
        without = [t for t, m in zip(todo, has_mask) if not m]
        settings = reg.RefineSettings(rc.sigma, rc.work_size, rc.iterations, batch_size=rc.batch_size) \
            if rc.refine else None
        self._register_group(ref, ref_w, ref_mask, with_mask, settings)
        self._register_group(ref, ref_w, None, without, None)  # no person mask: closed form only

    def _register_group(self, ref: Reference, ref_w: np.ndarray, ref_mask: np.ndarray | None,
                        group: list, settings: reg.RefineSettings | None) -> None:
        if not group:
            return
        p = self.ctx
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
            masks = np.stack([body_mod.working_mask(self._mask(r), r.detection.width, r.detection.height,
                                                    work / max(r.detection.width, r.detection.height),
                                                    (work, work))
                              for r, _ in group])[:, None]
        matrices, _, _ = reg.register_frames(src, weights, sizes, ref.landmarks, ref_w, ref.canvas, ref.scale,
                                             settings=settings, device=p.device, masks=masks, ref_mask=ref_work)
        used = np.where(weights[..., None] > 0, src, np.nan)
        residuals = reg.residual_pct(matrices, used, ref.landmarks * ref.scale, ref.canvas[1])
        for (r, key), m, res in zip(group, matrices, residuals):
            r.transform = Transform(tuple(tuple(float(v) for v in row) for row in m), ref.canvas, float(res))
            p.store.put_json(key, r.transform.to_json())

    # render and framing -------------------------------------------------------------------------
    def render_items(self, kept: list[FrameResult], items: list[RenderItem]) -> list[RenderItem]:
        """Attach each frame's person mask when the background is to be replaced."""
        b = self.ctx.config.body
        if b.background == "keep":
            return items
        return [dataclasses.replace(item, mask=self._mask(r), background=b.background, feather_px=b.feather_px)
                if isinstance(r.subject, BodySubject) else item for r, item in zip(kept, items)]

    def colour_region(self, r: FrameResult) -> tuple[float, float, float, float] | None:
        return r.subject.person.box if isinstance(r.subject, BodySubject) else None

    def subject_on_canvas(self, ref: Reference, kept: list[FrameResult]) -> SubjectOnCanvas | None:
        """The reference person's box on the canvas: the bounding box of its mask (its detected box
        without one), through the reference's own registration."""
        r = self.ctx.results.get(ref.hash)
        if r is None or not isinstance(r.subject, BodySubject) or r.transform is None:
            return None
        box = person_box(self._mask(r), r.detection.width, r.detection.height) or r.subject.person.box
        x0, y0, x1, y1 = box
        corners = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], np.float64)
        on_canvas = corners @ np.asarray(r.transform.matrix, np.float64).T
        (cx0, cy0), (cx1, cy1) = on_canvas[:, :2].min(0), on_canvas[:, :2].max(0)
        return SubjectOnCanvas.from_box(cx0, cy0, cx1, cy1)


def person_box(mask: np.ndarray | None, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The bounding box (photo pixels) of a soft uint8 mask over a ``width`` x ``height`` photo."""
    if mask is None:
        return None
    ys, xs = np.nonzero(np.asarray(mask) >= 128)
    if len(xs) == 0:
        return None
    sx, sy = width / mask.shape[1], height / mask.shape[0]
    return (float(xs.min() * sx), float(ys.min() * sy), float((xs.max() + 1) * sx), float((ys.max() + 1) * sy))
