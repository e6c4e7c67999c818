"""Face mode's steps: MTCNN (and face embeddings when their weights are installed), the second
landmark pass (detect/landmarks.py), choosing the person, facing-forward scores, registration on
the 5 landmarks.

Cache keys: ``faces:{hash}:{detect_fp}`` (JSON), ``landmarks:{hash}:{landmarks_fp}`` (``.npy``, the
second pass's landmarks of every face), ``embed:{hash}:{embed_fp}`` (``.npy``),
``transform:{hash}:{fp}`` (JSON; the fingerprint covers the reference, the settings and the face).
"""
from __future__ import annotations

import threading
from contextlib import nullcontext

import numpy as np

from .. import borders, curate
from .. import register as reg
from ..config import ConfigError
from ..detect import face as face_mod
from ..detect import landmarks as landmarks_mod
from ..detect.facing import facing_scores, is_turned
from ..detect.identity import anchor_face, choose_by_identity, choose_by_position, identity_embedding
from ..domain import FaceDetection, FrameResult, FrameStatus, Subject, Transform, Verdict
from ..framing import SubjectOnCanvas
from ..models import FACE_EMBEDDER, load_face_detector, load_face_embedder
from ..photos import open_photo
from ..store import fingerprint
from .base import Mode, ModeContext, Progress, Reference

AUTO_REFERENCE_KEY = "reference:auto:0"
# Detection takes the JPEG DCT scale that falls at most this short of detect.size as it is
# (4032 px -> 1008 px): a quarter of the decoding of the next scale up, and no resize.
DETECT_DECODE_SLACK = 0.05


def usable_for_reference(r: FrameResult) -> bool:
    if r.subject is None or r.verdict is Verdict.REJECTED:
        return False
    return r.status is not FrameStatus.TURNED or r.verdict is Verdict.ACCEPTED


