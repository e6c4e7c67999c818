"""SIGTERM and SIGHUP to the app end it as ``q`` does, while it renders: the worker stops, ffmpeg is
ended, the partial file removed, the terminal restored (alternate screen left, mouse off, cursor
shown) and the decisions are on disk. The app runs for real in a subprocess on a pseudo-terminal
(its own session, as under a terminal emulator or sshd) and gets a real signal; for the hang-up the
terminal itself goes away (the master side is closed, the kernel sends SIGHUP)."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from alignimation_tui.domain import Verdict
from alignimation_tui.store import Decisions
from tests.conftest import REPO

PHOTOS = 48  # enough frames that the render is still running when the signal comes

APP_SCRIPT = """
import sys
from dataclasses import replace
from pathlib import Path

from alignimation_tui.config import Config, RenderConfig, WatchConfig
from alignimation_tui.tui import app as app_module
from alignimation_tui.tui.app import AlignimationApp
from tests.tui.recorded import recorded_pipeline
from tests.tui.test_app import WARPS, astronaut_photo, settled

folder, out, status = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
for i in range(int(sys.argv[4])):  # made here, so this process's record knows them
    astronaut_photo(folder / f"photo{i:03d}.jpg", i, WARPS[i % len(WARPS)])
config = replace(Config(), watch=WatchConfig(settle_seconds=0.2), render=RenderConfig(output=str(out)))


class Scripted(AlignimationApp):
    CSS_PATH = str(Path(app_module.__file__).with_name("app.tcss"))
    step = 0

    def on_mount(self):
        super().on_mount()
        self.set_interval(0.1, self.next_step)

    def next_step(self):
        if self.step == 0 and settled(self):
            self.table.move_cursor(row=1)
            self.action_verdict("rejected")
            status.write_text("REJECTED " + self._selected_hash() + "\\n")
            self.step = 1
        elif self.step == 1 and not self._verdicts:
            self.action_render()
            self.step = 2


Scripted(folder, config, pipeline=recorded_pipeline).run()
with status.open("a") as fh:
    fh.write("EXITED\\n")
"""


def ffmpeg_writing_into(folder: Path) -> list[int]:
    """Pids of processes whose command line names ``folder`` (an ffmpeg left writing there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(folder).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


class Terminal:
    """The app on a pseudo-terminal; everything it writes is kept in ``output``."""

    def __init__(self, argv: list[str], env: dict):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a new session whose controlling terminal is the pty
            try:
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
        self.output = bytearray()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                if ready:
                    data = os.read(self.fd, 65536)
                    if not data:
                        return
                    with self.lock:
                        self.output += data
            except OSError:  # EIO: the other side closed, or we closed the master
                return

    def since(self, mark: int) -> bytes:
        with self.lock:
            return bytes(self.output[mark:])

    def mark(self) -> int:
        with self.lock:
            return len(self.output)

    def hang_up(self) -> None:
        os.close(self.fd)

    code: int | None = None

    def wait(self, timeout: float) -> int | None:
        """The exit code, waiting up to ``timeout`` seconds for it; None while it runs."""
        deadline = time.monotonic() + timeout
        while self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
            elif time.monotonic() >= deadline:
                break
            else:
                time.sleep(0.05)
        return self.code


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "hangup"])
def test_signal_while_rendering_ends_the_app_as_q_does(tmp_path, how):
    folder, out_dir = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    out_dir.mkdir()
    out, status = out_dir / "timelapse.mp4", tmp_path / "status"
    script = tmp_path / "app.py"
    script.write_text(APP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color", "COLUMNS": "150", "LINES": "40"}
    term = Terminal([sys.executable, str(script), str(folder), str(out), str(status), str(PHOTOS)], env)
    try:
        deadline = time.monotonic() + 180
        while not any("partial" in p.name for p in out_dir.iterdir()):  # the render is writing
            assert time.monotonic() < deadline, ("the render never started", term.since(0)[-2000:])
            assert term.wait(0) is None, ("the app ended early", term.since(0)[-2000:])
            time.sleep(0.02)
        rejected = status.read_text().split()[1]
        mark = term.mark()
        if how == "hangup":
            term.hang_up()  # the terminal goes away: the kernel sends SIGHUP to the session
        else:
            os.kill(term.pid, getattr(signal, how))
        code = term.wait(90)
        assert code is not None, "the app did not end"
    finally:
        if term.wait(0) is None:
            os.kill(term.pid, signal.SIGKILL)
            term.wait(10)
    assert code == 0, code
    assert status.read_text().splitlines()[-1] == "EXITED"
    if how != "hangup":  # with the terminal gone there is nothing to restore
        restored = term.since(mark)
        for sequence, what in ((b"\x1b[?1049l", "the alternate screen left"), (b"\x1b[?1000l", "mouse off"),
                               (b"\x1b[?25h", "the cursor shown")):
            assert sequence in restored, what
    assert sorted(p.name for p in out_dir.iterdir()) == [], "no partial file (and no output: it was cancelled)"
    assert ffmpeg_writing_into(out_dir) == [], "ffmpeg was ended"
    (path,) = Path(os.environ["XDG_DATA_HOME"]).glob("**/decisions.json")
    assert Decisions(path).verdict(rejected) is Verdict.REJECTED
