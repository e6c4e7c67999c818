"""The one background worker that owns the pipeline (and so the models and the GPU).

The pipeline is this thread's alone: everything that reads or changes it runs here, in a Textual
thread worker, fed by a job queue (frozen dataclasses: paths from the folder watcher, decisions,
pins, renders). The screen and the preview worker get immutable snapshots by message (rows, frame
views, the state); they never read a live pipeline object. ``prepare`` and ``warm_up`` run before
the thread starts, on the thread that builds the app: the table of a cached folder is ready before
the screen appears. It checks for cancellation between batches and never touches widgets.

Faults keep the app running: a folder that cannot be written (the cache, the output) is a
notification naming the folder and the key, and the worker goes on with the next job; a render
that fails or is cancelled (``q`` while rendering) leaves the previous file and no partial one.
"""
from __future__ import annotations

import logging
import operator
import os
from dataclasses import fields
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .. import folder_record
from ..config import ConfigError
from ..domain import FrameResult, FrameStatus, Verdict
from ..folders import FolderError
from ..names import printable
from ..nudge import Nudge
from ..pipeline import OutputError, Pipeline
from ..photos import PhotoError
from ..preview import FrameView, frame_view
from ..render import RenderError
from ..scan import list_photos
from ..triage import frame_row, outlier_flags
from .terminal import CollectorPause
from .messages import (DecisionApplied, Notice, PipelineState, RenderFinished, RenderProgress, RowsChanged,
                       RowsRemoved, ViewsChanged)

log = logging.getLogger(__name__)

# Notices about a condition that holds for the whole session: the status bar shows them instead of
# a notification that would cover part of the screen at every start.
STANDING_NOTICES = ("identity matching is off",)


def is_standing(text: str) -> bool:
    return text.startswith(STANDING_NOTICES)


# What a frame's row and view are made of: every field of its result but ``extra`` (a dict that
# neither reads), fetched in one call; each value is immutable, replaced when it changes.
_inputs = operator.attrgetter(*(f.name for f in fields(FrameResult) if f.name != "extra"))
is_ = operator.is_

# How long the worker waits for the screen's first draw before it rebuilds the state from the
# folder's record (the app says when; a driver without a screen waits this long once).
SCREEN_WAIT_S = 5.0
# Photos detected between two table refreshes: small enough that rows turn `aligned` steadily,
# big enough that detection still runs in batches.
CHUNK = 8
# After every chunk the subjects are chosen and registered again over every frame detected so far,
# and the rows compared: a cost that grows with the folder (at 3,000 photos the first open ran at a
# third of its first rate). Chunks grow so that this bookkeeping stays about BOOKKEEPING_SHARE of a
# chunk's time, up to MAX_CHUNK photos (a row still turns `aligned` every few seconds).
BOOKKEEPING_SHARE = 0.25
MAX_CHUNK = 128


def next_chunk(bookkeeping_s: float, detect_s: float, photos: int) -> int:
    """How many photos the next chunk takes: the last chunk spent ``detect_s`` detecting its
    ``photos`` and ``bookkeeping_s`` on the rest (choosing, registering, the rows)."""
    if photos <= 0 or detect_s <= 0:
        return CHUNK
    per_photo = detect_s / photos
    wanted = bookkeeping_s / (BOOKKEEPING_SHARE * per_photo)
    return max(CHUNK, min(MAX_CHUNK, int(wanted)))


def framing_matrix(framing) -> tuple:
    """The framing's matrix (the reference's canvas -> the output picture) as plain floats; ()
    without a framing. The preview puts it after a frame's registration (``FrameView.matrix``)."""
    if framing is None:
        return ()
    return tuple(tuple(float(v) for v in row) for row in framing.matrix)


class RenderCancelled(Exception):
    """Raised from the render's progress callback when the app is closing."""


def _lower_priority() -> None:
    """Nice this thread (and the decode and torch threads it starts, which inherit it) so the
    event loop always gets the CPU first: the screen stays responsive while detection runs."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not allowed: only responsiveness suffers
        pass


# The jobs, from the watcher's thread and the screen's.
@dataclass(frozen=True)
class PhotoReady:
    """A photo arrived or changed and stopped growing."""

    path: Path


@dataclass(frozen=True)
class PhotoDeleted:
    path: Path


@dataclass(frozen=True)
class Decided:
    """The person's verdict, already on disk (the screen stores it on the key press)."""

    hash: str
    verdict: Verdict
    seq: int = 0  # the screen's number for it: answered with ``DecisionApplied``