class FaceMode(Mode):
    name = "face"
    subject_word = "face"

    def __init__(self, context: ModeContext):
        super().__init__(context)
        self._detector: face_mod.FaceDetector | None = None
        self._embedder: face_mod.FaceEmbedder | None = None
        self._embedder_checked = False
        self._quality_fp: str | None = None
        self._picture_fp: str | None = None
        # Photos whose MTCNN detection is stored but not the second pass's landmarks (a changed
        # [landmarks] setting): detecting them runs only the second pass.
        self._raw_pending: dict[str, FaceDetection] = {}

    # fingerprints -------------------------------------------------------------------------------
    @property
    def detect_fp(self) -> str:
        d = self.ctx.config.detect
        return fingerprint(model=face_mod.DETECTOR_ID, size=d.size, min_face_size=d.min_face_size,
                           thresholds=d.thresholds, decode_slack=DETECT_DECODE_SLACK)

    @property
    def landmark_settings(self) -> landmarks_mod.LandmarkSettings:
        c = self.ctx.config.landmarks
        return landmarks_mod.LandmarkSettings(c.rounds, c.mirror, c.jitter, c.max_faces)

    @property
    def landmarks_fp(self) -> str:
        return fingerprint(detect=self.detect_fp, second_pass=self.landmark_settings.as_fingerprint())

    @property
    def embed_fp(self) -> str:
        return fingerprint(model=face_mod.EMBEDDER_ID, detect=self.detect_fp)

    def register_fp(self, ref: Reference) -> str:
        rc = self.ctx.config.register
        return fingerprint(ref=ref.hash, canvas=ref.canvas, weights=rc.landmark_weights, detect=self.landmarks_fp,
                           refine=[rc.refine, rc.sigma, rc.work_size, rc.iterations])

    @staticmethod
    def _transform_key(r: FrameResult, fp: str) -> str:
        # The chosen face is part of the key: a different choice (identity weights installed,
        # another min_confidence) must not reuse a transform fitted to another face.
        return f"transform:{r.frame.hash}:{fingerprint(fp=fp, face=r.subject.face.landmarks)}"

    def cached_detection(self, content_hash: str) -> FaceDetection | None:
        """The stored detection with the second pass's landmarks (or MTCNN's when the pass is off);
        None when either is missing."""
        cached = self.ctx.store.get_json(f"faces:{content_hash}:{self.detect_fp}")
        if cached is None:
            return None
        raw = FaceDetection.from_json(cached)
        if self.landmark_settings.rounds == 0 or not raw.faces:
            return raw
        refined = self.ctx.store.get_array(f"landmarks:{content_hash}:{self.landmarks_fp}")
        if refined is not None and len(refined) == len(raw.faces):
            return landmarks_mod.with_landmarks(raw, refined)
        self._raw_pending[content_hash] = raw
        return None

    def _quality_key(self, content_hash: str) -> str:
        if self._quality_fp is None:  # computed once: a fingerprint per photo costs the open ~0.3 s per 300
            self._quality_fp = fingerprint(detect=self.detect_fp, side=curate.SHARPNESS_SIDE)
        return f"quality:{content_hash}:{self._quality_fp}"

    def cached_quality(self, content_hash: str) -> curate.FrameQuality | None:
        cached = self.ctx.store.get_json(self._quality_key(content_hash))
        try:
            return None if cached is None else curate.FrameQuality.from_json(cached)
        except (KeyError, TypeError, ValueError):
            return None

    def _picture_key(self, content_hash: str) -> str:
        if self._picture_fp is None:  # once, as for the quality key
            d = self.ctx.config.detect
            self._picture_fp = fingerprint(size=d.size, slack=DETECT_DECODE_SLACK, v=borders.VERSION)
        return f"picture:{content_hash}:{self._picture_fp}"

    def cached_picture(self, content_hash: str) -> borders.PictureBox | None:
        cached = self.ctx.store.get_json(self._picture_key(content_hash))
        try:
            return None if cached is None else borders.PictureBox.from_json(cached)
        except (KeyError, TypeError, ValueError):
            return None

    def needs_detection(self, r: FrameResult) -> bool:
        if r.detection is None or r.quality is None or r.picture is None:
            return True
        if self.identity_on and r.detection.faces:
            return self.ctx.store.get_array(f"embed:{r.frame.hash}:{self.embed_fp}") is None
        return False

    # models, loaded on first use ----------------------------------------------------------------
    @property
    def identity_on(self) -> bool:
        return FACE_EMBEDDER.path.is_file()

    def detector(self) -> face_mod.FaceDetector:
        if self._detector is None:
            d = self.ctx.config.detect
            mtcnn = load_face_detector(self.ctx.device, d.min_face_size, d.thresholds)
            self._detector = face_mod.FaceDetector(mtcnn, batch_size=face_mod.batch_size_for(d.batch_size,
                                                                                            self.ctx.device))
        return self._detector

    def embedder(self) -> face_mod.FaceEmbedder | None:
        if not self._embedder_checked:
            self._embedder_checked = True
            model = load_face_embedder(self.ctx.device)
            self._embedder = None if model is None else face_mod.FaceEmbedder(model, self.ctx.device)
        return self._embedder

    def warm_up(self) -> None:
        self.detector()  # loading the weights is unpickling: it holds the interpreter lock

    # detect -------------------------------------------------------------------------------------
    def detect(self, todo: list[FrameResult], progress: Progress, cancel: threading.Event | None) -> int:
        """Detect faces (and embeddings when identity matching is on)."""
        p = self.ctx
        d = p.config.detect
        detector, embedder = self.detector(), self.embedder()
        batch_size = detector.per_call

        def decode(r: FrameResult):
            with p.timed("decode"):
                return open_photo(r.frame.path, max_side=d.size, max_pixels=p.config.scan.max_pixels,
                                  slack=DETECT_DECODE_SLACK)

        def flush(batch: list[tuple[FrameResult, object]]) -> None:
            need = [(r, ph) for r, ph in batch if r.detection is None and r.frame.hash not in self._raw_pending]
            with p.timed("detect"):
                found = detector.detect([ph for _, ph in need]) if need else []
            raws = {r.frame.hash: det for (r, _), det in zip(need, found)}
            self._second_pass([(r, ph) for r, ph in batch if r.detection is None], raws)
            for r, ph in batch:
                if r.quality is None:  # measured on the picture already decoded for detection
                    with p.timed("quality"):
                        r.quality = curate.frame_quality(ph, r.detection)
                    p.store.put_json(self._quality_key(r.frame.hash), r.quality.to_json())
                if r.picture is None:  # its flat borders, on the same picture
                    with p.timed("borders"):
                        r.picture = borders.find_picture(ph)
                    p.store.put_json(self._picture_key(r.frame.hash), r.picture.to_json())
                if embedder is not None:
                    with p.timed("embed"):
                        vectors = embedder.embed(ph, r.detection)
                    p.store.put_array(f"embed:{r.frame.hash}:{self.embed_fp}", vectors)
                r.status, r.error = FrameStatus.QUEUED, None
                progress(r)

        return p.decode_in_batches(todo, decode, batch_size, flush, progress, cancel)

    def _second_pass(self, batch: list[tuple[FrameResult, object]], fresh: dict[str, FaceDetection]) -> None:
        """Refine the landmarks of ``batch`` while the photos are decoded, and store them apart from
        MTCNN's detection. ``fresh``: the detections MTCNN has just made (the others are stored);
        they are stored here, just before their landmarks, and ``r.detection`` is set only after
        both: an interrupted run counts only what is stored."""
        p = self.ctx
        raws = [fresh.get(r.frame.hash) or self._raw_pending.pop(r.frame.hash) for r, _ in batch]
        settings = self.landmark_settings
        refined = [None] * len(batch)
        if settings.rounds > 0 and batch:
            on_cpu = p.device == "cpu"
            workers = self.detector().workers if on_cpu else 1
            with p.timed("landmarks"), face_mod.torch_threads(1) if on_cpu else nullcontext():
                refined = landmarks_mod.second_pass(self.detector().mtcnn.onet, [ph for _, ph in batch], raws,
                                                    settings, p.device, workers=workers)
        for (r, _), raw, lm in zip(batch, raws, refined):
            if r.frame.hash in fresh:
                p.store.put_json(f"faces:{r.frame.hash}:{self.detect_fp}", raw.to_json())
            if lm is not None and raw.faces:
                p.store.put_array(f"landmarks:{r.frame.hash}:{self.landmarks_fp}", lm)
            r.detection = landmarks_mod.with_landmarks(raw, lm)

    # select -------------------------------------------------------------------------------------
    def _faces_kept(self, det: FaceDetection) -> FaceDetection:
        keep = tuple(f for f in det.faces if f.prob >= self.ctx.config.detect.min_confidence)
        return FaceDetection(det.width, det.height, keep)

    def select(self) -> None:
        """Choose the subject's face in every detected photo and score how frontal it is."""
        p = self.ctx
        cfg = p.config
        usable = {h: r for h, r in p.results.items() if r.detection is not None and r.status is not FrameStatus.FAILED}
        dets = {h: self._faces_kept(r.detection) for h, r in usable.items()}
        embeddings: dict[str, np.ndarray] = {}
        if self.identity_on and self.embedder() is not None:
            for h, r in usable.items():
                e = p.store.get_array(f"embed:{h}:{self.embed_fp}")
                if e is not None:
                    keep = [i for i, f in enumerate(r.detection.faces) if f.prob >= cfg.detect.min_confidence]
                    embeddings[h] = e[keep] if len(e) == len(r.detection.faces) else e[:0]
        identity = identity_embedding(embeddings, cfg.identity.max_distance) if embeddings else None
        if identity is None and not any("identity matching is off" in n for n in p.notices):
            p.notices.append(
                "identity matching is off: the face embedder's weights "
                f"({FACE_EMBEDDER.filename}) are not in {FACE_EMBEDDER.path.parent}. Each photo uses the "
                "face nearest where the subject usually is. To match the person by identity, run "
                "`alignimation-tui models --download` (or put the file there).")
        anchor = anchor_face(dets, p.named_reference_hash())
        for h, r in usable.items():
            det = dets[h]
            distance = None
            if identity is not None and h in embeddings:
                index, distance = choose_by_identity(embeddings[h], identity, cfg.identity.max_distance)
            else:
                index = choose_by_position(det, anchor)
            if index is None:
                r.subject = r.transform = None
                r.status = FrameStatus.NO_SUBJECT
                r.error = "no face found" if not det.faces else (
                    f"no face matches the subject (closest distance {distance:.2f} > "
                    f"identity.max_distance {cfg.identity.max_distance})")
                continue
            face = det.faces[index]
            scores = facing_scores(face.landmarks)
            r.subject = Subject(index, face, scores, distance)
            r.error = None
            f = cfg.facing
            turned = is_turned(scores, f.max_yaw_deg, f.min_eye_ratio, f.min_mouth_ratio)
            r.status = FrameStatus.TURNED if turned else FrameStatus.QUEUED

    # reference and register ---------------------------------------------------------------------
    def choose_reference(self) -> Reference | None:
        p = self.ctx
        named = p.named_reference_hash()
        if named is not None:
            r = p.results[named]
            if r.subject is None:
                raise ConfigError("register.reference", f"{r.frame.path.name} has no usable face "
                                  f"({r.error or r.status.value})")
        else:
            # Once chosen, the automatic reference stays while it is usable: a photo added later
            # (even one dated earlier) is registered against it, not the other way round.
            stored = (p.store.get_json(AUTO_REFERENCE_KEY) or {}).get("hash")
            r = p.results.get(stored) if stored else None
            if r is None or not usable_for_reference(r):
                r = next((r for r in p.results.values() if usable_for_reference(r)), None)
                if r is None:
                    return None
                p.store.put_json(AUTO_REFERENCE_KEY, {"hash": r.frame.hash})
        canvas, scale = reg.canvas_for(r.detection.width, r.detection.height, p.config.register.long_side)
        return Reference(r.frame.hash, np.asarray(r.subject.face.landmarks), canvas, scale)

    def register(self, ref: Reference, compute: bool) -> None:
        """Closed form, then batched semantic refinement, for the frames with no stored transform."""
        p = self.ctx
        subjects = [r for r in p.results.values() if r.subject is not None]
        if not subjects:
            return
        fp = self.register_fp(ref)
        todo = []
        keys = {}
        for r in subjects:
            keys[r.frame.hash] = key = self._transform_key(r, fp)
            if r.transform is not None and r.extra.get("transform_key") == key:
                continue  # already loaded for this reference, settings and face
            cached = p.store.get_json(key)
            if cached is not None:
                r.transform = Transform.from_json(cached)
                r.extra["transform_key"] = key
            else:
                todo.append(r)
        if not compute:
            for r in todo:
                r.error = "no stored transform"
            todo = []
        if todo:
            rc = p.config.register
            src = np.stack([np.asarray(r.subject.face.landmarks) for r in todo])
            weights = np.tile(np.asarray(rc.landmark_weights, np.float64), (len(todo), 1))
            sizes = np.array([[r.detection.width, r.detection.height] for r in todo], np.float64)
            settings = reg.RefineSettings(rc.sigma, rc.work_size, rc.iterations, batch_size=rc.batch_size) \
                if rc.refine else None
            ref_face = p.results[ref.hash].subject.face
            # On a CPU the refinement's many small ops run fastest on one thread (see face.AUTO_BATCH).
            with face_mod.torch_threads(1) if p.device == "cpu" else nullcontext():
                matrices, _, _ = reg.register_frames(
                    src, weights, sizes, ref.landmarks, np.asarray(rc.landmark_weights), ref.canvas, ref.scale,
                    boxes=np.array([r.subject.face.box for r in todo]), ref_box=np.asarray(ref_face.box),
                    settings=settings, device=p.device)
            residuals = reg.residual_pct(matrices, src, ref.landmarks * ref.scale, ref.canvas[1])
            for r, m, res in zip(todo, matrices, residuals):
                r.transform = Transform(tuple(tuple(float(v) for v in row) for row in m), ref.canvas, float(res))
                p.store.put_json(keys[r.frame.hash], r.transform.to_json())
                r.extra["transform_key"] = keys[r.frame.hash]
        for r in subjects:
            if r.status is not FrameStatus.TURNED and r.transform is not None:
                r.status = FrameStatus.ALIGNED

    def colour_region(self, r: FrameResult) -> tuple[float, float, float, float] | None:
        return r.subject.face.box if isinstance(r.subject, Subject) else None

    # framing ------------------------------------------------------------------------------------
    def subject_on_canvas(self, ref: Reference, kept: list[FrameResult]) -> SubjectOnCanvas:
        """The eyes on the canvas: the median over the kept frames of where their registration puts
        each frame's own eyes (the reference's eyes when none is kept yet). Not the reference's eyes
        alone: a reference whose eyes sit wide or narrow for its face (a smile, a slight turn) would
        otherwise set every frame's eye distance off by as much (+6 % on faces_jerry)."""
        eyes = [reg.apply(np.asarray(r.transform.matrix, np.float64), np.asarray(r.subject.face.landmarks[:2]))
                for r in kept if isinstance(r.subject, Subject) and r.transform is not None]
        if eyes:
            left, right = np.median(np.stack(eyes), axis=0)
        else:
            left, right = np.asarray(ref.landmarks[:2], np.float64) * ref.scale
        return SubjectOnCanvas.from_eyes(left, right)
