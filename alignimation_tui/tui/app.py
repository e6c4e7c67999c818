"""`alignimation-tui DIR`: the frame table, the preview, keyboard triage, and a watched folder.

The app only drives the pipeline: one thread worker (``Driver``) owns it and posts immutable
snapshots (rows, frame views, the state); the app shows them and never reads the pipeline. The
app is built on a pipeline from ``pipeline`` (a factory: tests pass one whose detections are
recorded). Decisions are written to the decisions file on the key press, on the UI thread, so
they are safe the moment the person decides; the worker is then told, and until it says it uses
them (``DecisionApplied``) the screen shows the decision over what the worker last posted.
"""
from __future__ import annotations

import asyncio
import functools
from collections import Counter
import logging
import operator
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.css.query import NoMatches
from textual.containers import Container, Vertical
from textual.widgets import DataTable, Header, Static
from textual.worker import Worker, WorkerState, get_current_worker

from ..config import Config
from ..folders import FolderError
from ..names import printable
from ..domain import Verdict
from ..photos import PhotoError
from ..models import freeze_long_lived, preload
from ..pipeline import Pipeline
from ..preview import FrameView, aligned_preview, detections_preview, on_output, onion_skin
from ..statusline import status_parts
from ..triage import (COLUMNS, FILTERS, FrameRow, counts_by_status, is_flagged, matches, next_sort_column,
                      with_nudge_mark)
from ..watch import FolderWatcher
from .cells import NUMERIC, WORST_FIRST, FixedCell, FlagWidth, cell, fit_column, sort_key  # noqa: F401  (NUMERIC: for tests and plugins)
from .commands import ActionCommands, SortCommands
from .driver import Decided, Driver, FolderState, Nudged, Pin, PhotoDeleted, PhotoReady, Render
from .keys import AppFooter, KeysPanel, bindings
from .messages import (DecisionApplied, Notice, PipelineState, PreviewReady, RenderFinished, RenderProgress,
                       RowsChanged, RowsRemoved, ViewsChanged)
from ..nudge import Nudge
from .widgets.graphics import cell_pixels, choose_graphics, padded, preview_widget
from .widgets.graphics import prepare as prepare_graphics
from .widgets.halfblock import halfblock_lines
from .widgets.series import SeriesPlot
from .table_view import FittedWidth, FrameTable, mark_sort_column, move_to_row, visible_columns
from .terminal import CollectorPause, hangup_tolerant
from .widgets.statusbar import StatusBar

log = logging.getLogger(__name__)


def while_screen_up(handler):
    """For handlers of worker messages, table events and timers: one that runs while the app is
    closing (the screen's widgets already removed, which under load can happen with messages
    still queued) does nothing, instead of failing the app on its way out. The widgets it looks
    up are made once in ``compose``, so only a closing screen lacks them."""
    @functools.wraps(handler)
    def guarded(self, *args, **kwargs):
        try:
            return handler(self, *args, **kwargs)
        except NoMatches:
            log.debug("%s: the screen is closing", handler.__name__)
            return None
    return guarded

PREVIEW_MODES = ("aligned", "onion", "detections", "photo")  # detections: zoomed to the subject; photo: whole
ROW_FLUSH_S = 0.3  # rows from the worker are shown at once, then at most once in this many seconds
# Rows on their way (a photo waiting or being detected): a flush of these alone holds back no later
# flush, so a new photo's `aligned` row is shown as soon as it is made, not up to ROW_FLUSH_S after
# its `queued` and `detecting` rows were.
PASSING_STATUSES = frozenset({"queued", "detecting"})
NARROW_BELOW = 110  # columns: below this the preview goes under the table
QUIT_RENDER_WAIT_S = 60.0  # a cancelled render stops at the next photo; this only bounds a stuck one
# A cache that cannot be written (a full disk, a read-only or removed folder) while the app runs is a
# notification, and the app goes on without it; writes are tried again after this many seconds.
CACHE_RETRY_S = 10.0
# A logout, `kill`, a closed terminal or SSH session: the app ends as `q` ends it.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


