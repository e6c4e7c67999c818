"""The one synchronous API that both front ends drive: scan -> detect -> select -> register -> render.
``process`` is the one step sequence both run (``--once`` once, the app's worker per batch of
photos and after every decision).

Each step reads and writes the store, so a step that already ran for a photo (same content, same
settings) is not run again. Nothing here prints; callers get progress through callbacks and
``notices`` (plain sentences for the person at the keyboard). What depends on the mode (face or
body) is behind ``self.mode`` (see ``modes``); the framing (``framing``) is the same for both.
"""
from __future__ import annotations

import logging
import operator
import os
import threading
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from collections.abc import Sequence
from typing import Callable, Iterator

import numpy as np

from . import curate, outliers
from .colour import STATS_SIDE, ColourGain, means_key, neutral_key, neutral_means, plan_gains, region_means
from .config import Config, ConfigError
from .domain import FrameResult, FrameStatus, Verdict, is_kept
from .framing import Framing, FramingSettings, output_matrix, plan_framing
from .models import choose_device, collector_paused, freeze_long_lived
from .names import printable
from .modes import mode_for
from .modes.auto import ModeChoice, choose_mode
from .modes.base import Mode, Reference
from .nudge import Nudge, anchor_points, nudged
from .photos import PhotoError, decode_ahead, open_photo
from .render import OUTPUT_SUFFIXES, RenderItem, RenderResult, RenderSettings, write_animation
from .scan import (link_problem, list_photo_files, list_photos, photo_suffixes, read_frame, stat_matches,
                   unreadable_format, unreadable_frame)
from .fingerprint import fingerprint
from .decisions import DecisionChanges
from .store import Store

log = logging.getLogger(__name__)

Progress = Callable[[FrameResult], None]
_END = object()
_UNREAD = object()  # add_path: the stored stat record has not been read yet


@dataclass(frozen=True)
class PathChange:
    """What ``Pipeline.path_changed`` / ``path_removed`` did: the hashes whose results went (a front
    end removes their rows), the new result (to detect when it needs it), and whether the
    reference went with them (the next ``register`` chooses another and says so in ``notices``)."""

    removed: list[str]
    added: FrameResult | None
    reference_lost: bool


class _Listing(Sequence):
    """The folder's photos (``list_photos``), listed when first asked for; an unreadable folder
    has none (the scan says why)."""

    def __init__(self, folder: Path):
        self.folder, self._paths = folder, None

    def _listed(self) -> list[Path]:
        if self._paths is None:
            try:
                self._paths = list_photos(self.folder)
            except OSError:
                self._paths = []
        return self._paths

    def __len__(self) -> int:
        return len(self._listed())

    def __getitem__(self, index):
        return self._listed()[index]


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None  # gone or unreadable: read_frame asks again and says why


class OutputError(ValueError):
    """The output path is not acceptable (it would overwrite a photo, or has the wrong suffix)."""


def check_output_place(folder: Path, out: Path) -> None:
    """What can be said of an output path before any photo is looked at (``Pipeline.check_output``
    also knows the photos): not a photo's name in the photo folder, and a suffix we write."""
    if out.resolve().parent == Path(folder).resolve() and out.suffix.lower() in photo_suffixes():
        raise OutputError(f"refusing to write {out}: it would overwrite or add a photo in the folder")
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise OutputError(f"output {out} must end in {', '.join(OUTPUT_SUFFIXES)}")


