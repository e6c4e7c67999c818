"""The one synchronous API that both front ends drive: scan -> detect -> select -> register -> render.

Each step reads and writes the store, so a step that already ran for a photo (same content, same
settings) is not run again. Nothing here prints; callers get progress through callbacks and
``notices`` (plain sentences for the person at the keyboard).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import body_pipeline, curate
from . import register as reg
from .config import Config, ConfigError
from .detect import face as face_mod
from .detect.facing import facing_scores, is_turned
from .detect.identity import anchor_face, choose_by_identity, choose_by_position, identity_embedding
from .domain import FaceDetection, FrameResult, FrameStatus, Subject, Transform, Verdict
from .names import printable
from .nudge import Nudge, anchor_points, nudged
from .models import FACE_EMBEDDER, choose_device, load_face_detector, load_face_embedder
from .photos import PhotoError, decode_ahead, open_photo
from .render import OUTPUT_SUFFIXES, RenderItem, RenderResult, RenderSettings, write_animation
from .scan import (link_problem, list_photos, photo_suffixes, read_frame, stat_matches, unreadable_format,
                   unreadable_frame)
from .store import Store, fingerprint

log = logging.getLogger(__name__)

Progress = Callable[[FrameResult], None]
AUTO_REFERENCE_KEY = "reference:auto:0"
_END = object()
_UNREAD = object()  # add_path: the stored stat record has not been read yet
# Detection takes the JPEG DCT scale that falls at most this short of detect.size as it is
# (4032 px -> 1008 px): a quarter of the decoding of the next scale up, and no resize.
DETECT_DECODE_SLACK = 0.05


class OutputError(ValueError):
    """The output path is not acceptable (it would overwrite a photo, or has the wrong suffix)."""


@dataclass(frozen=True)
class Reference:
    hash: str
    landmarks: np.ndarray  # (5, 2) in the reference's upright pixels
    canvas: tuple[int, int]
    scale: float  # reference pixels -> canvas pixels


class Pipeline:
    def __init__(self, folder: Path, config: Config, store: Store | None = None):
        self.folder = Path(folder)
        self.config = config
        self.store = store or Store(self.folder, config.store.cache_dir, config.store.data_dir)
        self.device = choose_device(config.device)
        self.results: dict[str, FrameResult] = {}
        self.reference: Reference | None = None
        self.notices: list[str] = list(self.store.warnings)
        self.store.on_warning = self.notices.append  # a cache rebuilt while running
        self._detector: face_mod.FaceDetector | None = None
        self._embedder: face_mod.FaceEmbedder | None = None
        self._embedder_checked = False
        self.last_render: RenderResult | None = None
        self._quality_fp: str | None = None
        # Seconds spent per stage (decode: summed over the decode threads; decode_wait: time the
        # detector waited for a decoded photo), for benchmarks and profiling.
        self.stage_seconds: dict[str, float] = {}
        self._stage_lock = threading.Lock()

    def add_seconds(self, stage: str, seconds: float) -> None:
        with self._stage_lock:
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    @contextmanager
    def timed(self, stage: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add_seconds(stage, time.perf_counter() - started)

    def _timed_iter(self, items: Iterator, stage: str) -> Iterator:
        while True:
            with self.timed(stage):
                item = next(items, _END)
            if item is _END:
                return
            yield item

    @property
    def body(self) -> bool:
        return self.config.mode == "body"

    # fingerprints ------------------------------------------------------------------------------
    @property
    def detect_fp(self) -> str:
        d = self.config.detect
        return fingerprint(model=face_mod.DETECTOR_ID, size=d.size, min_face_size=d.min_face_size,
                           thresholds=d.thresholds, decode_slack=DETECT_DECODE_SLACK)

    @property
    def embed_fp(self) -> str:
        return fingerprint(model=face_mod.EMBEDDER_ID, detect=self.detect_fp)

    # models, loaded on first use ---------------------------------------------------------------
    @property
    def identity_on(self) -> bool:
        return FACE_EMBEDDER.path.is_file()

    def detector(self) -> face_mod.FaceDetector:
        if self._detector is None:
            d = self.config.detect
            mtcnn = load_face_detector(self.device, d.min_face_size, d.thresholds)
            self._detector = face_mod.FaceDetector(mtcnn, batch_size=face_mod.batch_size_for(d.batch_size, self.device))
        return self._detector

    def embedder(self) -> face_mod.FaceEmbedder | None:
        if not self._embedder_checked:
            self._embedder_checked = True
            model = load_face_embedder(self.device)
            self._embedder = None if model is None else face_mod.FaceEmbedder(model, self.device)
        return self._embedder

    # scan --------------------------------------------------------------------------------------
    def scan(self, exclude: set[Path] = frozenset(), known_only: bool = False) -> list[FrameResult]:
        """Find the photos, hash them (file stats are cached, so unchanged files are not re-read),
        and fill each result from the store. Returns results in date order. ``known_only`` leaves
        photos that would have to be read (new or changed) in ``unscanned``, for later."""
        self.results = {}
        self.unscanned: list[Path] = []
        with self.timed("scan"):
            for path in list_photos(self.folder, exclude):
                cached_stat = self.store.get_json(self._stat_key(path))
                if known_only and not stat_matches(path, cached_stat):
                    self.unscanned.append(path)
                    continue
                self.add_path(path, cached_stat)
        self.sort_results()
        return list(self.results.values())

    def add_path(self, path: Path, cached_stat: dict | None | object = _UNREAD) -> FrameResult | None:
        """Read one photo's frame and whatever the store knows of it; None if it vanished.
        ``cached_stat``: the stored stat record for ``path`` when the caller has read it already."""
        problem = link_problem(path, self.folder, self.config.scan.follow_symlinks) or unreadable_format(path)
        if problem is not None:
            return self._unreadable(path, problem)
        stat_key = self._stat_key(path)
        if cached_stat is _UNREAD:
            cached_stat = self.store.get_json(stat_key)
        try:
            frame, record = read_frame(path, cached_stat)
        except FileNotFoundError:
            log.info("skipped %s: gone before it could be read", path)
            return None
        except OSError as exc:
            return self._unreadable(path, f"cannot read the file: {exc.strerror or exc}")
        if record is not cached_stat:  # unchanged files cost no write (a write is a transaction)
            self.store.put_json(stat_key, record)
        self._forget_others_at(path, frame.hash)  # the photo at this path was edited: forget the old one
        known = self.results.get(frame.hash)
        if known is not None and known.frame.path == path:
            return known  # seen again (a watcher event for a photo already scanned)
        if known is not None:
            other = self.results[frame.hash].frame.path.name
            self.notices.append(f"{path.name} is the same photo as {other}; it is used once")
            return None
        result = FrameResult(frame=frame, verdict=self.store.decisions.verdict(frame.hash),
                             nudge=self.store.decisions.nudge(frame.hash))
        if self.body:
            result.detection = body_pipeline.cached_detection(self, frame.hash)
        elif (cached := self.store.get_json(f"faces:{frame.hash}:{self.detect_fp}")) is not None:
            result.detection = FaceDetection.from_json(cached)
            result.quality = self._cached_quality(frame.hash)
        self.results[frame.hash] = result
        return result

    @staticmethod
    def _stat_key(path: Path) -> str:
        return f"stat:{os.path.realpath(path)}"

    def _forget_others_at(self, path: Path, keep: str) -> None:
        for h, r in list(self.results.items()):
            if r.frame.path == path and h != keep:
                del self.results[h]

    def _unreadable(self, path: Path, reason: str) -> FrameResult:
        frame = unreadable_frame(path)
        self._forget_others_at(path, frame.hash)
        result = FrameResult(frame=frame, status=FrameStatus.FAILED, error=reason,
                             verdict=self.store.decisions.verdict(frame.hash), extra={"unreadable": True})
        self.results[frame.hash] = result
        return result

    def remove_path(self, path: Path) -> str | None:
        """Forget the photo that was at ``path`` (deleted or moved away); returns its hash."""
        for h, r in list(self.results.items()):
            if r.frame.path == path:
                del self.results[h]
                return h
        return None

    def sort_results(self) -> None:
        self.results = dict(sorted(self.results.items(), key=lambda kv: kv[1].frame.sort_key))

    def set_verdict(self, content_hash: str, verdict: Verdict) -> None:
        """Store the person's decision first (it survives a crash), then show it."""
        self.store.decisions.set_verdict(content_hash, verdict)
        r = self.results.get(content_hash)
        if r is not None:
            r.verdict = verdict

    def set_nudge(self, content_hash: str, nudge: Nudge | None) -> None:
        """Store the person's correction of one frame first (like a verdict), then use it."""
        self.store.decisions.set_nudge(content_hash, nudge)
        r = self.results.get(content_hash)
        if r is not None:
            r.nudge = None if nudge is None or nudge.is_identity else nudge

    def final_matrix(self, r: FrameResult) -> np.ndarray:
        """The frame's matrix from the upright original to the output canvas, nudge included."""
        return nudged(np.asarray(r.transform.matrix), r.nudge, anchor_points(r.subject))

    def _quality_key(self, content_hash: str) -> str:
        if self._quality_fp is None:  # computed once: a fingerprint per photo costs the open ~0.3 s per 300
            self._quality_fp = fingerprint(detect=self.detect_fp, side=curate.SHARPNESS_SIDE)
        return f"quality:{content_hash}:{self._quality_fp}"

    def _cached_quality(self, content_hash: str) -> curate.FrameQuality | None:
        cached = self.store.get_json(self._quality_key(content_hash))
        try:
            return None if cached is None else curate.FrameQuality.from_json(cached)
        except (KeyError, TypeError, ValueError):
            return None

    def pin_reference(self, content_hash: str | None) -> None:
        """Pin (or with None, unpin) the reference; the next ``register`` re-registers every frame
        from cached detections."""
        self.store.decisions.pin_reference(content_hash)

    def process(self, results: list[FrameResult] | None = None, progress: Progress = lambda r: None,
                cancel: threading.Event | None = None) -> Reference | None:
        """Detect what lacks detections, then choose subjects and register: what a new photo
        needs to reach ``aligned``. Cached work is not repeated."""
        self.detect(results, progress=progress, cancel=cancel)
        if cancel is not None and cancel.is_set():
            return self.reference
        self.select()
        return self.register()

    def needs_detection(self, result: FrameResult) -> bool:
        if result.extra.get("unreadable"):
            return False
        if self.body:
            return body_pipeline.needs_detection(self, result)
        if result.detection is None or result.quality is None:
            return True
        if self.identity_on and result.detection.faces:
            return self.store.get_array(f"embed:{result.frame.hash}:{self.embed_fp}") is None
        return False

    # detect ------------------------------------------------------------------------------------
    def detect(self, results: list[FrameResult] | None = None, progress: Progress = lambda r: None,
               cancel: threading.Event | None = None) -> int:
        """Detect faces (and embeddings when identity matching is on) for results that lack them.
        Broken photos become ``failed`` with the reason. Returns how many photos were decoded."""
        if self.body:
            return body_pipeline.detect(self, results, progress, cancel)
        todo = [r for r in (results if results is not None else self.results.values()) if self.needs_detection(r)]
        if not todo:
            return 0
        d = self.config.detect
        detector, embedder = self.detector(), self.embedder()
        batch_size = detector.per_call

        def decode(r: FrameResult):
            with self.timed("decode"):
                return open_photo(r.frame.path, max_side=d.size, max_pixels=self.config.scan.max_pixels,
                                  slack=DETECT_DECODE_SLACK)

        def flush(batch: list[tuple[FrameResult, object]]) -> None:
            need = [(r, p) for r, p in batch if r.detection is None]
            with self.timed("detect"):
                found = detector.detect([p for _, p in need]) if need else []
            for (r, _), det in zip(need, found):
                self.store.put_json(f"faces:{r.frame.hash}:{self.detect_fp}", det.to_json())
                r.detection = det  # after the store: an interrupted run counts only what is stored
            for r, p in batch:
                if r.quality is None:  # measured on the picture already decoded for detection
                    with self.timed("quality"):
                        r.quality = curate.frame_quality(p, r.detection)
                    self.store.put_json(self._quality_key(r.frame.hash), r.quality.to_json())
                if embedder is not None:
                    with self.timed("embed"):
                        vectors = embedder.embed(p, r.detection)
                    self.store.put_array(f"embed:{r.frame.hash}:{self.embed_fp}", vectors)
                r.status, r.error = FrameStatus.QUEUED, None
                progress(r)

        return self.decode_in_batches(todo, decode, batch_size, flush, progress, cancel)

    def decode_in_batches(self, todo: list[FrameResult], decode: Callable, batch_size: int,
                          flush: Callable[[list], None], progress: Progress,
                          cancel: threading.Event | None) -> int:
        """Decode ``todo`` ahead on the decode threads (bounded) and hand ``flush`` batches of
        ``(result, photo)``; a photo that cannot be decoded becomes ``failed`` with the reason.
        Stops early when ``cancel`` is set. Returns how many photos were decoded."""
        batch: list[tuple[FrameResult, object]] = []
        decoded = 0
        workers = self.config.detect.decode_workers
        with closing(decode_ahead(todo, decode, workers, ahead=2 * batch_size)) as decoding:
            for r, photo, error in self._timed_iter(decoding, "decode_wait"):
                if cancel is not None and cancel.is_set():
                    break
                decoded += 1
                if error is not None:
                    r.status, r.error = FrameStatus.FAILED, error
                    progress(r)
                    continue
                r.status = FrameStatus.DETECTING
                batch.append((r, photo))
                if len(batch) >= batch_size:
                    flush(batch)
                    batch = []
        if batch:
            flush(batch)
        return decoded

    # select ------------------------------------------------------------------------------------
    def _faces_kept(self, det: FaceDetection) -> FaceDetection:
        keep = tuple(f for f in det.faces if f.prob >= self.config.detect.min_confidence)
        return FaceDetection(det.width, det.height, keep)

    def select(self) -> None:
        """Choose the subject's face in every detected photo and score how frontal it is."""
        if self.body:
            return body_pipeline.select(self)
        with self.timed("select"):
            self._select()

    def _select(self) -> None:
        cfg = self.config
        usable = {h: r for h, r in self.results.items() if r.detection is not None and r.status is not FrameStatus.FAILED}
        dets = {h: self._faces_kept(r.detection) for h, r in usable.items()}
        embeddings: dict[str, np.ndarray] = {}
        if self.identity_on and self.embedder() is not None:
            for h, r in usable.items():
                e = self.store.get_array(f"embed:{h}:{self.embed_fp}")
                if e is not None:
                    keep = [i for i, f in enumerate(r.detection.faces) if f.prob >= cfg.detect.min_confidence]
                    embeddings[h] = e[keep] if len(e) == len(r.detection.faces) else e[:0]
        identity = identity_embedding(embeddings, cfg.identity.max_distance) if embeddings else None
        if identity is None and not any("identity matching is off" in n for n in self.notices):
            self.notices.append(
                "identity matching is off: the face embedder's weights "
                f"({FACE_EMBEDDER.filename}) are not in {FACE_EMBEDDER.path.parent}. Each photo uses the "
                "face nearest where the subject usually is. To match the person by identity, run "
                "`alignimation-tui models --download` (or put the file there).")
        anchor = anchor_face(dets, self._named_reference_hash())
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

    # register ----------------------------------------------------------------------------------
    def _named_reference_hash(self) -> str | None:
        name = self.config.register.reference
        if name:
            for h, r in self.results.items():
                if name in (r.frame.path.name, h):
                    return h
            raise ConfigError("register.reference", f"no photo named {name!r} in {self.folder}")
        pinned = self.store.decisions.reference
        return pinned if pinned in self.results else None

    def _usable_for_reference(self, r: FrameResult) -> bool:
        if r.subject is None or r.verdict is Verdict.REJECTED:
            return False
        return r.status is not FrameStatus.TURNED or r.verdict is Verdict.ACCEPTED

    def choose_reference(self) -> Reference | None:
        if self.body:
            return body_pipeline.choose_reference(self)
        named = self._named_reference_hash()
        if named is not None:
            r = self.results[named]
            if r.subject is None:
                raise ConfigError("register.reference", f"{r.frame.path.name} has no usable face "
                                  f"({r.error or r.status.value})")
        else:
            # Once chosen, the automatic reference stays while it is usable: a photo added later
            # (even one dated earlier) is registered against it, not the other way round.
            stored = (self.store.get_json(AUTO_REFERENCE_KEY) or {}).get("hash")
            r = self.results.get(stored) if stored else None
            if r is None or not self._usable_for_reference(r):
                r = next((r for r in self.results.values() if self._usable_for_reference(r)), None)
                if r is None:
                    return None
                self.store.put_json(AUTO_REFERENCE_KEY, {"hash": r.frame.hash})
        canvas, scale = reg.canvas_for(r.detection.width, r.detection.height, self.config.register.long_side)
        return Reference(r.frame.hash, np.asarray(r.subject.face.landmarks), canvas, scale)

    def register_fp(self, ref: Reference) -> str:
        rc = self.config.register
        return fingerprint(ref=ref.hash, canvas=ref.canvas, weights=rc.landmark_weights, detect=self.detect_fp,
                           refine=[rc.refine, rc.sigma, rc.work_size, rc.iterations])

    @staticmethod
    def _transform_key(r: FrameResult, fp: str) -> str:
        # The chosen face is part of the key: a different choice (identity weights installed,
        # another min_confidence) must not reuse a transform fitted to another face.
        return f"transform:{r.frame.hash}:{fingerprint(fp=fp, face=r.subject.face.landmarks)}"

    def register(self, compute: bool = True) -> Reference | None:
        """Register every subject onto the reference's canvas: closed form, then batched semantic
        refinement. Transforms are cached against the reference and the settings, so only new
        frames are registered; a new reference re-registers all from cached detections.
        ``compute=False`` (``--render-only``) only reads stored transforms."""
        if self.body:
            ref = body_pipeline.register(self)
        else:
            with self.timed("register"):
                ref = self._register(compute)
        curate.apply_selection(list(self.results.values()), self.config.select, self.config.facing.keep_turned)
        return ref

    def _register(self, compute: bool = True) -> Reference | None:
        self.reference = ref = self.choose_reference()
        subjects = [r for r in self.results.values() if r.subject is not None]
        if ref is None or not subjects:
            return ref
        fp = self.register_fp(ref)
        todo = []
        keys = {}
        for r in subjects:
            keys[r.frame.hash] = key = self._transform_key(r, fp)
            if r.transform is not None and r.extra.get("transform_key") == key:
                continue  # already loaded for this reference, settings and face
            cached = self.store.get_json(key)
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
            rc = self.config.register
            src = np.stack([np.asarray(r.subject.face.landmarks) for r in todo])
            weights = np.tile(np.asarray(rc.landmark_weights, np.float64), (len(todo), 1))
            sizes = np.array([[r.detection.width, r.detection.height] for r in todo], np.float64)
            settings = reg.RefineSettings(rc.sigma, rc.work_size, rc.iterations, batch_size=rc.batch_size) \
                if rc.refine else None
            ref_face = self.results[ref.hash].subject.face
            # On a CPU the refinement's many small ops run fastest on one thread (see face.AUTO_BATCH).
            with face_mod.torch_threads(1) if self.device == "cpu" else nullcontext():
                matrices, _, _ = reg.register_frames(
                    src, weights, sizes, ref.landmarks, np.asarray(rc.landmark_weights), ref.canvas, ref.scale,
                    boxes=np.array([r.subject.face.box for r in todo]), ref_box=np.asarray(ref_face.box),
                    settings=settings, device=self.device)
            residuals = reg.residual_pct(matrices, src, ref.landmarks * ref.scale, ref.canvas[1])
            for r, m, res in zip(todo, matrices, residuals):
                r.transform = Transform(tuple(tuple(float(v) for v in row) for row in m), ref.canvas, float(res))
                self.store.put_json(keys[r.frame.hash], r.transform.to_json())
                r.extra["transform_key"] = keys[r.frame.hash]
        for r in subjects:
            if r.status is not FrameStatus.TURNED and r.transform is not None:
                r.status = FrameStatus.ALIGNED
        return ref

    def restore(self, exclude: set[Path] = frozenset()) -> list[str]:
        """``--render-only``: results from the store alone (cached detections and transforms), with no
        detection and no registration. Returns one sentence per photo that lacks something; those
        photos are left out of the render."""
        self.scan(exclude)
        self.select()
        self.register(compute=False)
        missing = []
        for r in self.results.values():
            if r.detection is None:
                missing.append(f"{r.frame.path.name}: no stored detection (new, changed or unreadable photo)")
            elif r.subject is not None and r.transform is None and r.verdict is not Verdict.REJECTED:
                missing.append(f"{r.frame.path.name}: no stored transform for the current reference and settings")
        return missing

    # render ------------------------------------------------------------------------------------
    def kept(self) -> list[FrameResult]:
        keep_turned = self.config.facing.keep_turned
        out = []
        for r in self.results.values():
            if r.transform is None or r.verdict is Verdict.REJECTED:
                continue
            if r.verdict is Verdict.ACCEPTED or r.status is FrameStatus.ALIGNED or (
                    keep_turned and r.status is FrameStatus.TURNED):
                out.append(r)
        return out

    def default_output(self) -> Path:
        if self.config.render.output:
            return Path(self.config.render.output).expanduser()
        return Path.cwd() / f"{self.folder.resolve().name or 'photos'}-timelapse.mp4"

    def check_output(self, out: Path) -> None:
        photos = {Path(os.path.realpath(r.frame.path)) for r in self.results.values()}
        if out.resolve() in photos or (out.resolve().parent == self.folder.resolve()
                                       and out.suffix.lower() in photo_suffixes()):
            raise OutputError(f"refusing to write {out}: it would overwrite or add a photo in the folder")
        if out.suffix.lower() not in OUTPUT_SUFFIXES:
            raise OutputError(f"output {out} must end in {', '.join(OUTPUT_SUFFIXES)}")

    def render(self, out: Path, frames_dir: Path | None = None,
               progress: Callable[[int], None] = lambda n: None) -> int:
        self.check_output(out)
        if frames_dir is not None and frames_dir.resolve() == self.folder.resolve():
            raise OutputError("refusing to write aligned frames into the photo folder itself")
        kept = self.kept()
        items = [RenderItem(r.frame.path, printable(r.frame.path.name), np.asarray(r.transform.matrix), hash=r.frame.hash,
                            taken_at=r.frame.taken_at,
                            size=(r.detection.width, r.detection.height) if r.detection else None,
                            info={"verdict": r.verdict.value, "status": r.status.value,
                                  "residual_pct": r.transform.residual_pct,
                                  **({"nudge": r.nudge.to_json()} if r.nudge else {})},
                            nudge=r.nudge, anchor=anchor_points(r.subject))
                 for r in kept]
        if self.body:
            items = body_pipeline.render_items(self, kept, items)
        with self.timed("render"):
            self.last_render = write_animation(items, self.reference.canvas, out,
                                               RenderSettings.from_config(self.config),
                                               frames_dir=frames_dir, progress=progress)
        self.notices.extend(self.last_render.notices)
        return self.last_render.photos

    def close(self) -> None:
        self.store.close()


__all__ = ["Pipeline", "Reference", "OutputError", "PhotoError"]
