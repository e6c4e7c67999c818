"""The folder watcher with a real watchdog observer on a temporary folder."""
import threading
import time

from alignimation_tui.watch import FolderWatcher


def wait(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_reports_a_photo_only_once_it_stops_growing(tmp_path):
    ready, deleted = [], []
    watcher = FolderWatcher(tmp_path, ready.append, deleted.append, settle_s=0.5, poll_s=0.05)
    watcher.start()
    try:
        photo = tmp_path / "new.jpg"
        with photo.open("wb") as fh:
            for _ in range(8):  # written over ~0.8 s: never quiet for 0.5 s
                fh.write(b"x" * 1000)
                fh.flush()
                time.sleep(0.1)
            assert ready == [], "reported while still being written"
        assert wait(lambda: ready == [photo])
        (tmp_path / "notes.txt").write_text("not a photo")
        (tmp_path / ".hidden.jpg").write_bytes(b"x")
        photo.rename(tmp_path / "moved.jpg")
        assert wait(lambda: deleted == [photo] and ready[-1] == tmp_path / "moved.jpg")
        (tmp_path / "moved.jpg").unlink()
        assert wait(lambda: deleted[-1] == tmp_path / "moved.jpg")
        time.sleep(0.6)
        assert ready == [photo, tmp_path / "moved.jpg"], "non-photos and hidden files are ignored"
    finally:
        watcher.stop()
    assert not any(t.name == "watch-settle" and t.is_alive() for t in threading.enumerate())


def test_an_empty_file_waits(tmp_path):
    ready = []
    watcher = FolderWatcher(tmp_path, ready.append, lambda p: None, settle_s=0.1, poll_s=0.05)
    watcher.start()
    try:
        (tmp_path / "empty.jpg").write_bytes(b"")
        time.sleep(0.5)
        assert ready == [] and watcher.pending == 1
        (tmp_path / "empty.jpg").write_bytes(b"data")
        assert wait(lambda: len(ready) == 1)
    finally:
        watcher.stop()
