"""One owner per output: every file a render writes is staged under a name no other run can take and
renamed into place only when it is complete.

* A staged name is ``.NAME.partial-PID-RANDOM.SUFFIX`` beside the final file (``.week.mp4.partial-
  4242-k3x9q1.mp4``: the suffix stays last, so ffmpeg picks the format from it), or a folder
  ``.partial-PID-RANDOM`` inside a frames folder. Two runs rendering one path each write their own
  file; both finish and the last rename wins, each file whole (the renames of one render, the
  animation and its sidecar, happen under a lock on the folder, so a pair is never mixed).
* The writer holds an ``fcntl.flock`` on its staged file or folder for as long as it lives; the
  kernel drops it when the process dies, ``kill -9`` included. ``remove_abandoned(folder)`` (at
  every render, and at the start of ``--once``) removes the staged files whose writer is gone: its
  pid no longer runs, or the pid was reused and nobody holds the lock. Another run's live partial
  is never touched, nor any file we did not stage.
* ``stop_all()`` ends every encoder this process started and removes every staged file it holds:
  for an app that is shutting down with a render in flight (also run at interpreter exit).
"""
from __future__ import annotations

import atexit
import fcntl
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# .NAME.partial-PID-RANDOM[.SUFFIX] (files) and .partial-PID-RANDOM (frames folders)
_STAGED = re.compile(r"^\..+\.partial-(\d+)-[0-9a-f]{8}\.(mp4|gif|webp|json)$|^\.partial-(\d+)-[A-Za-z0-9_]+$")
# A staged entry of a live pid that nobody locks is taken for a reused pid only after this long:
# the writer takes its lock right after creating the entry.
_REUSED_PID_AGE_S = 60.0

_live_lock = threading.Lock()
_live: dict[int, "Staged"] = {}  # id -> staged entries held by this process
_encoders: dict[int, subprocess.Popen] = {}


def _token() -> str:
    return secrets.token_hex(4)


def staged_file_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial-{os.getpid()}-{_token()}{final.suffix}")


class Staged:
    """A staged file (or folder) and the lock that says its writer lives."""

    def __init__(self, path: Path, is_dir: bool):
        self.path, self.is_dir = path, is_dir
        self._fd: int | None = None
        self.discarded = False  # by stop_all, or the writer's own clean-up: no more writes

    @classmethod
    def file(cls, final: Path) -> "Staged":
        """Create an empty staged file for ``final`` (raises the ``OSError`` of a folder we cannot write)."""
        for _ in range(8):
            path = staged_file_name(final)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            except FileExistsError:
                continue
            staged = cls(path, False)
            staged._hold(fd)
            return staged
        raise FileExistsError(f"cannot find a free staging name beside {final}")

    @classmethod
    def folder(cls, parent: Path) -> "Staged":
        for _ in range(8):
            path = parent / f".partial-{os.getpid()}-{_token()}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            staged = cls(path, True)
            staged._hold(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            return staged
        raise FileExistsError(f"cannot find a free staging name in {parent}")

    def _hold(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        with _live_lock:
            _live[id(self)] = self

    def _release(self) -> None:
        with _live_lock:
            _live.pop(id(self), None)
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # drops the lock

    def commit(self, final: Path) -> None:
        """Rename into place (atomic); the staged name is gone afterwards."""
        os.replace(self.path, final)
        self._release()

    def discard(self) -> None:
        """Remove the staged file or folder (what this run wrote, nothing else)."""
        self.discarded = True
        try:
            if self.is_dir:
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                self.path.unlink(missing_ok=True)
        finally:
            self._release()


def _pid_of(name: str) -> int | None:
    m = _STAGED.match(name)
    if m is None:
        return None
    return int(m.group(1) or m.group(3))


def _nobody_holds(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def is_abandoned(path: Path) -> bool:
    """Whether ``path`` is a staged entry whose writer is gone."""
    pid = _pid_of(path.name)
    if pid is None:
        return False
    if pid == os.getpid():  # ours: every render of ours removes its own
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        pass
    except OSError:
        return False
    try:
        old = time.time() - path.lstat().st_mtime > _REUSED_PID_AGE_S
    except OSError:
        return False
    return old and _nobody_holds(path)


def remove_abandoned(folder: Path) -> list[Path]:
    """Remove the staged files and folders in ``folder`` whose writer is gone; returns them."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(".") or "partial-" not in name:
            continue
        path = Path(folder) / name
        if not is_abandoned(path):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            continue
        removed.append(path)
    return removed


@contextmanager
def folder_locked(*folders: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on each folder (renames of one render happen together)."""
    fds = []
    try:
        for folder in dict.fromkeys(Path(f) for f in folders):
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # a file system without flock on folders: the renames are atomic anyway
                pass
        yield
    finally:
        for fd in fds:
            os.close(fd)


# encoders ---------------------------------------------------------------------------------------

def register_encoder(proc: subprocess.Popen) -> None:
    with _live_lock:
        _encoders[id(proc)] = proc


def forget_encoder(proc: subprocess.Popen) -> None:
    with _live_lock:
        _encoders.pop(id(proc), None)


def stop_all() -> int:
    """End every encoder this process started and remove every staged file it holds (the render
    threads then fail at their next write and clean up the rest). Returns how many encoders were
    ended. Safe to call from any thread, any number of times."""
    with _live_lock:
        procs, staged = list(_encoders.values()), list(_live.values())
    ended = 0
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.kill()
                ended += 1
            except OSError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        forget_encoder(proc)
    for s in staged:
        s.discard()
    return ended


atexit.register(stop_all)


_libc_prctl = None


def _prctl():
    global _libc_prctl
    if _libc_prctl is None:
        try:
            import ctypes

            _libc_prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _libc_prctl = False
    return _libc_prctl


PR_SET_PDEATHSIG = 1


def die_with_parent():
    """A ``preexec_fn`` for an encoder (Linux): the kernel kills the child with SIGKILL when the
    thread that started it ends, even by ``kill -9`` of this process, so no orphaned ffmpeg goes on
    writing a partial file. None where prctl is not available."""
    prctl = _prctl() if os.uname().sysname == "Linux" else False
    if not prctl:
        return None
    parent = os.getpid()

    def child() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return child