class Pipeline:
    def __init__(self, folder: Path, config: Config, store: Store | None = None, look: bool = True):
        """``look=False`` (``--render-only``): ``mode = "auto"`` takes the stored choice and, where
        there is none, face mode, without looking at any photo (nothing is computed)."""
        self.folder = Path(folder)
        self._folder_text = os.fspath(self.folder)  # (``local_path`` compares strings: no Path per photo)
        self.config = config
        self.store = store or Store(self.folder, config.store.cache_dir, config.store.data_dir)
        # Chosen when a model is first needed (importing torch takes seconds; a re-render needs
        # none); a GPU asked for by name is checked now, before any work.
        self._device: str | None = choose_device("cuda") if config.device == "cuda" else None
        self.results: dict[str, FrameResult] = {}
        self.reference: Reference | None = None
        self.framing: Framing | None = None  # set with the reference (see ``register``)
        self.notices: list[str] = list(self.store.warnings)
        self.store.on_warning = self.notices.append  # a cache rebuilt while running
        # Seconds spent per stage (decode: summed over the decode threads; decode_wait: time the
        # detector waited for a decoded photo), for benchmarks, profiling and ``--once``'s time line.
        self.stage_seconds: dict[str, float] = {}
        self._stage_lock = threading.Lock()
        self.mode_choice: ModeChoice | None = None  # how ``mode = "auto"`` chose (None: chosen by the user)
        # What auto mode's look found (path -> the decoded photo, MTCNN's detection, OpenCV's thread
        # count), until the first detection takes it (``looked_faces``).
        self._looked: dict[Path, tuple] = {}
        self.looked_taken = 0  # how many of them face mode took (``--once``'s time line says so)
        if config.mode == "auto":
            with self.timed("mode"):
                photos = _Listing(self.folder)  # listed only if no choice is kept (a library: 0.1 s)
                self.mode_choice = choose_mode(self.store, photos if look else [], config.scan.max_pixels,
                                               self._find_faces, self._descriptor_early, self._looked_at)
            self.config = config = replace(config, mode=self.mode_choice.mode)
        self.mode: Mode = mode_for(self)
        self.last_render: RenderResult | None = None
        self._reference_names: dict[str, str] = {}  # the reference's file name, said when it goes
        self._reference_gone: tuple[str, str] | None = None  # (its name, "deleted" | "changed")

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

    def _descriptor_early(self) -> None:
        """Auto mode's look at a new folder met a close-up: face mode, which describes every face
        (when the descriptor is installed), is likely, so the descriptor starts loading beside the
        rest of the look (body mode describes a face only when it sees one from the front)."""
        from .models import dlib_weights_path, face_embedder_loading

        if dlib_weights_path() is not None:
            face_embedder_loading(self.device)

    def _find_faces(self, photo):
        """MTCNN on one decoded photo, for ``mode = "auto"``'s look at the folder (the same networks
        face mode then detects with: ``models.load_face_detector`` keeps them)."""
        from .detect.face import FaceDetector
        from .models import load_face_detector

        d = self.config.detect
        detector = FaceDetector(load_face_detector(self.device, d.min_face_size, d.thresholds), batch_size=1, workers=1)
        return detector.detect([photo])[0]

    def _looked_at(self, path: Path, photo, detection) -> None:
        """Keep what the look found in a photo, for face mode's detection of it (``looked_faces``):
        only OpenCV's (a CPU's) detections, which are the same for the same pixels and threads;
        a GPU's batches pad their photos differently."""
        import cv2

        if str(self.device).startswith("cpu"):  # (``models.load_face_detector``: OpenCV's networks there)
            self._looked[path] = (photo, detection, cv2.getNumThreads())

    def looked_faces(self, path: Path, photo):
        """MTCNN's detection of ``photo`` (just decoded for detection) when auto mode's look made it
        from the same pixels, with the same networks and OpenCV threads (a small photo: both decode
        it whole), else None; given once. Face mode takes it instead of detecting the photo again."""
        looked = self._looked.pop(path, None)
        if looked is None:
            return None
        import cv2

        from .detect.face import same_pixels

        seen, detection, threads = looked
        if threads != cv2.getNumThreads() or not same_pixels(seen, photo):
            return None
        with self._stage_lock:
            self.looked_taken += 1
        return detection

    # models, loaded on first use ---------------------------------------------------------------
    @property
    def device(self) -> str:
        if self._device is None:
            self._device = choose_device(self.config.device)
        return self._device

    @property
    def identity_on(self) -> bool:
        return self.mode.identity_on

    @property
    def mode_label(self) -> str:
        """The mode and, when ``mode = "auto"`` chose it, why: "body (auto: 9 of 9 sampled ...)"."""
        return self.mode_choice.label if self.mode_choice else self.mode.name

    def status_text(self) -> str:
        """What the status bar says of the mode and its models: "body (auto) · cpu · BlazePose"; the
        mode's name alone when the user chose it and the mode says it (``Mode.names_itself``)."""
        text = self.mode.status_text(str(self.device))
        if self.mode_choice is not None:
            return f"{self.mode.name} (auto) · {text}"
        return f"{self.mode.name} · {text}" if self.mode.names_itself else text

    def warm_up(self) -> None:
        """Load the detection models now rather than on the first photo (importing torch and
        unpickling the weights, with the garbage collector paused: nothing there is garbage), then
        put them out of the collector's sight: they live as long as the process."""
        with collector_paused(), self.timed("models"):
            self.mode.warm_up()
        freeze_long_lived()

    # scan --------------------------------------------------------------------------------------
    def scan(self, exclude: set[Path] = frozenset(), known_only: bool = False) -> list[FrameResult]:
        """Find the photos, hash them (file stats are cached, so unchanged files are not re-read),
        and fill each result from the store. Returns results in date order. ``known_only`` leaves
        photos that would have to be read (new or changed) in ``unscanned``, for later."""
        self.results = {}
        self.unscanned: list[Path] = []
        # hash -> the stored stat record its file matched (``known_only``): what ``folder_record`` keeps
        self.scan_stamps: dict[str, dict] = {}
        self.scan_listed = 0  # the photo files the folder listed
        with self.timed("scan"), self.store.read_ahead():
            real_folder = os.path.realpath(self.folder)
            paths = [(listed, self._stat_key(listed.path, real_folder, listed.link))
                     for listed in list_photo_files(self.folder, exclude)]
            self.store.prefetch([key for _, key in paths])  # a few queries, not one per photo
            records = [(listed, key, self.store.get_json(key)) for listed, key in paths]
            # and what the store knows of the photos whose hash the records give
            self.store.prefetch([key for _, _, record in records if isinstance(record, dict) and record.get("hash")
                                 for key in self.mode.stored_keys(str(record["hash"]))])
            for (path, link), stat_key, cached_stat in records:
                # One stat a photo that is not a link (a link is resolved and checked as before)
                st = None if link else _stat_or_none(path)
                if known_only and not stat_matches(path, cached_stat, st):
                    self.unscanned.append(path)
                    continue
                r = self.add_path(path, cached_stat, fresh=True, stat_key=stat_key, st=st, link=link)
                if known_only and r is not None and not link:
                    self.scan_stamps[r.frame.hash] = cached_stat
            self.scan_listed = len(paths)
        self.sort_results()
        return list(self.results.values())

    def scan_unscanned(self) -> None:
        """Read the photos ``scan(known_only=True)`` (or a folder's record) left in ``unscanned``,
        as new photos are, and put the results in date order again."""
        if self.unscanned:
            for path in self.unscanned:
                self.add_path(path)
            self.unscanned = []
            self.sort_results()

    def add_path(self, path: Path, cached_stat: dict | None | object = _UNREAD,
                 fresh: bool = False, stat_key: str | None = None, st: os.stat_result | None = None,
                 link: bool | None = None) -> FrameResult | None:
        """Read one photo's frame and whatever the store knows of it; None if it vanished.
        ``cached_stat``: the stored stat record for ``path`` when the caller has read it already;
        ``fresh``: no result is at ``path`` yet (a scan sees each path once: looking through every
        result for each photo made opening 1000 cached frames quadratic); ``stat_key``: the key of
        its stat record when the caller knows it (``_stat_key``); ``st``, ``link``: its ``os.stat``
        and whether it is a link, when the scan has just asked (``link=False``: not a link)."""
        path = self.local_path(path)
        problem = (None if link is False else link_problem(path, self.folder, self.config.scan.follow_symlinks)) \
            or unreadable_format(path)
        if problem is not None:
            return self._unreadable(path, problem)
        stat_key = stat_key or self._stat_key(path)
        if cached_stat is _UNREAD:
            cached_stat = self.store.get_json(stat_key)
        try:
            frame, record = read_frame(path, cached_stat, st)
        except FileNotFoundError:
            log.info("skipped %s: gone before it could be read", path)
            return None
        except OSError as exc:
            return self._unreadable(path, f"cannot read the file: {exc.strerror or exc}")
        if record is not cached_stat:  # unchanged files cost no write (a write is a transaction)
            self.store.put_json(stat_key, record)
        if not fresh:
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
        result.detection = self.mode.cached_detection(frame.hash)
        if result.detection is not None:
            result.quality = self.mode.cached_quality(frame.hash)
            result.picture = self.mode.cached_picture(frame.hash)
        self.results[frame.hash] = result
        return result

    @staticmethod
    def _stat_key(path: Path, real_folder: str | None = None, link: bool | None = None) -> str:
        """The key of ``path``'s stat record: its real path. ``real_folder``: the real path of the
        folder ``path`` is directly in, for a file that is not a link (no realpath per photo);
        ``link``: whether it is one, when the caller knows."""
        if real_folder is not None and (link is False or (link is None and not os.path.islink(path))):
            return f"stat:{os.path.join(real_folder, path.name)}"
        return f"stat:{os.path.realpath(path)}"

    def _forget_others_at(self, path: Path, keep: str) -> None:
        for h in self._hashes_at(path):
            if h != keep:
                del self.results[h]

    def _hashes_at(self, path: Path) -> list[str]:
        """The results whose photo is at ``path`` (names compared first: comparing 10,000 Paths
        took 20 ms, twice for every photo that arrives)."""
        name = path.name
        return [h for h, r in self.results.items() if r.frame.name == name and r.frame.path == path]

    def _unreadable(self, path: Path, reason: str) -> FrameResult:
        frame = unreadable_frame(path)
        self._forget_others_at(path, frame.hash)
        result = FrameResult(frame=frame, status=FrameStatus.FAILED, error=reason,
                             verdict=self.store.decisions.verdict(frame.hash), extra={"unreadable": True})
        self.results[frame.hash] = result
        return result

    # one row per path ---------------------------------------------------------------------------
    def local_path(self, path: Path) -> Path:
        """``path`` spelt as the scan spells the folder's photos: the watcher reports absolute paths
        (``/home/me/photos/a.jpg``) for a folder opened as ``photos``; one photo, one spelling."""
        text = os.fspath(path)
        parent = os.path.dirname(text)
        if parent != self._folder_text and os.path.abspath(parent) == os.path.abspath(self._folder_text):
            return self.folder / os.path.basename(text)
        return path if isinstance(path, Path) else Path(text)  # (the scan's own paths: no new object)

    def path_changed(self, path: Path) -> "PathChange":
        """The file at ``path`` was written (a new photo, or one overwritten, moved over or
        re-exported under the same name): whatever was known of the old content at that path goes,
        its transform with it, and the new content is a new result (from the store when its
        content is known, else to be detected). Gone meanwhile: as ``path_removed``."""
        path = self.local_path(path)
        before = set(self._hashes_at(path))
        if not os.path.lexists(path):
            return self.path_removed(path)
        r = self.add_path(path)
        if r is None and not os.path.lexists(path):  # gone while it was read
            return self.path_removed(path)
        removed = [h for h in before if h not in self.results or self.results[h].frame.path != path]
        return self._forgot(removed, r, "changed")

    def path_removed(self, path: Path) -> "PathChange":
        """The photo at ``path`` was deleted or moved away, whatever it was doing (queued, being
        detected, aligned, the reference): it leaves the results, so the next render leaves it out;
        its verdict and cache stay (the same photo coming back is known again)."""
        path = self.local_path(path)
        removed = self._hashes_at(path)
        for h in removed:
            del self.results[h]
        return self._forgot(removed, None, "deleted")

    def _forgot(self, removed: list[str], added: FrameResult | None, how: str) -> "PathChange":
        lost = self.reference is not None and self.reference.hash in removed
        if lost:  # every transform is onto the old reference: none is used until ``register`` redoes them
            self._reference_gone = (self._name_of_reference(), how)
            self.reference = None
            self.framing = None
            for r in self.results.values():
                r.transform = None
                r.extra.pop("transform_key", None)
                if r.status is FrameStatus.ALIGNED:
                    r.status = FrameStatus.QUEUED
        return PathChange(removed, added, lost)

    def _name_of_reference(self) -> str:
        return self._reference_names.get(self.reference.hash, self.reference.hash[:12])

    def sort_results(self) -> None:
        """The results in date order. Mostly they are already (a new photo is the latest): then
        nothing is sorted (10,000 frames: 0.05 s a photo)."""
        keys = [r.frame.sort_key for r in self.results.values()]
        if all(map(operator.le, keys, keys[1:])):
            return
        self.results = dict(sorted(self.results.items(), key=lambda kv: kv[1].frame.sort_key))

    def set_verdict(self, content_hash: str, verdict: Verdict) -> None:
        """Store the person's decision first (it survives a crash), then show it."""
        self.store.decisions.set_verdict(content_hash, verdict)
        self.apply_verdict(content_hash, verdict)

    def apply_verdict(self, content_hash: str, verdict: Verdict) -> None:
        """Use a decision already on disk (the app stores it on the key press, on its own thread)."""
        r = self.results.get(content_hash)
        if r is not None:
            r.verdict = verdict

    def set_nudge(self, content_hash: str, nudge: Nudge | None) -> None:
        """Store the person's correction of one frame first (like a verdict), then use it."""
        self.store.decisions.set_nudge(content_hash, nudge)
        self.apply_nudge(content_hash, nudge)

    def apply_nudge(self, content_hash: str, nudge: Nudge | None) -> None:
        """Use a correction already on disk."""
        r = self.results.get(content_hash)
        if r is not None:
            r.nudge = None if nudge is None or nudge.is_identity else nudge

    def refresh_decisions(self) -> DecisionChanges:
        """Take what another process (a second app, a script) changed in the decisions file since
        this one last read or wrote it: verdicts and nudges are applied to the results; when the
        pinned reference moved (``reference_changed``), the caller runs ``register`` again. Cheap
        when nothing changed (one stat): meant to be polled."""
        changes = self.store.decisions.reload()
        for h, verdict in changes.verdicts.items():
            self.apply_verdict(h, verdict)
        for h, nudge in changes.nudges.items():
            self.apply_nudge(h, nudge)
        return changes

    def final_matrix(self, r: FrameResult) -> np.ndarray:
        """The frame's matrix from the upright original to the output picture: its nudge after
        ``output_matrix`` (framing ∘ registration)."""
        return nudged(self.output_matrix(r), r.nudge, anchor_points(r.subject))

    def pin_reference(self, content_hash: str | None) -> None:
        """Pin (or with None, unpin) the reference; the next ``register`` re-registers every frame
        from cached detections."""
        self.store.decisions.pin_reference(content_hash)

    def process(self, results: list[FrameResult] | None = None, progress: Progress = lambda r: None,
                cancel: threading.Event | None = None, compute: bool = True) -> Reference | None:
        """The one step sequence: detect what lacks detections (``results``, default all), then
        choose subjects, register, select and frame: what a new photo needs to reach ``aligned``.
        Cached work is not repeated. ``results=[]``: nothing is detected (after a decision, a pin, a
        removed photo); ``compute=False``: nothing is computed at all, only what is stored is read
        (``--render-only``, the app before its screen is up)."""
        if compute:
            self.detect(results, progress=progress, cancel=cancel)
            if cancel is not None and cancel.is_set():
                return self.reference
        self.select()
        return self.register(compute)

    def needs_detection(self, result: FrameResult) -> bool:
        if result.extra.get("unreadable"):
            return False
        return self.mode.needs_detection(result)

    # detect ------------------------------------------------------------------------------------
    def detect(self, results: list[FrameResult] | None = None, progress: Progress = lambda r: None,
               cancel: threading.Event | None = None) -> int:
        """Detect (faces, or people in body mode) in the results that lack it. Broken photos become
        ``failed`` with the reason. Returns how many photos were decoded."""
        todo = [r for r in (results if results is not None else self.results.values()) if self.needs_detection(r)]
        try:
            return self.mode.detect(todo, progress, cancel) if todo else 0
        finally:
            self._looked.clear()  # (the look's photos are among the first a folder detects, if any)

    def decode_in_batches(self, todo: list[FrameResult], decode: Callable, batch_size: int,
                          flush: Callable[[list], None], progress: Progress,
                          cancel: threading.Event | None, ahead: int | None = None) -> int:
        """Decode ``todo`` ahead on the decode threads (up to ``ahead`` photos, default two batches)
        and hand ``flush`` batches of ``(result, photo)``; a photo that cannot be decoded becomes
        ``failed`` with the reason. Stops early when ``cancel`` is set. Returns how many photos were decoded."""
        batch: list[tuple[FrameResult, object]] = []
        decoded = 0
        workers = self.config.detect.decode_workers
        with closing(decode_ahead(todo, decode, workers, ahead=ahead or 2 * batch_size)) as decoding:
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
    def select(self) -> None:
        """Choose the subject in every detected photo (and, in face mode, score how frontal it is)."""
        with self.timed("select"):
            self.mode.select()

    # register ----------------------------------------------------------------------------------
    def named_reference_hash(self) -> str | None:
        """The reference the person chose: ``register.reference`` in the config, else the pinned one."""
        name = self.config.register.reference
        if name:
            for h, r in self.results.items():
                if name in (r.frame.path.name, h):
                    return h
            raise ConfigError("register.reference", f"no photo named {name!r} in {self.folder}")
        pinned = self.store.decisions.reference
        return pinned if pinned in self.results else None

    def register(self, compute: bool = True) -> Reference | None:
        """Register every subject onto the reference's canvas. Transforms are cached against the
        reference and the registration settings (not the framing), so only new frames are
        registered; a new reference re-registers all from cached detections. ``compute=False``
        (``--render-only``) only reads stored transforms. Then the selection (``[select]``), then
        the framing."""
        with self.timed("register"):
            self.reference = ref = self.mode.choose_reference()
            if ref is not None:
                self._reference_names = {ref.hash: self.results[ref.hash].frame.path.name}
                self.mode.register(ref, compute)
        gone = self._reference_gone
        if gone is not None and ref is not None:
            self._reference_gone = None
            self.notices.append(f"the reference photo {printable(gone[0])} was {gone[1]}; "
                                f"{printable(self.results[ref.hash].frame.path.name)} is the reference now "
                                "and every frame is registered onto it again")
        outliers.apply_outliers(list(self.results.values()), ref.hash if ref is not None else None)
        curate.apply_selection(list(self.results.values()), self.config.select, self.config.facing.keep_turned)
        self.framing = self.plan_framing()
        return ref

    # framing -----------------------------------------------------------------------------------
    def plan_framing(self) -> Framing | None:
        """Where the subject lands in the output (``render.framing``, ``size``, ``eye_*``, ...),
        from the reference's subject on its canvas; cheap, redone whenever the reference is."""
        ref = self.reference
        if ref is None:
            return None
        return plan_framing(FramingSettings.from_config(self.config), self.mode.default_size, ref.canvas,
                            self.mode.subject_on_canvas(ref, self.kept()))

    def output_matrix(self, r: FrameResult) -> np.ndarray:
        """The one matrix from ``r``'s upright photo to the output picture: framing ∘ registration.
        The render, the preview, ``--frames`` and the sidecar all use it."""
        return output_matrix(np.asarray(r.transform.matrix, np.float64), self.framing)

    def restore(self, exclude: set[Path] = frozenset()) -> list[str]:
        """``--render-only``: results from the store alone (cached detections and transforms), with no
        detection and no registration. Returns one sentence per photo that lacks something; those
        photos are left out of the render."""
        self.scan(exclude)
        self.process([], compute=False)
        missing = []
        for r in self.results.values():
            if r.detection is None:
                missing.append(f"{r.frame.path.name}: no stored detection (new, changed or unreadable photo)")
            elif r.subject is not None and r.transform is None and r.verdict is not Verdict.REJECTED:
                missing.append(f"{r.frame.path.name}: no stored transform for the current reference and settings")
        return missing

    # colour ------------------------------------------------------------------------------------
    def colour_means(self, kept: list[FrameResult]) -> tuple[list, list | None]:
        """The linear-light means of each frame's subject region (``colour``) and, where the mode
        keeps what is neutral neutral, of its near-grey pixels (``colour.neutral_means``; else None),
        measured once and stored; photos lacking either are decoded small on the decode threads,
        side by side, once for both."""
        neutral_too = self.mode.keeps_neutral
        means: list[list[float] | None] = [None] * len(kept)
        neutral: list[list[float] | None] = [None] * len(kept)
        todo = []
        boxes = [self.mode.colour_region(r) for r in kept]
        keys = [means_key(r.frame.hash, box) if box is not None else None for r, box in zip(kept, boxes)]
        with self.store.read_ahead():  # a few hundred values a query (a library: 10,000 frames)
            self.store.prefetch([key for key in keys if key is not None]
                                + ([neutral_key(r.frame.hash) for r in kept] if neutral_too else []))
            for k, (r, box, key) in enumerate(zip(kept, boxes, keys)):
                stored = self.store.get_json(key) if key is not None else None
                if stored is not None:
                    means[k] = stored.get("means")
                stored_neutral = self.store.get_json(neutral_key(r.frame.hash)) if neutral_too else None
                if stored_neutral is not None:
                    neutral[k] = stored_neutral.get("means")
                want_means = key is not None and stored is None
                want_neutral = neutral_too and stored_neutral is None
                if want_means or want_neutral:
                    todo.append((k, r.frame.path, box if want_means else None, key, want_neutral))

        def measure(item) -> tuple[list[float] | None, list[float] | None]:
            _, path, box, _, want_neutral = item
            photo = open_photo(path, max_side=STATS_SIDE, max_pixels=self.config.scan.max_pixels)
            return (region_means(photo.image, box, photo.scale_xy) if box is not None else None,
                    neutral_means(photo.image) if want_neutral else None)

        workers = self.config.detect.decode_workers
        for (k, _, box, key, want_neutral), value, error in decode_ahead(todo, measure, workers, ahead=2 * workers):
            if error is not None:  # the render says what is wrong with the photo
                continue
            if box is not None:
                means[k] = value[0]
                self.store.put_json(key, {"means": value[0]})
            if want_neutral:
                neutral[k] = value[1]
                self.store.put_json(neutral_key(kept[k].frame.hash), {"means": value[1]})
        return means, (neutral if neutral_too else None)

    def colour_gains(self, kept: list[FrameResult]) -> list[ColourGain]:
        """Per kept frame (date order), ``render.match_colour``'s gains; all 1 when it is off."""
        how = self.config.render.match_colour
        if how == "off" or not kept:
            return [ColourGain()] * len(kept)
        with self.timed("colour"):
            means, neutral = self.colour_means(kept)
        ref = self.reference.hash if self.reference is not None else None
        ref_index = next((k for k, r in enumerate(kept) if r.frame.hash == ref), None)
        return plan_gains(means, ref_index, how, neutral=neutral)

    # render ------------------------------------------------------------------------------------
    def kept(self) -> list[FrameResult]:
        """The frames in the animation, in date order (``domain.is_kept``)."""
        keep_turned = self.config.facing.keep_turned
        return [r for r in self.results.values() if is_kept(r, keep_turned)]

    def default_output(self) -> Path:
        if self.config.render.output:
            return Path(self.config.render.output).expanduser()
        return Path.cwd() / f"{self.folder.resolve().name or 'photos'}-timelapse.mp4"

    def check_output(self, out: Path) -> None:
        target = out.resolve()
        # A photo is the output's file only if it has the output's name, or it is a link (a link
        # may have any name): only those are resolved (each is several system calls, and a library
        # has 10,000 photos: 0.35 s a check, twice a run).
        for r in self.results.values():
            path = r.frame.path
            if (path.name == target.name or os.path.islink(path)) and Path(os.path.realpath(path)) == target:
                raise OutputError(f"refusing to write {out}: it would overwrite or add a photo in the folder")
        check_output_place(self.folder, out)

    def render(self, out: Path, frames_dir: Path | None = None,
               progress: Callable[[int], None] = lambda n: None) -> int:
        self.check_output(out)
        if frames_dir is not None and frames_dir.resolve() == self.folder.resolve():
            raise OutputError("refusing to write aligned frames into the photo folder itself")
        kept = self.kept()
        self.framing = self.plan_framing()  # verdicts may have changed the kept frames since register
        gains = self.colour_gains(kept)
        items = [RenderItem(r.frame.path, printable(r.frame.path.name), self.output_matrix(r), hash=r.frame.hash,
                            taken_at=r.frame.taken_at,
                            size=(r.detection.width, r.detection.height) if r.detection else None,
                            info={"verdict": r.verdict.value, "status": r.status.value,
                                  "residual_pct": r.transform.residual_pct,
                                  "colour_gain": [round(g, 4) for g in gain.gains],
                                  **({"nudge": r.nudge.to_json()} if r.nudge else {})},
                            colour=None if gain.is_identity else gain, nudge=r.nudge, anchor=anchor_points(r.subject),
                            picture=r.picture.box if r.picture is not None else None)
                 for r, gain in zip(kept, gains)]
        items = self.mode.render_items(kept, items)
        with self.timed("render"):
            self.last_render = write_animation(items, self.framing.size, out,
                                               RenderSettings.from_config(self.config),
                                               frames_dir=frames_dir, progress=progress)
        self.notices.extend(self.last_render.notices)
        return self.last_render.photos

    def close(self) -> None:
        self.store.close()


__all__ = ["Pipeline", "Reference", "OutputError", "PhotoError"]
