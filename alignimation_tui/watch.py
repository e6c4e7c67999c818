"""Watching the photo folder: a watchdog observer that only reports paths, never does work.

A new or changed photo is reported through ``on_ready`` only once its size and mtime have stayed
the same for ``settle_s`` seconds, so a photo still being copied is never read half written.
Deleted photos go to ``on_deleted`` at once. The folder itself is looked at every ``check_s``:
when it is moved away, removed or made unreadable, ``on_folder`` hears it once, with the reason in
one line, and again once it can be read at its place (back from a move, its permissions restored):
photos that arrived meanwhile were never seen by the observer, so the folder is looked through
again. The callbacks run on the watcher's threads: they must only enqueue (the pipeline worker
does the work). No Textual here.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .folders import reason
from .scan import photo_suffixes

log = logging.getLogger(__name__)


def _is_photo(path: Path, folder: Path) -> bool:
    return (path.parent == folder and not path.name.startswith(".")
            and path.suffix.lower() in photo_suffixes())


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: "FolderWatcher"):
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        kind = event.event_type
        if kind in ("created", "modified", "closed"):
            self.watcher._touched(Path(os.fsdecode(event.src_path)))
        elif kind == "deleted":
            self.watcher._deleted(Path(os.fsdecode(event.src_path)))
        elif kind == "moved":
            self.watcher._deleted(Path(os.fsdecode(event.src_path)))
            self.watcher._touched(Path(os.fsdecode(event.dest_path)))


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be used as a photo folder now, in a few words; None when it can."""
    try:
        if not folder.is_dir():
            return "it was moved or removed" if not folder.exists() else "it is no longer a folder"
        with os.scandir(folder) as entries:
            next(entries, None)
    except FileNotFoundError:
        return "it was moved or removed"
    except OSError as exc:  # "permission denied", …
        return reason(exc)
    return None


class FolderWatcher:
    """Start it before the first scan, so nothing that arrives during the scan is missed."""

    def __init__(self, folder: Path, on_ready: Callable[[Path], None], on_deleted: Callable[[Path], None],
                 settle_s: float = 1.0, poll_s: float = 0.25,
                 on_folder: Callable[[str | None], None] | None = None, check_s: float = 1.0):
        self.folder = Path(folder).absolute()
        self.on_ready, self.on_deleted, self.on_folder = on_ready, on_deleted, on_folder
        self.settle_s, self.poll_s, self.check_s = settle_s, poll_s, check_s
        self.problem: str | None = None  # why the folder cannot be used now (``folder_problem``)
        self._checked = 0.0
        self._pending: dict[Path, tuple[tuple[int, int] | None, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observer = Observer()
        self._observer.schedule(_Handler(self), str(self.folder), recursive=False)
        self._settler = threading.Thread(target=self._settle_loop, name="watch-settle", daemon=True)

    @property
    def pending(self) -> int:
        """Photos seen but still changing (being copied)."""
        with self._lock:
            return len(self._pending)

    def start(self) -> None:
        self._observer.start()
        self._settler.start()

    def stop(self) -> None:
        self._stop.set()
        self._observer.stop()
        self._observer.join(timeout=5)
        if self._settler.is_alive():
            self._settler.join(timeout=5)

    # called on the observer's thread -------------------------------------------------------
    def _touched(self, path: Path) -> None:
        if _is_photo(path, self.folder):
            with self._lock:
                self._pending[path] = (None, time.monotonic())

    def _deleted(self, path: Path) -> None:
        if _is_photo(path, self.folder):
            with self._lock:
                self._pending.pop(path, None)
            self.on_deleted(path)

    # the settle thread -------------------------------------------------------------------------
    def _settle_loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check_pending()
            if self.on_folder is not None and time.monotonic() - self._checked >= self.check_s:
                self.check_folder()

    def check_folder(self) -> None:
        """Tell ``on_folder`` when the folder's state changed: its problem, or None once it is usable
        again (the caller looks through it for what arrived meanwhile)."""
        self._checked = time.monotonic()
        problem = folder_problem(self.folder)
        if problem == self.problem:
            return
        self.problem = problem
        try:
            self.on_folder(problem)
        except Exception:  # a callback bug must not stop the watcher
            log.exception("watch: folder callback failed for %s", self.folder)

    def check_pending(self) -> None:
        now = time.monotonic()
        ready = []
        with self._lock:
            for path, (last, since) in list(self._pending.items()):
                try:
                    st = path.stat()
                except OSError:  # gone again before it settled
                    del self._pending[path]
                    continue
                sig = (st.st_size, st.st_mtime_ns)
                if sig != last:
                    self._pending[path] = (sig, now)
                elif st.st_size > 0 and now - since >= self.settle_s:
                    del self._pending[path]
                    ready.append(path)
        for path in ready:
            try:
                self.on_ready(path)
            except Exception:  # a callback bug must not stop the watcher
                log.exception("watch: callback failed for %s", path)
