"""Staged outputs: names no other run takes, what a dead run left is removed and a live run's
partial never, ffmpeg dies with its parent, and ``stop_all`` ends a render in flight."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from alignimation_tui.render import RenderError, RenderSettings, staging, write_animation
from tests.unit.test_render import CANVAS, WARPS, make_items


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def test_staged_names_are_unique_and_say_whose(tmp_path):
    final = tmp_path / "week.mp4"
    a, b = staging.Staged.file(final), staging.Staged.file(final)
    try:
        assert a.path != b.path and a.path.suffix == ".mp4"
        assert a.path.name.startswith(f".week.mp4.partial-{os.getpid()}-")
    finally:
        a.discard()
        b.discard()
    assert not list(tmp_path.iterdir())


def test_only_what_a_dead_run_left_is_removed(tmp_path):
    dead = tmp_path / f".week.mp4.partial-{dead_pid()}-abcd1234.mp4"
    dead.write_bytes(b"half")
    dead_dir = tmp_path / f".partial-{dead_pid()}-abcd"
    dead_dir.mkdir()
    (dead_dir / "00001_x.jpg").write_bytes(b"half")
    # a live process holding its partial (another run): never touched, however old
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; from pathlib import Path; from alignimation_tui.render.staging import Staged; "
        "s = Staged.file(Path(sys.argv[1])); print(s.path, flush=True); sys.stdin.read()"), str(tmp_path / "w.gif")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    live = Path(holder.stdout.readline().strip())
    os.utime(live, (time.time() - 3600, time.time() - 3600))
    # a reused pid (alive, but not ours and nobody holds the file), an hour old: abandoned
    reused = tmp_path / f".old.gif.partial-{os.getppid()}-ffff0000.gif"
    reused.write_bytes(b"half")
    os.utime(reused, (time.time() - 3600, time.time() - 3600))
    fresh = tmp_path / f".new.gif.partial-{os.getppid()}-eeee0000.gif"  # just created: its writer may lock it yet
    fresh.write_bytes(b"")
    others = [tmp_path / "week.mp4", tmp_path / ".hidden.partial", tmp_path / ".week.mp4.partial.mp4"]
    for p in others:
        p.write_bytes(b"not staged by us")
    try:
        removed = staging.remove_abandoned(tmp_path)
        assert sorted(removed) == sorted([dead, dead_dir, reused])
        assert live.exists() and fresh.exists() and all(p.exists() for p in others)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    staging.remove_abandoned(tmp_path)
    assert not live.exists(), "its writer is gone now"


SPAWNER = """
import subprocess, sys
from alignimation_tui.render.staging import die_with_parent
child = subprocess.Popen(["sleep", "300"], preexec_fn=die_with_parent(), start_new_session=True)
print(child.pid, flush=True)
sys.stdin.read()
"""


def test_an_encoder_dies_with_its_parent_even_on_kill_9():
    parent = subprocess.Popen([sys.executable, "-c", SPAWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait(timeout=30)
    deadline = time.monotonic() + 30
    while True:
        try:
            with open(f"/proc/{child}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break  # ended (a zombie until init reaps it)
        except FileNotFoundError:
            break
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.02)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_stop_all_ends_a_render_in_flight(tmp_path, suffix):
    """What the app calls when it must go now (SIGTERM) while another thread renders."""
    items = make_items(tmp_path, WARPS * 4)
    out = tmp_path / f"slow{suffix}"
    started, outcome = threading.Event(), []

    def progress(n: int) -> None:
        started.set()

    def render() -> None:
        try:
            write_animation(items, CANVAS, out, RenderSettings(crossfade=30), progress=progress)
            outcome.append("finished")
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=render)
    thread.start()
    assert started.wait(120)
    staging.stop_all()
    assert not list(tmp_path.glob(f".slow{suffix}.partial*")), "removed at once"
    thread.join(timeout=120)
    assert not thread.is_alive()
    # the render ends with its own error saying it was stopped, not any exception at all
    assert outcome and isinstance(outcome[0], RenderError), outcome
    assert "stopped" in str(outcome[0]) and "no file was left behind" in str(outcome[0]), outcome
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