# Columns fitted to their widest cell: a longer name is cut in the table (the preview's caption
# names the photo whole).
NAME_MAX, SIDE_MAX = 48, 30


def table_cell(column: str, value: str) -> Text:
    """A cell as the table draws it (``cells.cell``): the table holds each cell's plain text and makes
    this only for the rows in view (``FrameTable``); the text as it is, never read as markup."""
    return FixedCell(value) if column in ("name", "side") else cell(column, value)


class AlignimationApp(KeysPanel, App):
    CSS_PATH = "app.tcss"
    TITLE = "alignimation"
    BINDINGS = bindings()  # every key, its Footer word and its label: keys.py
    COMMANDS = App.COMMANDS | {ActionCommands, SortCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW, "-wide")]

    def __init__(self, folder: Path, config: Config, *, watch: bool = True,
                 pipeline: Callable[[Path, Config], Pipeline] = Pipeline):
        super().__init__()
        self.folder = Path(folder)
        self.config = config
        self.watch_folder = watch
        built = pipeline(self.folder, config)  # raises DeviceError before any screen appears
        built.store.keep_going_on_write_faults(CACHE_RETRY_S)  # said on screen; the worker goes on
        self.decisions = built.store.decisions  # written on the key press (see the module's note)
        self.driver: Driver | None = None
        self.watcher: FolderWatcher | None = None
        self.rows: dict[str, FrameRow] = {}
        self.flag_width = FlagWidth()  # the flag column is as wide as its longest flag, kept as rows change
        # The photo's name and body mode's side are as wide as their widest cell, kept as rows change:
        # the table then measures none of their cells (at 10,000 rows it spent 1 s measuring names).
        self.fitted = {"name": FittedWidth(len("photo") + 1, NAME_MAX), "side": FittedWidth(len("side"), SIDE_MAX)}
        self.views: dict[str, FrameView] = {}
        # Decisions stored by a key press that the worker has not said it uses yet: hash -> (seq, value)
        self._verdicts: dict[str, tuple[int, Verdict]] = {}
        self._nudges: dict[str, tuple[int, Nudge | None]] = {}
        self._seq = 0
        self._signals: tuple = ()  # the stop signals this app handles (see on_mount)
        self._stopping: asyncio.Future | None = None
        self.state: PipelineState | None = None
        self.filter = "all"
        self.sort_column = "date"
        self.sort_chosen = False  # the first `s` sorts by the first visible column after the photo
        self._highlighted: str | None = None  # the photo the preview and the plot were last told of
        self.preview_mode = "aligned"
        self.render_note = ""
        self.nudge_step = "coarse"
        self._pending_rows: dict[str, FrameRow] = {}
        self._rows_shown_at = float("-inf")  # time.monotonic() of the last flush of pending rows
        self._flush_due = False  # a flush of the pending rows is on its way (see ``queue_rows``)
        # Changes whenever the plot's date order may (a row comes or goes, or its date or residual
        # does): the order is kept until then. The rows per status are kept as rows change.
        self._rows_version = 0
        self._residuals_version = 0  # changes whenever a residual's value may: the plot's bars are kept until then
        self._status_count: Counter[str] = Counter()
        self._table_sorted = False  # the table is in sort order (see ``_follow_in_order``)
        self._collector = CollectorPause()  # paused while the app opens (see terminal.CollectorPause)
        self.sub_title = str(self.folder)
        # Asked before Textual takes the terminal (the answer would otherwise arrive as keys).
        self.graphics = choose_graphics(config.preview.graphics)
        prepare_graphics(self.graphics)
        self._start(built)

    # layout -------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Container(id="main"):
            with Vertical(id="table-pane"):
                table = FrameTable(id="frames", cursor_type="row", zebra_stripes=True, style_cell=table_cell)
                for key, label, width in COLUMNS:
                    fitted = self.fitted[key].width if key in self.fitted else width
                    table.add_column(label, key=key, width=self.flag_width.width if key == "flag" else fitted)
                yield table
                yield Static("", id="table-note")
                yield SeriesPlot(id="series")
            with Vertical(id="preview-pane"):
                yield preview_widget(self.graphics, "preview")
                yield Static("", id="preview-caption")
        yield StatusBar(id="status-bar")
        yield AppFooter()

    @property
    def table(self) -> DataTable:
        return self.query_one("#frames", DataTable)

    def _start(self, pipeline: Pipeline) -> None:
        """The watcher, then the part of the first scan the store already knows (unchanged photos:
        no file is read), before the screen: a cached folder's table is ready at once. New photos
        are read by the worker, with the screen up. From here on the pipeline is the driver's."""
        freeze_long_lived()
        w = self.config.watch
        self.driver = Driver(self, pipeline, auto_render=w.auto_render, auto_render_delay=w.auto_render_delay)
        if self.watch_folder:  # started before the first scan, so nothing arriving meanwhile is missed
            self.watcher = FolderWatcher(self.folder, on_ready=lambda p: self.driver.submit(PhotoReady(p)),
                                         on_deleted=lambda p: self.driver.submit(PhotoDeleted(p)),
                                         settle_s=w.settle_seconds,
                                         on_folder=lambda problem: self.driver.submit(FolderState(problem)))
            self.watcher.start()
            self.driver.watcher_pending = lambda: self.watcher.pending
        self._collector.pause()  # until the table is first drawn (resumed after the first refresh)
        try:
            detecting = self.driver.prepare()
            # An import holds the interpreter lock for its whole duration (facenet-pytorch: seconds):
            # done here, it cannot freeze the screen later; a folder with nothing to detect skips it.
            preload(self.driver.preload_modules() if detecting else ())
            if detecting:
                self.driver.warm_up()  # loading the weights is unpickling: it holds the lock too
        except BaseException:
            self._collector.resume()
            raise

    def on_mount(self) -> None:
        self._catch_stop_signals()
        self._mark_sort_column()
        rows, views = self.driver.take_initial()  # what the store knows, shown before the worker starts
        for view in views:
            self.views[view.hash] = view
        if rows:
            self.show_rows([self._with_decisions(row) for row in rows])
        self.call_after_refresh(self._first_drawn)
        self.run_worker(self.driver.run, name="pipeline", group="pipeline", thread=True, exclusive=True,
                        exit_on_error=False)
        self.table.focus()

    def _first_drawn(self) -> None:
        """The table is drawn: collect as usual again, and the worker may go on (``Driver._rebuild``)."""
        self._collector.resume()
        self.driver.screen_drawn.set()

    def get_driver_class(self):
        return hangup_tolerant(super().get_driver_class())

    def _catch_stop_signals(self) -> None:
        """SIGTERM and SIGHUP end the app as `q` does: the worker stops, a render is cancelled (ffmpeg
        ended, the partial file removed), and Textual restores the terminal on its way out. Without
        this they would kill the process where it stands."""
        try:
            loop = asyncio.get_running_loop()
            for signum in STOP_SIGNALS:
                loop.add_signal_handler(signum, self._stop_signalled, signum)
                self._signals += (signum,)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or not here
            pass

    def _stop_signalled(self, signum: int) -> None:
        log.warning("%s: closing as q does", signal.Signals(signum).name)
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self.action_quit())

    def _release_stop_signals(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for signum in self._signals:
            loop.remove_signal_handler(signum)
        self._signals = ()

    async def action_quit(self) -> None:
        self._stop_background()
        if self.driver is not None and not self.driver.render_idle.is_set():
            # q during a render cancels it: wait (off the event loop) until the partial file is gone
            self.render_note = "cancelling the render…"
            self._update_status()
            await asyncio.to_thread(self.driver.render_idle.wait, QUIT_RENDER_WAIT_S)
        self.exit()

    def _stop_background(self) -> None:
        if self.driver is not None:
            self.driver.cancel.set()
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    def on_unmount(self) -> None:
        self._collector.resume()
        self._release_stop_signals()
        self._stop_background()
        self.workers.cancel_all()
        if self.driver is not None:
            for worker in self.workers:
                if worker.is_running and worker.group == "pipeline":
                    return  # the thread still holds the store; it closes it when it stops (next chunk)
            self.driver.close()

    # messages from the worker -------------------------------------------------------------------
    @on(RowsChanged)
    def queue_rows(self, message: RowsChanged) -> None:
        """Rows are applied in batches, at most one every ROW_FLUSH_S: every cell update makes the
        table render all its visible rows again, which is what costs the event loop time. A change
        after a quiet spell (a new photo in a watched folder, a key press) is shown at once: after
        the messages already queued, so the rows they carry come with it; one within ROW_FLUSH_S of
        the last flush waits for the end of that interval (a first scan: a few flushes a second). A
        flush of passing rows alone (``PASSING_STATUSES``) starts no interval."""
        for row in message.rows:
            self._pending_rows[row.hash] = self._with_decisions(row)
        if self._flush_due:
            return
        self._flush_due = True
        wait = self._rows_shown_at + ROW_FLUSH_S - time.monotonic()
        if wait > 0:
            self.set_timer(wait, self._flush_pending)
        else:
            self.call_later(self._flush_pending)

    def _flush_pending(self) -> None:
        self._flush_due = False
        self._flush_rows()

    def _with_decisions(self, row: FrameRow) -> FrameRow:
        """``row`` as the worker posted it, with the decisions it does not use yet."""
        if row.hash in self._verdicts:
            row = replace(row, verdict=self._verdicts[row.hash][1].value)
        if row.hash in self._nudges:
            nudge = self._nudges[row.hash][1]
            row = replace(row, flag=with_nudge_mark(row.flag, nudge is not None and not nudge.is_identity))
        return row

    @on(ViewsChanged)
    def keep_views(self, message: ViewsChanged) -> None:
        for view in message.views:
            self.views[view.hash] = view
        if any(view.hash == self._highlighted for view in message.views):
            self.request_preview()  # the photo under the cursor was registered (again): show it as it is now

    @on(DecisionApplied)
    def decision_applied(self, message: DecisionApplied) -> None:
        for pending in (self._verdicts, self._nudges):
            if message.hash in pending and pending[message.hash][0] <= message.seq:
                del pending[message.hash]

    def nudge_of(self, h: str) -> Nudge | None:
        """The frame's nudge: the one just stored by a key press, else the worker's."""
        if h in self._nudges:
            return self._nudges[h][1]
        view = self.views.get(h)
        return view.nudge if view is not None else None

    @property
    def rows_pending(self) -> bool:
        """Rows received from the worker and not yet shown (they are shown within ROW_FLUSH_S)."""
        return bool(self._pending_rows)

    @while_screen_up
    def _flush_rows(self) -> None:
        if self._pending_rows:
            rows, self._pending_rows = list(self._pending_rows.values()), {}
            if any(row.status not in PASSING_STATUSES for row in rows):
                self._rows_shown_at = time.monotonic()
            self.show_rows(rows)

    def show_rows(self, rows: list[FrameRow]) -> None:
        table = self.table
        added: dict[str, FrameRow] = {}  # added at once, after the loop (a library's open: 10,000)
        each = rows
        if not self.rows and not table.row_count:  # the table's first rows, all new: kept in one go
            added = {row.hash: row for row in self._first_rows(rows) if matches(row, self.filter)}
            each = ()
        for row in each:
            old = self.rows.get(row.hash)
            self.rows[row.hash] = row
            if old is None or old.status != row.status:
                if old is not None:
                    self._status_count[old.status] -= 1
                self._status_count[row.status] += 1
            if (old is None and row.residual_pct is not None) or (old is not None and (
                    (old.residual_pct is None) != (row.residual_pct is None) or old.series_key != row.series_key)):
                self._rows_version += 1  # the plot's date order may change (it shows rows with a residual)
            if old is None or old.residual_pct != row.residual_pct:
                self._residuals_version += 1
            self.flag_width.set(row.hash, row.flag)
            for key, width in self.fitted.items():
                width.set(row.hash, getattr(row, key))
            visible = row.hash in table.rows
            if not matches(row, self.filter):
                added.pop(row.hash, None)
                if visible:
                    table.remove_row(row.hash)
                continue
            if not visible:
                added[row.hash] = row
                continue
            for key, value in row.cells().items():
                if old is None or getattr(old, key) != value:
                    table.update_cell(row.hash, key, value)
                    if key == self.sort_column:
                        self._table_sorted = False  # (as before: sorted again when rows are added)
        if added:
            self._add_rows(added.values())
        self._fit_columns()
        if added and not self._follow_in_order(list(added.values())):
            self._keeping_selection(self._apply_sort)
        self._update_status()
        self._update_plot()
        if table.row_count and self._selected_hash() and rows:
            changed = next((r for r in rows if r.hash == self._selected_hash()), None)
            if changed is not None and changed.status in ("aligned", "turned", "skipped", "outlier"):
                self.request_preview()

    def _first_rows(self, rows: list[FrameRow]) -> list[FrameRow]:
        """``show_rows``'s bookkeeping of every row, for the table's first rows (a library's open:
        10,000 at once) in one go; the rows, one per photo."""
        self.rows = {row.hash: row for row in rows}
        rows = list(self.rows.values())
        self._status_count = Counter(row.status for row in rows)
        if any(row.residual_pct is not None for row in rows):
            self._rows_version += 1  # the plot's date order
            self._residuals_version += 1
        self.flag_width.set_many((row.hash, row.flag) for row in rows)
        for key, width in self.fitted.items():
            width.set_many((row.hash, getattr(row, key)) for row in rows)
        return rows

    def _add_rows(self, rows) -> None:
        """Rows at the bottom of the table, each cell its plain text (styled as it is drawn)."""
        self.table.add_rows((row.hash, row.cell_values()) for row in rows)

    def _follow_in_order(self, added: list[FrameRow]) -> bool:
        """Whether the rows just ``added`` (at the bottom of a table in sort order) are where the
        sort would put them, so the table is in order without sorting its every row again (a new
        photo, the latest, among 10,000). The sort is stable: a row keeps its place among equals."""
        table = self.table
        before = table.row_count - len(added)
        if not self._table_sorted or before <= 0:
            return False
        key, reverse = sort_key(self.sort_column), self._sort_reversed()
        last = table.get_cell_at((before - 1, table.get_column_index(self.sort_column)))
        keys = [key(last)] + [key(getattr(row, self.sort_column)) for row in added]
        ordered = operator.ge if reverse else operator.le
        return all(map(ordered, keys, keys[1:]))

    def _fit_columns(self) -> None:
        table = self.table
        fit_column(table, "flag", self.flag_width.width)
        for key, width in self.fitted.items():
            fit_column(table, key, width.width)

    @on(RowsRemoved)
    @while_screen_up
    def drop_rows(self, message: RowsRemoved) -> None:
        self._flush_rows()
        self._keeping_selection(lambda: self._remove_rows(message.hashes))
        self._update_status()
        self._update_plot()

    def _remove_rows(self, hashes: list[str]) -> None:
        self._rows_version += 1
        for h in hashes:
            old = self.rows.pop(h, None)
            if old is not None:
                self._status_count[old.status] -= 1
            self.flag_width.drop(h)
            for width in self.fitted.values():
                width.drop(h)
            self.views.pop(h, None)
            if h in self.table.rows:
                self.table.remove_row(h)
        self._fit_columns()

    @on(PipelineState)
    @while_screen_up
    def show_state(self, message: PipelineState) -> None:
        before, self.state = self.state, message
        self._update_status()
        # The output's size, the framing and the reference frame the preview: a preview asked for
        # before they were known (the first row of a cached folder, highlighted as the table
        # appears), or before the framing moved (it follows the kept frames' eyes), is redone.
        if before is None or (before.output_size, before.reference_hash, before.framing) != (
                message.output_size, message.reference_hash, message.framing):
            self.request_preview()

    @on(Notice)
    def show_notice(self, message: Notice) -> None:
        self.notify(printable(message.text), severity=message.severity, timeout=12)

    @on(RenderProgress)
    @while_screen_up
    def show_render_progress(self, message: RenderProgress) -> None:
        self.render_note = f"rendering {message.done}/{message.total}"
        self._update_status()

    @on(RenderFinished)
    @while_screen_up
    def show_render_done(self, message: RenderFinished) -> None:
        if message.error:
            self.render_note = "render failed"
            self.notify(f"render: {message.error}", severity="error", timeout=15)
        else:  # the file holds this render, written now or already up to date
            if message.unchanged:  # nothing written: the status bar says so too
                self.render_note = f"up to date: {message.path} ({message.frames} frames)"
                self.notify(f"{message.path} is up to date: nothing that changes it changed since it was written",
                            timeout=15)
            else:
                self.render_note = f"wrote {message.path} ({message.frames} frames)"
                self.notify(self.render_note, timeout=15)
        self._update_status()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            log.error("worker %s failed", event.worker.name, exc_info=error)
            what = "the pipeline stopped" if event.worker.group == "pipeline" else "preview failed"
            self.notify(f"{what}: {type(error).__name__}: {error}", severity="error", timeout=30)
            if event.worker.group == "pipeline":
                self.render_note = "pipeline stopped (see the message)"
                self._update_status()

    # status bar -------------------------------------------------------------------------------
    def _update_status(self) -> None:
        """One line (statusline.py decides what fits): what is happening first, standing conditions
        next (said here once, not as a notification at every start), settings last."""
        s = self.state
        known = {} if s is None else {"busy": s.busy, "queue": s.queue, "models": s.models or f"{s.mode} · {s.device}",
                                      "reference": s.reference}
        self.query_one("#status-bar", StatusBar).show(status_parts(
            counts_by_status(self._status_count), nudge_step=self.nudge_step, filter_name=self.filter,
            sort_column=self.sort_column, render_note=self.render_note, **known))
        self._update_empty_note()

    def _update_empty_note(self) -> None:
        """A filter that leaves no frame says so, and the preview shows nothing."""
        note = self.query_one("#table-note", Static)
        empty = bool(self.rows) and not self.table.row_count
        if empty:
            note.update(Text(f"no frames match this filter ({self.filter}); f: the next filter", style="yellow"))
        if empty and not note.display:
            self.query_one("#preview").show([] if self.graphics == "halfblock" else None)
            self.query_one("#preview-caption", Static).update("")
            self._highlighted = None
        note.display = empty

    @while_screen_up
    def _update_plot(self) -> None:
        h = self._selected_hash()
        row = self.rows.get(h) if h else None
        label = "" if row is None else f"{row.name} {row.residual}"
        self.query_one("#series", SeriesPlot).plot(self.rows, h, label, version=self._rows_version,
                                                   values_version=self._residuals_version)

    # selection and preview ------------------------------------------------------------------
    def _selected_hash(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None

    @on(DataTable.RowHighlighted, "#frames")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._highlighted = event.row_key.value
        self.request_preview()
        self._update_plot()

    def _keeping_selection(self, change) -> None:
        """Run ``change`` (a sort, rows added or removed, a new filter) with the cursor kept on the
        same photo, wherever its row goes; the preview and the plot follow when the photo under the
        cursor changes all the same (it was removed, or filtered out)."""
        before = self._selected_hash()
        change()
        if move_to_row(self.table, before):
            return  # its RowHighlighted tells the preview and the plot
        now = self._selected_hash()
        if now != self._highlighted and now is not None:
            self._highlighted = now
            self.request_preview()
            self._update_plot()

    @while_screen_up
    def request_preview(self) -> None:
        h = self._selected_hash()
        pane = self.query_one("#preview-pane")
        if h is None or not pane.display:
            return
        view = self.views.get(h)
        if view is not None:
            view = replace(view, nudge=self.nudge_of(h))
        s = self.state
        ref = self.views.get(s.reference_hash) if s is not None and s.reference_hash else None
        if ref is not None:
            ref = replace(ref, nudge=self.nudge_of(ref.hash))
        framed = (tuple(s.output_size), s.framing) if s is not None and s.output_size and s.framing else None
        self._make_preview(h, view, ref, framed, self.preview_mode, self.query_one("#preview").cell_size)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def _make_preview(self, h: str, v: FrameView | None, ref: FrameView | None, framed: tuple | None,
                      mode: str, cells: tuple[int, int]) -> None:
        """The picture, made on the preview worker's thread from immutable views (never the pipeline).
        ``framed``: the output's size and the framing's matrix (the state's), None without a framing."""
        box = (max(1, cells[0]), max(2, cells[1] * 2))
        max_px = self.config.scan.max_pixels
        image, caption = None, ""
        try:
            if v is None:
                caption = "this photo is gone"
            elif mode in ("detections", "photo"):
                image = detections_preview(v, box, max_px, zoom=mode == "detections")
                caption = f"[landmarks] {v.name}: {len(v.boxes)} {v.subject_word}(s) detected"
                if mode == "photo" or v.chosen is None:
                    caption += " · the whole photo" + (" (l: zoom to the subject)" if v.chosen is not None else "")
                else:
                    caption += " · zoomed to the subject (L: the whole photo)"
            elif v.matrix is None or framed is None:  # the row says the same: its status, and why
                why = f" ({v.error})" if v.error else ""
                caption = f"{v.name}: {v.status}{why}; nothing to show aligned (l: what was detected)"
            else:
                output, framing = framed
                how = {"output": output, "fill": self.config.render.fill}  # as the render frames it
                image = aligned_preview(v, box, max_px, matrix=on_output(framing, v.matrix), **how)
                caption = f"[{mode}] {v.name}: {v.status}, residual {v.residual_pct:.2f}%"
                if v.nudge is not None and not v.nudge.is_identity:
                    caption += f" · nudge {v.nudge.describe()}"
                if mode == "onion" and ref is not None and ref.matrix is not None:
                    image = onion_skin(image, aligned_preview(ref, box, max_px, matrix=on_output(framing, ref.matrix),
                                                              **how))
                    caption += f" · onion skin with {ref.name}"
                elif mode == "onion":
                    caption += " · no reference to blend with"
        except (PhotoError, OSError) as exc:
            caption = f"cannot show {v.name}: {exc}"
        if self.graphics == "halfblock":
            payload = [] if image is None else halfblock_lines(image, *cells)
        else:
            cw, ch = cell_pixels()
            payload = None if image is None else padded(image, (max(1, cells[0] * cw), max(1, cells[1] * ch)))
        if not get_current_worker().is_cancelled:
            self.post_message(PreviewReady(h, mode, payload, caption))

    @on(PreviewReady)
    @while_screen_up
    def show_preview(self, message: PreviewReady) -> None:
        if message.hash != self._selected_hash():
            return
        self.query_one("#preview").show(message.lines)
        self.query_one("#preview-caption", Static).update(Text(printable(message.caption)))

    # actions ----------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def action_verdict(self, value: str) -> None:
        h = self._selected_hash()
        if h is None or self.driver is None:
            return
        verdict = Verdict(value)
        try:
            self.decisions.set_verdict(h, verdict)  # on disk (fsync'd) before anything else happens
        except FolderError as exc:  # not saved, so not shown as decided either
            self.notify(printable(str(exc)), severity="error", timeout=30)
            return
        seq = self._next_seq()
        self._verdicts[h] = (seq, verdict)
        row = self.rows.get(h)
        if row is not None:
            self._pending_rows.pop(h, None)
            self.show_rows([self._with_decisions(row)])
        self.driver.submit(Decided(h, verdict, seq))  # the kept set (and maybe the reference) changes

    def action_pin(self) -> None:
        h = self._selected_hash()
        if h is None:
            return
        row = self.rows[h]
        if row.status not in ("aligned", "turned", "skipped", "outlier"):
            word = self.state.subject_word if self.state is not None else "subject"
            self.notify(f"{row.name} is {row.status}: only a frame with a usable {word} can be the reference",
                        severity="warning")
            return
        self.driver.submit(Pin(h))
        self.notify(f"pinned {row.name} as the reference; re-registering from cached detections")

    def action_nudge(self, axis: str, direction: int) -> None:
        """One step of the person's correction of the selected frame: stored (atomically, like a
        verdict) before the preview shows it."""
        h = self._selected_hash()
        view = self.views.get(h) if h else None
        if view is None or view.matrix is None:
            self.notify("only an aligned frame can be nudged", severity="warning", timeout=3)
            return
        self._store_nudge(h, (self.nudge_of(h) or Nudge()).stepped(axis, direction, self.nudge_step))

    def action_nudge_reset(self) -> None:
        h = self._selected_hash()
        if h is not None and h in self.views:
            self._store_nudge(h, None)

    def action_nudge_step(self) -> None:
        self.nudge_step = "fine" if self.nudge_step == "coarse" else "coarse"
        self._update_status()

    def _store_nudge(self, h: str, nudge: Nudge | None) -> None:
        try:
            self.decisions.set_nudge(h, nudge)  # on disk (fsync'd) first
        except FolderError as exc:  # not saved, so not shown either
            self.notify(printable(str(exc)), severity="error", timeout=30)
            return
        seq = self._next_seq()
        self._nudges[h] = (seq, None if nudge is None or nudge.is_identity else nudge)
        row = self.rows.get(h)
        if row is not None:
            self._pending_rows.pop(h, None)
            self.show_rows([self._with_decisions(row)])
        self.driver.submit(Nudged(h, nudge, seq))
        self.request_preview()

    def action_render(self) -> None:
        self.render_note = "render queued"
        self._update_status()
        self.driver.submit(Render())

    def action_preview_mode(self, mode: str) -> None:
        self.preview_mode = "aligned" if self.preview_mode == mode else mode
        self.request_preview()

    def action_toggle_preview(self) -> None:
        pane = self.query_one("#preview-pane")
        pane.display = not pane.display
        self.request_preview()

    def action_zoom_preview(self) -> None:
        """The preview takes the whole screen (the table hides), or gives it back: at 80x24 the
        preview beside or under the table is a thumbnail that cannot show the alignment."""
        self.screen.toggle_class("-zoomed")
        self.query_one("#preview-pane").display = True
        self.call_after_refresh(self.request_preview)  # at its new size

    def action_next_flagged(self, step: int) -> None:
        table = self.table
        n = table.row_count
        if not n:
            return
        start = table.cursor_row
        for i in range(1, n + 1):
            index = (start + step * i) % n
            key = table.coordinate_to_cell_key((index, 0)).row_key.value
            if key in self.rows and is_flagged(self.rows[key]):
                table.move_cursor(row=index)
                return
        self.notify("no flagged frames", timeout=3)

    def action_cycle_filter(self) -> None:
        self.filter = FILTERS[(FILTERS.index(self.filter) + 1) % len(FILTERS)]

        def refill() -> None:
            self.table.clear()
            self._add_rows(row for row in self.rows.values() if matches(row, self.filter))
            self._apply_sort()

        self._keeping_selection(refill)
        self._update_status()

    def action_cycle_sort(self) -> None:
        self.sort_column = next_sort_column(self.sort_column, visible_columns(self.table), self.sort_chosen)
        self._sort_by(self.sort_column)

    def action_sort_by(self, column: str) -> None:
        """Sort by ``column`` (the palette's "Sort by …")."""
        self._sort_by(column)

    @on(DataTable.HeaderSelected, "#frames")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        self._sort_by(event.column_key.value)

    def _sort_by(self, column: str) -> None:
        self.sort_column, self.sort_chosen = column, True
        self._mark_sort_column()
        self._keeping_selection(self._apply_sort)
        self._update_status()

    def _sort_reversed(self) -> bool:
        # the worst first: the largest residual, flags, identity distance; the least sharp
        return WORST_FIRST.get(self.sort_column, False)

    def _mark_sort_column(self) -> None:
        mark_sort_column(self.table, self.sort_column, self.sort_column in WORST_FIRST)

    def _apply_sort(self) -> None:
        self.table.sort(self.sort_column, key=sort_key(self.sort_column), reverse=self._sort_reversed())
        self._table_sorted = True