@dataclass(frozen=True)
class Nudged:
    """The person's nudge of one frame, already on disk."""

    hash: str
    nudge: Nudge | None
    seq: int = 0


@dataclass(frozen=True)
class Pin:
    hash: str | None


@dataclass(frozen=True)
class Refresh:
    """Choose and register again from what is stored."""


@dataclass(frozen=True)
class Render:
    path: Path | None = None  # None: ``render.output``


@dataclass(frozen=True)
class FolderState:
    """The photo folder can no longer be used (``problem``: moved or removed, permission denied), or
    can again (None: look through it for what arrived meanwhile)."""

    problem: str | None


Job = PhotoReady | PhotoDeleted | Decided | Nudged | Pin | Refresh | Render | FolderState


class Driver:
    def __init__(self, app, pipeline: Pipeline, auto_render: bool = False, auto_render_delay: float = 10.0):
        self.app = app
        self.pipeline = pipeline
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.cancel = threading.Event()
        self.auto_render, self.auto_render_delay = auto_render, auto_render_delay
        self.busy = ""
        self.backlog = 0  # photos known but not yet detected
        self.watcher_pending = lambda: 0
        self._render_due: float | None = None
        self._notices_sent = 0
        self._posted: dict = {}
        self._posted_views: dict[str, FrameView] = {}
        self._made: dict[str, tuple] = {}  # hash -> what its posted row and view were made from (_changed)
        self.prescanned = False
        self.folder_problem: str | None = None  # the watcher's word on the folder (``FolderState``)
        self._prepared_final = False  # prepare left nothing for the worker's first pass (see prepare)
        self._record_notices: list[str] | None = None  # what prepare's pass said, while its record is due
        self._checked: folder_record.Checked | None = None  # the record prepare's rows are from (``_rebuild``)
        # After an open from a record with photos added since: the record's stamps (hash -> stamp)
        # and the added photos, until the worker has read them and keeps a new record (``_renew_record``).
        self._renewing: tuple[dict[str, dict], list[Path]] | None = None
        self.screen_drawn = threading.Event()  # set by the app once its first screen is drawn
        self.initial: tuple[list, list] = ([], [])  # prepare's rows and views (take_initial)
        self._last_state: PipelineState | None = None
        self.render_idle = threading.Event()  # clear while a render runs (the app waits for it on quit)
        self.render_idle.set()
        self._closed = False
        self._close_lock = threading.Lock()
        # The store's warnings (a cache that cannot be written, and written again) are notices too;
        # they are shown as warnings, not as plain information.
        self._warnings: set[str] = set()
        told = pipeline.store.on_warning

        def warned(text: str) -> None:
            self._warnings.add(text)
            told(text)

        pipeline.store.on_warning = warned

    # before the thread starts ---------------------------------------------------------------------
    def prepare(self) -> bool:
        """The part of the first scan the store already knows (unchanged photos: no file is read),
        with stored subjects and transforms only: nothing is computed. New photos are read by the
        worker, with the screen up. Returns whether anything will need detection."""
        p = self.pipeline
        if self._restore():
            return bool(p.unscanned)  # photos added since the record: the worker reads them first
        said = len(p.notices)
        p.scan(exclude={p.default_output()}, known_only=True)
        try:
            p.process([], compute=False)
        except ConfigError:
            processed = False  # the worker reports it, with the screen up
        else:
            processed = True
        self.prescanned = True
        detecting = bool(p.unscanned) or any(map(p.needs_detection, p.results.values()))
        # Nothing new to read, detect or register: the worker's first pass would only redo this one
        # (on the worker's thread, beside the screen's first layout: the open of 1000 cached frames
        # took twice as long). Every subject has its stored transform, so the rows are final.
        self._prepared_final = processed and not detecting and all(
            r.transform is not None for r in p.results.values() if r.subject is not None)
        self._snapshot()
        if self._prepared_final:  # kept for the next open by the worker, first thing (``_keep_record``)
            self._record_notices = p.notices[said:]
        return detecting

    def _restore(self) -> bool:
        """The rows from the folder's record (``folder_record``), when it holds for the folder as it
        is (every photo's stamp checked): no photo's values are read, nothing is chosen or
        registered. The state itself is rebuilt from the record by the worker, first thing, once
        the screen has been drawn (``_rebuild``): the screen needs only the rows."""
        p = self.pipeline
        with p.timed("scan"):
            checked = folder_record.check(p, exclude={p.default_output()})
        if checked is None:
            return False
        self._posted.update(checked.rows)
        self.initial = (list(checked.rows.values()), [])
        p.unscanned = [Path(path) for path in checked.added]  # read by ``_rebuild``, with the state
        self._checked = checked
        self.prescanned = True
        self._prepared_final = not checked.added  # else the worker goes on as after a scan with new photos
        if checked.added:
            self._renewing = (folder_record.recorded_stamps(checked), list(p.unscanned))
        return True

    def _rebuild(self) -> bool:
        """The state from the record ``prepare`` checked, and the views the screen has none of yet
        (posted); False when the record cannot be used after all (the worker scans, as without one)."""
        checked, self._checked = self._checked, None
        self._after_first_draw()
        if self.cancel.is_set():
            return True  # closing already: nothing more is asked of the state
        p = self.pipeline
        pause = CollectorPause()  # what is made here lives on (as the open's rows, see ``CollectorPause``)
        pause.pause()
        try:
            with p.timed("scan"):
                if not folder_record.rebuild(p, checked):
                    return False
                p.scan_unscanned()  # photos added since the record: read now, so the pass below has them
            word = p.mode.subject_word
            made, posted, views = self._made, self._posted, self._posted_views
            for h, r in p.results.items():
                row = posted.get(h)
                if row is None:
                    continue  # an added photo: the pass below makes its row and view
                made[h] = (_inputs(r), row.outlier)  # as ``_changed`` keeps it: its flag is the row's
                views[h] = frame_view(r, None, word)
            changed = self._passes_made()
        finally:
            pause.resume()
        self._post(ViewsChanged(list(views.values())))
        if changed:
            self._post(RowsChanged(changed))
        return True

    def _passes_made(self) -> list:
        """After the record rebuilt the state: one pass over it (nothing computed, only what is
        stored read), so that what the passes keep of each frame (the subject chosen, the transform's
        key, the fit's measures) is made now, with the worker idle and the collector paused, and
        not by the first photo or key press after the open (10,000 frames: 0.9 s). The rows it
        changes (none, as a rule: the record is the state such a pass made); made again equal, they
        are kept as the rows' check compares them next (by identity first)."""
        try:
            self.pipeline.process([], compute=False)
        except ConfigError:
            return []  # the worker's next pass says it
        rows, _ = self._changed()
        return rows

    def _after_first_draw(self) -> None:
        """Wait until the screen has been drawn once (at most ``SCREEN_WAIT_S``, less when closing):
        the first draw is what the person waits for, and the interpreter is shared."""
        deadline = time.monotonic() + SCREEN_WAIT_S
        while not self.screen_drawn.wait(0.02) and not self.cancel.is_set() and time.monotonic() < deadline:
            pass

    def _keep_record(self) -> None:
        """Write the folder's record of the state ``prepare`` made (the worker's first act, before
        any job changes it), so the next open restores it (``_restore``)."""
        notices, self._record_notices = self._record_notices, None
        if notices is None:
            return
        p = self.pipeline
        self._after_first_draw()  # (written even when the app is closing: the next open is quicker)
        try:
            folder_record.write(p, p.scan_stamps, p.scan_listed, self._posted, notices)
        except FolderError as exc:  # (a cache that cannot be written is the store's warning already)
            log.info("folder record not written: %s", exc)

    def _snapshot(self) -> None:
        """The rows and views as the store has them, for the screen to show as it comes up (the
        worker posts only what changes after them)."""
        self._changed()
        self.initial = (list(self._posted.values()), list(self._posted_views.values()))

    def take_initial(self) -> tuple[list, list]:
        """The rows and views ``prepare`` made (immutable snapshots), once: the screen shows them
        when it mounts, before the worker starts."""
        initial, self.initial = self.initial, ([], [])
        return initial

    def preload_modules(self) -> tuple[str, ...]:
        return tuple(self.pipeline.mode.preload_modules)

    def warm_up(self) -> None:
        """Load the detection models (unpickling holds the interpreter lock: done before the screen)."""
        self.pipeline.warm_up()

    def close(self) -> None:
        """Close the pipeline's store once (the worker does at its end; the app if it never ran)."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self.pipeline.close()

    # called from any thread -------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        self.jobs.put(job)

    def queue_depth(self) -> int:
        return self.backlog + self.jobs.qsize() + self.watcher_pending()

    # posting ------------------------------------------------------------------------------------
    def _post(self, message) -> None:
        self.app.post_message(message)

    def post_state(self) -> None:
        p = self.pipeline
        ref = p.reference
        known = ref is not None and ref.hash in p.results
        name = printable(p.results[ref.hash].frame.path.name) if known else ""
        state = PipelineState(name, self.queue_depth(), self.busy, p.identity_on, str(p.device), p.config.mode,
                              models=p.status_text(), subject_word=p.mode.subject_word,
                              reference_hash=ref.hash if known else "",
                              output_size=tuple(p.framing.size) if p.framing is not None else (),
                              framing=framing_matrix(p.framing))
        if state != self._last_state:  # the idle loop asks every 0.25 s; the screen hears of changes only
            self._last_state = state
            self._post(state)

    def _changed(self) -> tuple[list, list[FrameView]]:
        """The rows and views that changed since they were last made, and remember them. A frame's
        row and view are made again only when one of its result's fields is another value than the
        last time (they are immutable, replaced when they change: mostly the same object) or its
        outlier flag changed. Making every row and view after every batch of 8 photos made a first
        open quadratic: at 3,000 photos 64 % of the time went there."""
        p = self.pipeline
        results = p.results
        flags = outlier_flags(list(results.values()), p.config.select.min_sharpness)
        word = p.mode.subject_word
        made, posted, posted_views = self._made, self._posted, self._posted_views
        if len(made) > len(results) or len(posted) > len(results) or len(posted_views) > len(results):
            # results gone without a RowsRemoved: forget them (kept in place otherwise: 10,000 rows)
            self._made = made = {h: v for h, v in made.items() if h in results}
            self._posted = posted = {h: v for h, v in posted.items() if h in results}
            self._posted_views = posted_views = {h: v for h, v in posted_views.items() if h in results}
        rows, views = [], []
        for h, r in results.items():
            inputs, flag = _inputs(r), flags.get(h, "") if flags else ""
            last = made.get(h)
            if last is not None and last[1] == flag and h in posted and h in posted_views:
                if all(map(is_, last[0], inputs)):
                    continue  # the same objects: nothing to make, nothing to keep anew
                # Equal values made again (a subject chosen again after the identity's examples
                # moved, or after the folder's record rebuilt the state), compared in one comparison
                # of the tuples (identity first, field by field, in C); a value that cannot say
                # (arrays inside) counts as changed.
                try:
                    same = last[0] == inputs
                except (TypeError, ValueError):
                    same = False
                if same:
                    made[h] = (inputs, flag)  # the current objects: the next pass compares by identity first
                    continue
            made[h] = (inputs, flag)
            row, view = frame_row(r, flag), frame_view(r, None, word)
            if posted.get(h) != row:
                rows.append(row)
            if posted_views.get(h) != view:
                views.append(view)
            posted[h], posted_views[h] = row, view
        return rows, views

    def _remake(self, results: list) -> tuple[list, list[FrameView]]:
        """The rows and views of ``results`` alone, made again after a change to them that moves
        no outlier flag (the flags are made from the aligned frames' transforms, subjects and
        quality, not from a status): the others stay as posted, and no pass over every frame is made."""
        word = self.pipeline.mode.subject_word
        rows, views = [], []
        for r in results:
            h = r.frame.hash
            last = self._made.get(h)
            flag = last[1] if last is not None else ""
            self._made[h] = (_inputs(r), flag)
            row, view = frame_row(r, flag), frame_view(r, None, word)
            if self._posted.get(h) != row:
                rows.append(row)
            if self._posted_views.get(h) != view:
                views.append(view)
            self._posted[h], self._posted_views[h] = row, view
        return rows, views

    def post_rows(self, only: list | None = None) -> None:
        """Post the rows and views that changed since the last post (all of them the first time);
        ``only``: these results alone changed, in a way that moves no outlier flag (``_remake``)."""
        changed, changed_views = self._changed() if only is None else self._remake(only)
        if changed_views:  # before the rows: a row that arrives finds its view
            self._post(ViewsChanged(changed_views))
        if changed:
            self._post(RowsChanged(changed))
        self.post_notices()

    def post_notices(self) -> None:
        """The pipeline's notices not posted yet (after every batch of jobs, even one that changed
        no row: a cache that failed on a photo already known is said too)."""
        for text in self.pipeline.notices[self._notices_sent:]:
            if not is_standing(text):  # the status bar says it, once, for as long as it holds
                self._post(Notice(printable(text), "warning" if text in self._warnings else "information"))
        self._notices_sent = len(self.pipeline.notices)
        self.post_state()

    # the worker -------------------------------------------------------------------------------
    def _report(self, exc: FolderError) -> None:
        """A folder fault: said on screen; the worker goes on with the next job."""
        log.warning("%s", exc)
        self._post(Notice(printable(str(exc)), "error"))
        self.post_rows()

    def _first_pass(self) -> None:
        """The worker's first act: the folder as it is now, from what ``prepare`` left."""
        p = self.pipeline
        if self._checked is not None and not self._rebuild():
            self.prescanned = False  # the record could not be used after all: scanned as without one
            self._renewing = None
        if self.cancel.is_set():
            return  # closing (maybe before the record's state was made): nothing more is asked of it
        final = self.prescanned and self._prepared_final
        if self.prescanned:  # the app read what the store knows; now the photos that must be read
            p.scan_unscanned()
        else:
            p.scan(exclude={p.default_output()})
        if final:  # prepare did all of this already: the screen shows its rows, nothing changed since
            self.post_notices()
            self._keep_record()
        else:
            self.post_rows()  # the table fills from the store before any detection
            self._align_from_cache()
            self._process([r for r in p.results.values() if p.needs_detection(r)])
            self._renew_record()

    def _renew_record(self) -> None:
        """After an open from a record with photos added since, once they are read (and detected,
        registered): the record of the state now, so the next open reads none of them again. Not
        when a photo could not be read, or a decision came meanwhile (``make_record`` says)."""
        renewing, self._renewing = self._renewing, None
        if renewing is None:  # (written even when the app is closing, if the state is whole: the next open is quicker)
            return
        stamps, added = renewing
        p = self.pipeline
        if any(p.needs_detection(r) or (r.subject is not None and r.transform is None) for r in p.results.values()):
            return  # not all settled (a chunk that failed): the next open reads them again
        for path in added:  # each one's stat record, as the scan keeps it (``Pipeline.add_path`` stored it)
            stat = p.store.get_json(p._stat_key(path))
            if not isinstance(stat, dict) or not isinstance(stat.get("hash"), str):
                return
            stamps[stat["hash"]] = stat
        try:
            folder_record.write(p, stamps, len(stamps), self._posted, list(p.notices))
        except FolderError as exc:  # (a cache that cannot be written is the store's warning already)
            log.info("folder record not written: %s", exc)

    def run(self) -> None:
        """The worker's body: first the folder as it is, then jobs until cancelled."""
        try:
            self._run()
        finally:
            self.close()

    def _run(self) -> None:
        _lower_priority()
        p = self.pipeline
        self.busy = "scanning"
        self.post_state()
        try:
            self._first_pass()
        except FolderError as exc:
            self._report(exc)
        while not self.cancel.is_set():
            self.busy = ""
            self.post_state()
            try:
                jobs = [self.jobs.get(timeout=self._wait_time())]
            except queue.Empty:
                self._take_outside_decisions()
                if self._render_due is not None and time.monotonic() >= self._render_due:
                    self._render(None)
                continue
            while True:  # take everything that is waiting, so a burst is handled in batches
                try:
                    jobs.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            try:
                self._handle(jobs)
            except FolderError as exc:
                self._report(exc)
            self.post_notices()

    def _take_outside_decisions(self) -> None:
        """What another process (a second app on the folder, a script) changed in the decisions
        file: shown, and used (the kept frames, a pinned reference). One stat while nothing changed;
        asked whenever the worker is idle."""
        try:
            changes = self.pipeline.refresh_decisions()
        except FolderError as exc:
            self._report(exc)
            return
        if changes:
            self.busy = "registering" if changes.reference_changed else "updating"
            self.post_state()
            self._align_from_cache()
            self.post_notices()

    def _wait_time(self) -> float:
        if self._render_due is None:
            return 0.25
        return max(0.01, min(0.25, self._render_due - time.monotonic()))

    def _handle(self, jobs: list[Job]) -> None:
        p = self.pipeline
        removed = []
        new = []
        applied = []
        repin = refresh = False
        renders = [j for j in jobs if isinstance(j, Render)]
        for job in jobs:
            match job:
                case PhotoDeleted(path=path):
                    # Whatever it was doing (queued, detecting, aligned, the reference): its rows go.
                    # The pipeline spells the watcher's absolute path as the scan does (a folder
                    # opened as typed, `photos`, is scanned as photos/x.jpg): one photo, one row.
                    removed += p.path_removed(path).removed
                case PhotoReady(path=path):
                    change = p.path_changed(path)  # overwritten, moved over: the old row goes
                    removed += change.removed
                    r = change.added
                    if r is not None and r not in new:
                        new.append(r)
                case Decided(hash=h, verdict=verdict, seq=seq):
                    p.apply_verdict(h, verdict)
                    applied.append((h, seq))
                    refresh = True  # the kept set (and maybe the reference) changed
                case Nudged(hash=h, nudge=nudge, seq=seq):
                    p.apply_nudge(h, nudge)
                    applied.append((h, seq))
                    refresh = True
                case Pin(hash=h):
                    p.pin_reference(h)
                    repin = True
                case Refresh():
                    refresh = True
                case FolderState(problem=problem):
                    change = self._folder_state(problem)
                    removed += change[0]
                    new += [r for r in change[1] if r not in new]
                case Render():
                    pass
        if removed:
            self._post(RowsRemoved(removed))
            for h in removed:  # a hash that is back (deleted and restored, moved) is posted again
                self._posted.pop(h, None)
                self._posted_views.pop(h, None)
                self._made.pop(h, None)
        if new:
            p.sort_results()
            # The new rows, queued: a row without a transform moves no flag. Whatever else this
            # batch changed (a verdict, a lost reference) is posted once the new ones are processed.
            self.post_rows(only=new)
            todo = [r for r in new if p.needs_detection(r)]
            if todo:
                self._process(todo)
            else:
                self._align_from_cache()
        elif repin or refresh or removed:
            self.busy = "registering" if repin else "updating"
            self.post_state()
            self._align_from_cache()
        for h, seq in applied:  # after the rows that show them
            self._post(DecisionApplied(h, seq))
        if renders:
            self._render(renders[-1].path)
        elif (new or removed) and self.auto_render:
            self._render_due = time.monotonic() + self.auto_render_delay

    def _align_from_cache(self) -> None:
        """Choose subjects and register with what is cached; only new transforms are computed."""
        self.busy = self.busy or "registering"
        try:
            self.pipeline.process([])
        except ConfigError as exc:
            self._post(Notice(str(exc), "error"))
        self.post_rows()

    def _process(self, todo: list) -> None:
        """``Pipeline.process`` in chunks, so rows reach `aligned` as we go. A fault in one chunk
        (a folder that cannot be used) is said and the next chunk goes on: no row is left
        `detecting` and the queue count does not stay up (the app used to stall there, idle, at
        "detecting 8 queued 16" when the cache's disk filled)."""
        p = self.pipeline
        self.backlog = len(todo)
        start, size = 0, CHUNK
        try:
            while start < len(todo):
                if self.cancel.is_set():
                    return
                chunk = todo[start:start + size]
                for r in chunk:
                    r.status = FrameStatus.DETECTING
                self.busy = f"detecting {start + 1}-{start + len(chunk)} of {len(todo)}"
                self.post_rows(only=chunk)  # their status alone changed
                began, books = time.perf_counter(), self._bookkeeping_seconds()
                try:
                    p.process(chunk, cancel=self.cancel)
                except ConfigError as exc:
                    self._post(Notice(str(exc), "error"))
                except FolderError as exc:
                    self._report(exc)
                finally:
                    for r in chunk:
                        if r.status is FrameStatus.DETECTING:  # not reached: queued again, for next time
                            r.status = FrameStatus.QUEUED
                start += len(chunk)
                self.backlog = max(0, len(todo) - start)
                posting = time.perf_counter()
                self.post_rows()
                ended = time.perf_counter()
                bookkeeping = self._bookkeeping_seconds() - books + (ended - posting)
                size = next_chunk(bookkeeping, (ended - began) - bookkeeping, len(chunk))
        finally:
            self.backlog = 0

    def _bookkeeping_seconds(self) -> float:
        """The seconds the pipeline has spent choosing subjects and registering (every frame, each time)."""
        stages = self.pipeline.stage_seconds
        return stages.get("select", 0.0) + stages.get("register", 0.0)

    def _folder_state(self, problem: str | None) -> tuple[list[str], list]:
        """Say, once, that the folder cannot be used and why; once it can again, look through it:
        photos that arrived (or went) meanwhile were never seen by the watcher. Returns the hashes
        removed and the results added."""
        p = self.pipeline
        name = printable(str(p.folder))
        self.folder_problem = problem
        if problem is not None:
            self._post(Notice(f"the folder {name} cannot be used ({problem}): waiting for it; "
                              "nothing is lost, your decisions are kept", "warning"))
            return [], []
        self._post(Notice(f"the folder {name} can be read again: looking for photos that arrived meanwhile"))
        try:
            present = {p.local_path(path) for path in list_photos(p.folder, exclude={p.default_output()})}
        except OSError:
            return [], []
        removed, added = [], []
        for path in sorted({r.frame.path for r in p.results.values()} - present):
            removed += p.path_removed(path).removed
        known = set(p.results)
        for path in sorted(present):
            change = p.path_changed(path)  # a photo unchanged since is known at once (its stat is stored)
            removed += change.removed
            if change.added is not None and change.added.frame.hash not in known:
                added.append(change.added)
        return removed, added

    def _render(self, out: Path | None) -> None:
        self._render_due = None
        p = self.pipeline
        out = out or p.default_output()
        kept = p.kept()
        if p.reference is None or not kept:
            self._post(RenderFinished(printable(str(out)), 0, "nothing to render yet: no frame is aligned"))
            return
        if self.folder_problem is not None:  # one line, not one per photo it cannot read
            self._post(RenderFinished(printable(str(out)), 0, f"the folder {printable(str(p.folder))} cannot be "
                                      f"used ({self.folder_problem}): its {len(kept)} photos cannot be read"))
            return
        self.busy = f"rendering {printable(out.name)}"
        self.post_state()
        total = len(kept)
        last = [0.0]

        def progress(n: int) -> None:
            if self.cancel.is_set():  # the app is closing: stop here, the partial file is removed
                raise RenderCancelled
            now = time.monotonic()
            if now - last[0] > 0.1 or n == total:
                last[0] = now
                self._post(RenderProgress(n, total))

        self.render_idle.clear()
        try:
            if self.cancel.is_set():
                raise RenderCancelled
            frames = p.render(out, progress=progress)
        except RenderCancelled:
            self._post(RenderFinished(printable(str(out)), 0, "cancelled; the previous file (if any) is untouched"))
            return
        except (OutputError, RenderError, PhotoError, FolderError, OSError) as exc:
            self._post(RenderFinished(printable(str(out)), 0, printable(str(exc))))
            return
        finally:
            self.render_idle.set()
        done = p.last_render
        self._post(RenderFinished(printable(str(out)), frames, unchanged=done is not None and done.unchanged))
