"""Two runs meet, or one is stopped, while rendering: every output is whole, no partial file is left
behind and no ffmpeg outlives its run. Real processes, real ffmpeg, real signals; every wait is on
a condition (a file appearing, a process ending), never on time alone."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import pytest
from PIL import Image

from alignimation_tui.cli import main
from tests.e2e.test_crash import signal_when
from tests.e2e.test_faults import N, folder, no_partials, once, one_line, template  # noqa: F401 (fixtures)

SLOW = "[render]\ncrossfade = 24\n"  # 5 x 24 + 6 frames: long enough to be caught mid-render
MP4_FRAMES = (N - 1) * 24 + N


def staged(out: Path) -> list[Path]:
    """The partial files of renders into ``out`` (any run's)."""
    return sorted(out.parent.glob(f".{out.name}.partial*"))


def processes_naming(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of live processes that mention ``text`` (an orphaned ffmpeg names its partial)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{pid}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != b"Z":
            found.append((int(pid), cmd))
    return found


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def readable_frames(out: Path) -> int:
    """Frames in ``out`` as a player reads them (the whole file is decoded)."""
    if out.suffix == ".mp4":
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
        return frames
    with Image.open(out) as im:
        for k in range(im.n_frames):
            im.seek(k)
            im.load()
        return im.n_frames


def slow_config(tmp_path: Path) -> Path:
    path = tmp_path / "slow.toml"
    path.write_text(SLOW)
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_two_once_runs_writing_one_output_leave_it_whole(folder, tmp_path, suffix):
    """A cron job and a hand run on one --out, over last week's good file: the first run is held
    (SIGSTOP) with its partial file written, the second renders from start to end, then the first
    goes on. Both finish, the last rename wins, and the file is whole."""
    out = tmp_path / f"out{suffix}"
    config = slow_config(tmp_path)
    last_week = tmp_path / "last_week.toml"  # another setting: the two runs cannot take the file as up to date
    last_week.write_text(SLOW + "quality = 28\n")
    assert main([str(folder), "--once", "--config", str(last_week), "--out", str(out)]) == 0  # last week's
    good = readable_frames(out)
    first = once(folder, "--config", str(config), "--out", str(out))

    def writing() -> bool:  # the encoder has opened and begun the first run's partial file
        return any(p.stat().st_size > 0 for p in staged(out))

    try:
        wait_for(lambda: writing() or first.poll() is not None, "the first run's partial file", 300)
        assert first.poll() is None, first.stderr.read()
        os.kill(first.pid, signal.SIGSTOP)  # in the middle of its render
        second = subprocess.run([sys.executable, "-m", "alignimation_tui", str(folder), "--once", "--config",
                                 str(config), "--out", str(out)], cwd=Path(__file__).resolve().parents[2],
                                env=os.environ.copy(), capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr
        assert readable_frames(out) == good  # the second run's file, whole
    finally:
        os.kill(first.pid, signal.SIGCONT)
    first.wait(timeout=300)
    err = first.stderr.read()
    assert first.returncode == 0, err
    assert "Traceback" not in err
    assert readable_frames(out) == good  # the first run's file, whole: the last rename won
    if suffix == ".mp4":
        assert good == MP4_FRAMES
    no_partials(tmp_path)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_stop_signals_while_rendering(folder, tmp_path, signum, code):
    """SIGTERM (a logout, kill) and SIGHUP (a closed SSH session) end --once as Ctrl+C does: one
    line, the previous file untouched, ffmpeg ended, no partial left; exit 128 + the signal."""
    out = tmp_path / "week.mp4"
    out.write_bytes(b"last week's animation")
    proc = once(folder, "--config", str(slow_config(tmp_path)), "--out", str(out))
    signal_when(proc, lambda: bool(staged(out)), signum, wait=120)
    err = proc.stderr.read()
    assert proc.returncode == code, err
    assert one_line(err).startswith(f"interrupted: {N} of {N} photos detected and cached"), err
    assert out.read_bytes() == b"last week's animation"
    assert not processes_naming(str(tmp_path)), "ffmpeg outlived the run"
    no_partials(tmp_path)


def test_kill_9_while_rendering_ends_ffmpeg_and_the_next_run_removes_the_partial(folder, tmp_path):
    """kill -9 of --once mid-render: its ffmpeg dies with it (it does not go on to finish a
    truncated partial file), and the next run rendering anything into that folder removes the
    partial, whoever left it."""
    out = tmp_path / "week.mp4"
    proc = once(folder, "--config", str(slow_config(tmp_path)), "--out", str(out))

    def encoders() -> list[int]:
        return [pid for pid, cmd in processes_naming(f".{out.name}.partial") if "ffmpeg" in cmd]

    def encoding() -> bool:  # ffmpeg has written frames already (an orphan would finish a readable file)
        files = staged(out)
        return bool(encoders() and files and files[0].stat().st_size > 100_000)

    wait_for(lambda: encoding() or proc.poll() is not None, "the render's ffmpeg to write frames", 300)
    assert proc.poll() is None, proc.stderr.read()
    ffmpeg = encoders()
    for pid in ffmpeg:  # held still, so it cannot finish before its parent is gone
        os.kill(pid, signal.SIGSTOP)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    for pid in ffmpeg:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    left = staged(out)
    assert left, "the killed run's partial file is there"
    wait_for(lambda: not processes_naming(str(tmp_path)), "ffmpeg to end", 60)
    # killed with its parent, ffmpeg never went on to complete the file: ffprobe finds no video in it
    with pytest.raises(RuntimeError):
        imageio_ffmpeg.count_frames_and_secs(str(left[0]))
    other = tmp_path / "other.gif"
    assert main([str(folder), "--once", "--out", str(other)]) == 0
    assert not any(p.exists() for p in left), "the next run into the folder removed what the killed one left"
    assert not out.exists() and readable_frames(other) == N
    no_partials(tmp_path)


def test_a_live_runs_partial_is_never_removed(folder, tmp_path):
    """The clean-up at start only takes what a dead run left: a partial of a run that is alive (held
    with SIGSTOP) stays, and that run still finishes."""
    out = tmp_path / "week.mp4"
    config = slow_config(tmp_path)
    first = once(folder, "--config", str(config), "--out", str(out))
    try:
        wait_for(lambda: staged(out) or first.poll() is not None, "the first run's partial file", 300)
        assert first.poll() is None, first.stderr.read()
        os.kill(first.pid, signal.SIGSTOP)
        theirs = staged(out)
        other = tmp_path / "other" / "x.gif"
        assert main([str(folder), "--once", "--out", str(out.with_name("week.gif"))]) == 0
        assert main([str(folder), "--once", "--out", str(other)]) == 0
        assert all(p.exists() for p in theirs)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    first.wait(timeout=300)
    assert first.returncode == 0, first.stderr.read()
    assert readable_frames(out) == MP4_FRAMES
    no_partials(tmp_path)


def test_a_second_run_with_nothing_changed_leaves_the_file_alone(folder, tmp_path):
    """A cron job's --once after the hand run (another process, same folder, same --out): it finds
    the file already holds this render and writes nothing (same inode, time and bytes), and says so.
    One more photo, and the next run renders again."""
    out = tmp_path / "week.mp4"
    assert main([str(folder), "--once", "--out", str(out)]) == 0
    before = (out.stat().st_ino, out.stat().st_mtime_ns, out.read_bytes())
    second = subprocess.run([sys.executable, "-m", "alignimation_tui", str(folder), "--once", "--out", str(out)],
                            cwd=Path(__file__).resolve().parents[2], env=os.environ.copy(), capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "is up to date" in second.stderr + second.stdout and "wrote" not in second.stderr + second.stdout
    assert (out.stat().st_ino, out.stat().st_mtime_ns, out.read_bytes()) == before
    Image.open(sorted(folder.glob("*.jpg"))[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "new.jpg")
    assert main([str(folder), "--once", "--out", str(out)]) == 0
    assert out.stat().st_ino != before[0] and readable_frames(out) == N + 1
    no_partials(tmp_path)
