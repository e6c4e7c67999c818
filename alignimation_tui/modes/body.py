"""Body mode's steps: detect people with BlazePose (weights shipped with the package), choose the
subject and the side it is seen from, register on the person mask times keypoint Gaussians, hand
the masks to the render for background removal, and the person's box to the framing.

Cache keys: ``body:{hash}:{fp}`` (JSON: every person, box, score, 17 keypoints, their scores and
depths) and ``bodymask:{hash}:{fp}`` (``.npy`` uint8, one soft mask per person at ``body.mask_size``).
"""
from __future__ import annotations

import dataclasses
import sys
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from .. import colour
from .. import register as reg
from ..config import ConfigError, between, check, one_of
from ..detect import body as body_mod
from ..detect.face import torch_threads
from ..detect.identity import closest_face, prototypes
from ..domain import BodyDetection, BodySubject, FrameResult, FrameStatus, Transform
from ..framing import SubjectOnCanvas
from ..models import dlib_weights_path, face_embedder_loading, preload
from ..photos import open_photo
from ..render import RenderItem
from ..fingerprint import fingerprint
from .base import LEFT_OUT, Mode, ModeContext, Progress, Reference, box_on_canvas

AUTO_REFERENCE_KEY = "reference:auto-body:0"

BODY_PARTS = ("nose", "eye", "ear", "shoulder", "elbow", "wrist", "hip", "knee", "ankle")


def _body_parts(v: list) -> str | None:
    if not v or any(p not in BODY_PARTS for p in v) or len(set(v)) != len(v):
        return f"must be a list of distinct keypoints from {', '.join(BODY_PARTS)}"
    return None


def _body_weights(v: list) -> str | None:
    if not v or any(not isinstance(x, (int, float)) or isinstance(x, bool) or x < 0 for x in v) or sum(v) <= 0:
        return "must be a list of non-negative numbers, not all zero, one per keypoint"
    return None


def _background(v: str) -> str | None:
    if v in ("keep", "white", "black", "blur"):
        return None
    if len(v) == 7 and v[0] == "#" and all(c in "0123456789abcdefABCDEF" for c in v[1:]):
        return None
    return f"must be 'keep', 'white', 'black', 'blur' or a colour '#rrggbb', got {v!r}"


@dataclass(frozen=True)
class BodyConfig:
    detect_size: int = field(default=800, metadata=between(128, 4096))
    batch_size: int = field(default=4, metadata=between(1, 256))
    mask_size: int = field(default=256, metadata=between(64, 1024))
    min_person_score: float = field(default=0.5, metadata=between(0.0, 1.0))
    keypoints: list = field(default_factory=lambda: ["ear", "shoulder", "hip"], metadata=check(_body_parts))
    keypoint_weights: list = field(default_factory=lambda: [1.0, 1.0, 1.0], metadata=check(_body_weights))
    side: str = field(default="auto", metadata=one_of(*body_mod.SIDES))
    min_keypoint_score: float = field(default=2.0, metadata=between(-100.0, 100.0))
    refine: bool = True
    background: str = field(default="keep", metadata=check(_background))
    feather_px: float = field(default=6.0, metadata=between(0.0, 200.0))

    def __post_init__(self):
        if len(self.keypoint_weights) != len(self.keypoints):
            raise ConfigError("body.keypoint_weights", f"needs one weight per keypoint ({len(self.keypoints)}: "
                              f"{', '.join(self.keypoints)}), got {len(self.keypoint_weights)}")




def _subject(b, det: BodyDetection, index: int, cost: float) -> BodySubject:
    person = det.persons[index]
    side, why = body_mod.choose_side(person, b.keypoints, b.side)
    pts, w = body_mod.subject_points(person, b.keypoints, b.keypoint_weights, side, b.min_keypoint_score)
    return BodySubject(index, person, side, tuple(map(tuple, pts)), tuple(w), cost, why)


def _candidates(b, det: BodyDetection) -> list[int]:
    """People sure enough, with at least two confident keypoints to register by."""
    out = []
    for i, person in enumerate(det.persons):
        if person.score < b.min_person_score:
            continue
        side, _ = body_mod.choose_side(person, b.keypoints, b.side)
        _, w = body_mod.subject_points(person, b.keypoints, b.keypoint_weights, side, b.min_keypoint_score)
        if np.count_nonzero(w) >= 2:
            out.append(i)
    return out


