"""Terminal plumbing of the app, apart from the app itself: a terminal that hangs up (its output
file failing with EIO) must not stall the app's way out, and the garbage collector waits while the
app opens (its passes over what the open makes, which lives on, were wasted time)."""
from __future__ import annotations

import gc
import threading


class HangupTolerant:
    """The terminal's output file, where a write after a hang-up (the terminal closed: EIO) is
    dropped. Textual writes from a thread that dies on the first failed write, and then its full
    queue blocks the app's way out for good; so a closed terminal would leave the app, the worker
    and a render's ffmpeg running."""

    def __init__(self, file):
        self._file = file
        self.gone = False

    def write(self, text: str) -> None:
        if not self.gone:
            try:
                self._file.write(text)
            except OSError:
                self.gone = True

    def flush(self) -> None:
        if not self.gone:
            try:
                self._file.flush()
            except OSError:
                self.gone = True

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return not self.gone and self._file.isatty()


def hangup_tolerant(driver_class: type) -> type:
    """``driver_class`` (Textual's terminal driver) writing through ``HangupTolerant``."""
    try:
        from textual.drivers.linux_driver import LinuxDriver
    except ImportError:  # not a POSIX terminal driver
        return driver_class
    if not issubclass(driver_class, LinuxDriver):
        return driver_class

    class HangupTolerantDriver(driver_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._file = HangupTolerant(self._file)  # Textual pinned in pyproject: its attribute

    return HangupTolerantDriver


# Objects made while the collector was paused past which ``CollectorPause.resume`` freezes them
# (a cached folder of a few thousand photos and up); below it, a small folder's open, nothing is
# frozen (many apps of a test session would each freeze their leftovers).
FREEZE_AFTER = 200_000


class CollectorPause:
    """The garbage collector paused from the start of the open until the table has been drawn once:
    what is made then lives on (the results, the rows, the table's layout), so full passes over it,
    0.1-0.3 s each with torch imported (more with what an earlier app in the process left), were
    wasted time while the person waits for the screen. ``resume`` is called after the first refresh
    and on the way out; an app built but never run resumes it after ``limit_s`` at the latest."""

    def __init__(self, limit_s: float = 30.0):
        self._lock = threading.Lock()
        self._paused = False
        self._limit_s = limit_s
        self._timer: threading.Timer | None = None

    def pause(self) -> None:
        with self._lock:
            if self._paused or not gc.isenabled():
                return
            gc.disable()
            self._paused = True
            self._timer = threading.Timer(self._limit_s, self.resume)
            self._timer.daemon = True
            self._timer.start()

    def resume(self) -> None:
        with self._lock:
            if not self._paused:
                return
            self._paused = False
            if gc.get_count()[0] >= FREEZE_AFTER:
                # A library's open (10,000 rows: 0.5 s of collections right after the first paint,
                # one pass for each of the young generations, each over everything the open made):
                # what it made lives on, so it goes out of the collector's sight as the models do.
                # The few cycles that were already garbage stay (a few MB, once per process).
                gc.freeze()
            gc.enable()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
