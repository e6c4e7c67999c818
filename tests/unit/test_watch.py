"""The folder watcher with a real watchdog observer on a temporary folder.

Waits are on conditions with generous limits (a loaded machine can stall a thread for seconds);
the one timing-dependent claim (no report while a file keeps growing) uses a settle time far longer
than the pause between writes, so only a stall of several seconds could upset it."""
import threading
import time
from pathlib import Path

from alignimation_tui.watch import FolderWatcher

LIMIT = 60.0


def wait(condition, timeout=LIMIT):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_reports_a_photo_only_once_it_stops_growing(tmp_path):
    ready, deleted = [], []
    watcher = FolderWatcher(tmp_path, ready.append, deleted.append, settle_s=3.0, poll_s=0.05)
    watcher.start()
    try:
        photo = tmp_path / "new.jpg"
        with photo.open("wb") as fh:
            for _ in range(8):  # written over ~0.8 s, never quiet for anywhere near 3 s
                fh.write(b"x" * 1000)
                fh.flush()
                time.sleep(0.1)
            assert wait(lambda: watcher.pending == 1), "the watcher never saw the file"
            assert ready == [], "reported while still being written"
        assert wait(lambda: ready == [photo])
        watcher.settle_s = 0.3
        (tmp_path / "notes.txt").write_text("not a photo")
        (tmp_path / ".hidden.jpg").write_bytes(b"x")
        photo.rename(tmp_path / "moved.jpg")
        assert wait(lambda: deleted == [photo] and ready[-1] == tmp_path / "moved.jpg")
        (tmp_path / "moved.jpg").unlink()
        assert wait(lambda: deleted[-1] == tmp_path / "moved.jpg")
        # Events arrive in order: once a photo written after them is reported, anything the
        # watcher would have reported for the non-photos would be there already.
        (tmp_path / "last.jpg").write_bytes(b"y")
        assert wait(lambda: ready[-1:] == [tmp_path / "last.jpg"])
        assert ready == [photo, tmp_path / "moved.jpg", tmp_path / "last.jpg"], "non-photos and hidden files are ignored"
    finally:
        watcher.stop()
    assert not any(t.name == "watch-settle" and t.is_alive() for t in threading.enumerate())


def test_an_empty_file_waits(tmp_path):
    ready = []
    watcher = FolderWatcher(tmp_path, ready.append, lambda p: None, settle_s=0.1, poll_s=0.05)
    watcher.start()
    try:
        (tmp_path / "empty.jpg").write_bytes(b"")
        assert wait(lambda: watcher.pending == 1)
        (tmp_path / "control.jpg").write_bytes(b"data")  # settles like any photo...
        assert wait(lambda: ready == [tmp_path / "control.jpg"])
        assert watcher.pending == 1, "...while the empty one keeps waiting"
        (tmp_path / "empty.jpg").write_bytes(b"data")
        assert wait(lambda: len(ready) == 2 and ready[-1] == tmp_path / "empty.jpg")
    finally:
        watcher.stop()


def test_the_folder_itself_gone_unreadable_and_back_is_said_once_each(tmp_path, monkeypatch):
    """A real rename away and back; permission denied injected into the listing (this runs as root
    here, whom chmod does not stop), as ``chmod 000`` gives a user."""
    import os as os_mod

    from alignimation_tui.watch import FolderWatcher, folder_problem

    folder = tmp_path / "photos"
    folder.mkdir()
    heard = []
    w = FolderWatcher(folder, on_ready=lambda p: None, on_deleted=lambda p: None, on_folder=heard.append)
    w.check_folder()
    assert heard == [] and folder_problem(folder) is None  # usable from the start: nothing said
    folder.rename(tmp_path / "elsewhere")
    w.check_folder()
    w.check_folder()
    assert heard == ["it was moved or removed"]  # once
    (tmp_path / "elsewhere").rename(folder)
    w.check_folder()
    assert heard == ["it was moved or removed", None]

    real = os_mod.scandir

    def denied(path):
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os_mod, "scandir", denied)
    w.check_folder()
    assert heard[-1] == "permission denied"
    monkeypatch.setattr(os_mod, "scandir", real)
    w.check_folder()
    assert heard[-1] is None and len(heard) == 4


def test_the_settle_clock_restarts_with_every_write(tmp_path, monkeypatch):
    """Deterministic (a fake clock, the settle check called by hand): a photo written on for longer
    than the settle time is not reported until it has been quiet for the settle time. A clock
    started at first sight would report it mid-copy, at 1.5 s."""
    import alignimation_tui.watch as watch

    now = [0.0]
    monkeypatch.setattr(watch.time, "monotonic", lambda: now[0])
    ready = []
    w = FolderWatcher(tmp_path, ready.append, lambda p: None, settle_s=1.5)
    photo = tmp_path / "copying.jpg"
    photo.write_bytes(b"x" * 100)
    w._touched(photo)
    for step in range(1, 6):  # a write every second for five seconds: never quiet for 1.5 s
        now[0] = float(step)
        with photo.open("ab") as fh:
            fh.write(b"x" * 100)
        w.check_pending()
        assert ready == [], f"reported at {now[0]} s while still being written"
    now[0] = 6.0
    w.check_pending()
    assert ready == []  # quiet for 1 s only since the last write (at 5 s)
    now[0] = 6.6
    w.check_pending()
    assert ready == [photo]