class BodyMode(Mode):
    name = "body"
    subject_word = "person"
    keeps_neutral = True  # a body video is mostly wall: a white wall stays white
    default_size = "photos"  # the reference photo's shape: portrait photos give a portrait video
    config_sections = {"body": BodyConfig}
    detection_modules = ("ai_edge_litert.interpreter",)

    def __init__(self, context: ModeContext):
        super().__init__(context)
        self._detector: body_mod.BodyDetector | None = None
        self.chosen_reference: str | None = None  # chosen in ``select``: the subjects depend on it
        self.masks: dict[str, np.ndarray | None] = {}  # hash -> (P, h, w) uint8
        self.faces: dict[str, np.ndarray | None] = {}  # hash -> (P, 128) face descriptors
        self._torch_import: threading.Thread | None = None  # see ``warm_up``

    @property
    def settings(self) -> BodyConfig:
        return self.section("body")

    @property
    def auto_reference_key(self) -> str:
        return AUTO_REFERENCE_KEY

    def status_text(self, device: str) -> str:
        return f"{device} · BlazePose + identity" if self.identity_on else f"{device} · BlazePose"

    def report(self, r: FrameResult) -> dict:
        if not isinstance(r.detection, BodyDetection):
            return {}
        subject = r.subject if isinstance(r.subject, BodySubject) else None
        return {"persons": len(r.detection.persons), "side": subject.side if subject else None,
                "side_reason": subject.side_reason if subject else None,
                "identity_distance": subject.identity_distance if subject else None}

    def why_unusable(self, r: FrameResult) -> str:
        return r.error or "no person with two confident keypoints"

    # fingerprints and the cache -----------------------------------------------------------------
    @property
    def detect_fp(self) -> str:
        b = self.settings
        return fingerprint(model=body_mod.DETECTOR_ID, size=b.detect_size, mask_size=b.mask_size)

    def register_fp(self, ref: Reference) -> str:
        rc, b = self.ctx.config.register, self.settings
        ref_r = self.ctx.results[ref.hash]
        return fingerprint(ref=ref.hash, ref_person=ref_r.subject.person_index, ref_side=ref_r.subject.side,
                           canvas=ref.canvas, detect=self.detect_fp, keypoints=b.keypoints,
                           weights=b.keypoint_weights, min_score=b.min_keypoint_score,
                           refine=[b.refine, rc.sigma, rc.work_size, rc.iterations])

    def cached_detection(self, content_hash: str) -> BodyDetection | None:
        cached = self.ctx.store.get_json(f"body:{content_hash}:{self.detect_fp}")
        return None if cached is None else BodyDetection.from_json(cached)

    def masks_of(self, content_hash: str) -> np.ndarray | None:
        if content_hash not in self.masks:
            self.masks[content_hash] = self.ctx.store.get_array(f"bodymask:{content_hash}:{self.detect_fp}")
        return self.masks[content_hash]

    def needs_detection(self, r: FrameResult) -> bool:
        if not isinstance(r.detection, BodyDetection) or self.masks_of(r.frame.hash) is None:
            return True
        return self.identity_on and r.detection.persons and self.faces_of(r.frame.hash) is None

    @property
    def identity_on(self) -> bool:
        return dlib_weights_path() is not None

    def faces_of(self, content_hash: str) -> np.ndarray | None:
        """(P, 128) face descriptors of a photo's people (NaN rows: no face seen from the front)."""
        if content_hash not in self.faces:
            self.faces[content_hash] = self.ctx.store.get_array(f"bodyface:{content_hash}:{self.detect_fp}")
        return self.faces[content_hash]

    def warm_up(self) -> None:
        """Load BlazePose, and import torch and kornia (only registration needs them: 1.4 s here)
        on a thread of their own, beside the detection, whose runtime and decodes leave the
        interpreter lock free most of the time; ``register`` waits for it."""
        self.detector()
        if self._torch_import is None and "kornia.geometry" not in sys.modules:
            self._torch_import = threading.Thread(target=preload, args=(("kornia.geometry",),),
                                                  name="import torch", daemon=True)
            self._torch_import.start()

    def _torch_imported(self) -> None:
        if self._torch_import is not None:
            self._torch_import.join()
            self._torch_import = None

    # detect -------------------------------------------------------------------------------------
    def detector(self) -> body_mod.BodyDetector:
        if self._detector is None:
            # small: the CPU is enough; loaded once per process (auto mode may have started it)
            describer = (lambda: face_embedder_loading("cpu").result()) if self.identity_on else None
            self._detector = body_mod.BodyDetector(self.settings.mask_size, describer=describer)
        return self._detector

    def detect(self, todo: list[FrameResult], progress: Progress, cancel: threading.Event | None) -> int:
        p = self.ctx
        b = self.settings
        det = self.detector()
        fp = self.detect_fp

        def decode(r: FrameResult):
            # A JPEG's reduced decode up to 1.3x the size is kept as it is: BlazePose scales it anyway.
            with p.timed("decode"):
                photo = open_photo(r.frame.path, max_side=b.detect_size, max_pixels=p.config.scan.max_pixels,
                                   resize_within=1.3)
                return photo, self._colour_picture(photo)

        def flush(batch: list) -> None:
            for r, (photo, small) in batch:
                with p.timed("detect"):
                    found, masks = det.detect_one(photo)
                p.store.put_json(f"body:{r.frame.hash}:{fp}", found.to_json())
                p.store.put_array(f"bodymask:{r.frame.hash}:{fp}", masks)
                self.masks[r.frame.hash] = masks
                if det.faces is not None:
                    p.store.put_array(f"bodyface:{r.frame.hash}:{fp}", det.faces)
                    self.faces[r.frame.hash] = det.faces
                self._measure_colour(r.frame.hash, found, photo, small)
                r.detection, r.status, r.error = found, FrameStatus.QUEUED, None
                progress(r)

        return p.decode_in_batches(todo, decode, b.batch_size, flush, progress, cancel)

    def _colour_picture(self, photo) -> tuple | None:
        """On a decode thread, what the colour match measures that needs no detection: the photo
        made small (the means need no more) and its neutral means; None when the colour match is
        off or the photo too small. (On the run's own thread these took 9-17 ms a 12 MP photo.)"""
        if self.ctx.config.render.match_colour == "off" or max(photo.image.size) < colour.STATS_SIDE:
            return None
        small = photo.image.copy()
        small.thumbnail((colour.STATS_SIDE, colour.STATS_SIDE), reducing_gap=2.0)
        return small, colour.neutral_means(small)

    def _measure_colour(self, content_hash: str, found: BodyDetection, photo, prepared: tuple | None) -> None:
        """While the photo is decoded: each person's colour means and the photo's neutral means
        (``prepared`` by ``_colour_picture``), which the render's colour match would otherwise
        decode every photo once more for."""
        if prepared is None:
            return
        p = self.ctx
        small, neutral = prepared
        with p.timed("colour"):
            sx, sy = (photo.scale_xy[0] * small.width / photo.image.width,
                      photo.scale_xy[1] * small.height / photo.image.height)
            for person in found.persons:
                means = colour.region_means(small, person.box, (sx, sy))
                p.store.put_json(colour.means_key(content_hash, person.box), {"means": means})
            p.store.put_json(colour.neutral_key(content_hash), {"means": neutral})

    # select -------------------------------------------------------------------------------------
    def select(self) -> None:
        """Choose the subject in every photo: in the reference photo its most prominent person, in the
        others the person who best matches that one (position, size, mask overlap)."""
        p = self.ctx
        b = self.settings
        usable = {h: r for h, r in p.results.items()
                  if isinstance(r.detection, BodyDetection) and r.status is not FrameStatus.FAILED}
        candidates = {h: _candidates(b, r.detection) for h, r in usable.items()}
        ref_hash = self.chosen_reference = self.reference_hash(lambda r: bool(candidates.get(r.frame.hash)))
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
            r.identity_doubt = None
        if self.identity_on:
            self._check_identity(usable)

    def _check_identity(self, usable: dict[str, FrameResult]) -> None:
        """Face mode's identity check on each subject's face where it is seen from the front: the
        folder's most common face (and the accepted or pinned photos') is the subject's; a face
        farther than ``identity.max_distance`` is another person (``stranger``, registered all the
        same), one farther than ``identity.doubt_distance`` is flagged."""
        seen = {}
        for h, r in usable.items():
            faces = self.faces_of(h)
            if isinstance(r.subject, BodySubject) and faces is not None and r.subject.person_index < len(faces):
                v = faces[r.subject.person_index]
                if np.isfinite(v).all():
                    seen[h] = v[None]
        examples = prototypes(seen, self.ctx.config.identity.max_distance, self.vouched(seen)) if seen else None
        if examples is None:
            return
        for h, vectors in seen.items():
            r = usable[h]
            _, distance = closest_face(vectors, examples)
            r.subject = dataclasses.replace(r.subject, identity_distance=distance)
            self.judge_identity(r, distance)

    # reference and register ---------------------------------------------------------------------
    def _mask(self, r: FrameResult) -> np.ndarray | None:
        masks = self.masks_of(r.frame.hash)
        i = r.subject.person.mask_index
        return masks[i] if masks is not None and 0 <= i < len(masks) else None

    def choose_reference(self) -> Reference | None:
        return self.reference_of(self.chosen_reference)

    def refine_settings(self) -> reg.RefineSettings | None:
        """The recipe's refinement (person mask x keypoint Gaussians), on unless ``body.refine`` is
        off; its size and steps from ``[register]``. bench/bench_body.py: on real side views warped
        by known similarities, median error 0.30 % of the body height refined, 0.76 % closed form."""
        rc = self.ctx.config.register
        return reg.RefineSettings(rc.sigma, rc.work_size, rc.iterations, batch_size=rc.batch_size) \
            if self.settings.refine else None

    def register(self, ref: Reference, compute: bool) -> None:
        """Closed form from the chosen keypoints, then the batched refinement on person mask x keypoint
        Gaussians (the mask also as its own channel). Cached per reference and settings."""
        p = self.ctx
        subjects = [r for r in p.results.values() if isinstance(r.subject, BodySubject)]
        if not subjects:
            return
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
            if r.status not in LEFT_OUT:
                r.status = FrameStatus.ALIGNED
        has_mask = [ref_mask is not None and self._mask(r) is not None for r, _ in todo]
        with_mask = [t for t, m in zip(todo, has_mask) if m]
        without = [t for t, m in zip(todo, has_mask) if not m]
        settings = self.refine_settings()
        self._register_group(ref, ref_w, ref_mask, with_mask, settings)
        self._register_group(ref, ref_w, None, without, None)  # no person mask: closed form only

    def _register_group(self, ref: Reference, ref_w: np.ndarray, ref_mask: np.ndarray | None,
                        group: list, settings: reg.RefineSettings | None) -> None:
        if not group:
            return
        self._torch_imported()
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
        # On a CPU the refinement's many small ops run fastest on one thread (as face mode's).
        with torch_threads(1) if p.device == "cpu" else nullcontext():
            matrices, _, _ = reg.register_frames(src, weights, sizes, ref.landmarks, ref_w, ref.canvas, ref.scale,
                                                 settings=settings, device=p.device, masks=masks, ref_mask=ref_work)
        used = np.where(weights[..., None] > 0, src, np.nan)
        residuals = reg.residual_pct(matrices, used, ref.landmarks * ref.scale, ref.canvas[1])
        for (r, key), m, res in zip(group, matrices, residuals):
            r.transform = self.make_transform(m, ref.canvas, res)
            p.store.put_json(key, r.transform.to_json())

    # render and framing -------------------------------------------------------------------------
    def render_items(self, kept: list[FrameResult], items: list[RenderItem]) -> list[RenderItem]:
        """Attach each frame's person mask when the background is to be replaced."""
        b = self.settings
        if b.background == "keep":
            return items
        return [dataclasses.replace(item, mask=self._mask(r), background=b.background, feather_px=b.feather_px)
                if isinstance(r.subject, BodySubject) else item for r, item in zip(kept, items)]

    def subject_on_canvas(self, ref: Reference, kept: list[FrameResult]) -> SubjectOnCanvas | None:
        """The reference person's box on the canvas: the bounding box of its mask (its detected box
        without one), through the reference's own registration."""
        r = self.ctx.results.get(ref.hash)
        if r is None or not isinstance(r.subject, BodySubject) or r.transform is None:
            return None
        box = person_box(self._mask(r), r.detection.width, r.detection.height) or r.subject.person.box
        return box_on_canvas(box, r.transform)


def person_box(mask: np.ndarray | None, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The bounding box (photo pixels) of a soft uint8 mask over a ``width`` x ``height`` photo."""
    if mask is None:
        return None
    ys, xs = np.nonzero(np.asarray(mask) >= 128)
    if len(xs) == 0:
        return None
    sx, sy = width / mask.shape[1], height / mask.shape[0]
    return (float(xs.min() * sx), float(ys.min() * sy), float((xs.max() + 1) * sx), float((ys.max() + 1) * sy))
