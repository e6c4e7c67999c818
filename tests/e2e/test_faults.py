"""Faults at the edges, as a user meets them: a file name that is not UTF-8, a full disk under the
output, a cache or output folder that cannot be written, Ctrl+C / SIGTERM, a cache damaged while
running. Real MTCNN, real ffmpeg, real files; the faults themselves are real where this machine
allows it (a file-size limit in a child process, a file where a folder should be, signals). A real
full disk and a real read-only file system (a tmpfs in a private mount namespace) under the output,
the cache and the decisions are in test_real_disk_faults.py; here ENOSPC and EROFS are injected only
where a real one cannot be had at that point: the GIF's fsync, the sidecar after a complete
animation, a cache that turns read-only under the running app, an unreadable decisions file (root
reads anything)."""
from __future__ import annotations

import base64
import errno
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from alignimation_tui.cli import main
from alignimation_tui.config import Config, RenderConfig
from alignimation_tui.domain import FrameStatus, Verdict
from alignimation_tui.folders import FolderError
from alignimation_tui.pipeline import Pipeline
from alignimation_tui.render import staging, writers
from alignimation_tui.scan import content_hash
from alignimation_tui.store import Store
from alignimation_tui.tui.app import AlignimationApp
from alignimation_tui.tui.driver import PhotoReady
from tests.conftest import save_with_date, similarity, warped_astronaut
from tests.e2e.test_crash import cached_detections, signal_when
from tests.tui.test_app import settled, until

REPO = Path(__file__).resolve().parents[2]
ODD = b"caf\xe9_photo.jpg"  # Latin-1: not valid UTF-8
N = 6
INTERRUPTED = re.compile(r"^interrupted: (\d+) of (\d+) photos detected and cached; run again to go on$")


def odd_path(folder: Path) -> Path:
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), ODD)))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """N photos of the astronaut, the first under a name that is not valid UTF-8."""
    root = tmp_path_factory.mktemp("faults") / "photos"
    root.mkdir()
    for i in range(N):
        path = odd_path(root) if i == 0 else root / f"day{i:02d}.jpg"
        m = similarity(4 * (i % 3) - 4, 1.0 + 0.03 * (i % 2), 64 + 5 * i, 60 - 3 * i)
        save_with_date(warped_astronaut(m), path, datetime(2024, 1, 1) + timedelta(days=i))
    return root


@pytest.fixture
def folder(template, tmp_path) -> Path:
    dest = tmp_path / "photos"
    dest.mkdir()
    for name in os.listdir(template):
        (dest / name).write_bytes((template / name).read_bytes())
    return dest


def another_setting(tmp_path: Path) -> Path:
    """A config that differs from the defaults in one render setting: a second render into the
    same file then writes it again (the same render again finds it up to date and writes nothing)."""
    path = tmp_path / "another-setting.toml"
    path.write_text("[render]\nquality = 28\n")
    return path


def one_line(err: str) -> str:
    """The last line on stderr, after checking there is no traceback anywhere."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return lines[-1]


def no_partials(*folders: Path) -> None:
    for folder in folders:
        left = [p.name for p in folder.iterdir() if p.name.startswith(".") and "partial" in p.name]
        assert not left, f"partial files left in {folder}: {left}"


# non-UTF-8 names ------------------------------------------------------------------------------

def test_once_json_with_a_name_that_is_not_utf8(folder, tmp_path, capfdbinary):
    out = tmp_path / "out" / "week.mp4"
    frames = tmp_path / "frames"
    assert main([str(folder), "--once", "--json", "--out", str(out), "--frames", str(frames)]) == 0
    captured = capfdbinary.readouterr()
    assert b"Traceback" not in captured.err
    rows = [json.loads(line.decode("utf-8")) for line in captured.out.splitlines()]  # strict UTF-8, valid JSON
    assert len(rows) == N and all(r["status"] == "aligned" for r in rows), rows
    odd = next(r for r in rows if "path_bytes" in r)
    assert odd["path"].endswith("caf\\xe9_photo.jpg")  # printable text: the byte written as \xe9
    assert base64.b64decode(odd["path_bytes"]) == os.fsencode(odd_path(folder))  # and the exact bytes
    assert sum("path_bytes" in r for r in rows) == 1
    assert b"caf\\xe9_photo.jpg" in captured.err  # the summary names it the same way
    # the sidecars: valid strict JSON, the same convention; the aligned frame keeps the real name
    for sidecar in (out.with_name("week.mp4.json"), frames / "sidecar.json"):
        data = json.loads(sidecar.read_bytes().decode("utf-8"))
        first = data["frames"][0]
        assert base64.b64decode(first["path_bytes"]) == os.fsencode(odd_path(folder))
    assert os.fsencode("00001_") + ODD in os.listdir(os.fsencode(frames))
    no_partials(out.parent, frames)


def test_caption_with_the_odd_name(folder, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[render.caption]\nformat = '{name}'\n")
    out = tmp_path / "cap.gif"
    assert main([str(folder), "--once", "--config", str(config), "--out", str(out)]) == 0
    data = json.loads(out.with_name("cap.gif.json").read_bytes().decode("utf-8"))
    assert data["frames"][0]["caption"] == "caf\\xe9_photo.jpg"


async def test_app_opens_a_folder_with_a_name_that_is_not_utf8(folder, tmp_path):
    config = replace(Config(), render=RenderConfig(output=str(tmp_path / "app.mp4")))
    app = AlignimationApp(folder, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == N, "every photo processed")
        rows = {r.name: r for r in app.rows.values()}
        assert rows["caf\\xe9_photo.jpg"].status == "aligned"
        assert all(r.status == "aligned" for r in rows.values())
        h = next(h for h, r in app.rows.items() if r.name == "caf\\xe9_photo.jpg")
        app.table.move_cursor(row=app.table.get_row_index(h))
        await pilot.pause()
        await pilot.press("x")  # a verdict on it is stored under its content hash, like any other
        await pilot.press("w")
        await until(pilot, lambda: app.render_note.startswith(("wrote", "render failed")), "the render")
        assert app.render_note.startswith("wrote"), app.render_note
        await pilot.press("q")
    store = Store(folder)
    try:
        assert store.decisions.verdict(content_hash(odd_path(folder))) is Verdict.REJECTED
    finally:
        store.close()


# a full disk under the output -------------------------------------------------------------------

FSIZE_CHILD = """
import resource, signal, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
from alignimation_tui.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_render_onto_a_full_disk_keeps_last_weeks_file(folder, tmp_path, capsys, count_detections):
    out = tmp_path / "week.mp4"
    assert main([str(folder), "--once", "--out", str(out)]) == 0  # last week's render (and a warm cache)
    last_week, last_sidecar = out.read_bytes(), out.with_name("week.mp4.json").read_bytes()
    detected = sum(count_detections)
    longer = tmp_path / "longer.toml"  # this week's render is longer: well past the limit
    longer.write_text("[render]\ncrossfade = 12\nhold_last = 2.0\n")
    limit = 200_000  # above what the cache's files need to be read, below this week's MP4
    child = subprocess.run([sys.executable, "-c", FSIZE_CHILD, str(limit), str(folder), "--once", "--config",
                            str(longer), "--out", str(out)], cwd=REPO, env=os.environ.copy(),
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == 1, child.stderr
    line = one_line(child.stderr)
    assert line.startswith(f"alignimation-tui: cannot render: cannot write {out}: ffmpeg was stopped by SIGXFSZ")
    assert line.endswith("the previous week.mp4 is untouched")
    assert out.read_bytes() == last_week and out.with_name("week.mp4.json").read_bytes() == last_sidecar
    no_partials(tmp_path)

    capsys.readouterr()
    assert main([str(folder), "--once", "--config", str(longer), "--out", str(out)]) == 0  # with room again
    assert sum(count_detections) == detected, "nothing was detected again"
    assert out.read_bytes() != last_week and out.stat().st_size > limit


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_no_space_for_the_animation_or_the_sidecar(folder, tmp_path, capsys, monkeypatch, suffix):
    """ENOSPC injected where the kernel reports it: our own GIF writes (the flush), and the sidecar
    written after a complete animation (which must then not replace last week's either)."""
    out = tmp_path / f"week{suffix}"
    assert main([str(folder), "--once", "--out", str(out)]) == 0
    this_week = another_setting(tmp_path)  # else the file is up to date and nothing is written
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    full = OSError(errno.ENOSPC, "No space left on device")

    def no_room(*args, **kwargs):
        raise full

    if suffix == ".gif":
        monkeypatch.setattr(writers.os, "fsync", no_room)
    else:
        monkeypatch.setattr("alignimation_tui.render.animation.stage_json", no_room)
    capsys.readouterr()
    assert main([str(folder), "--once", "--config", str(this_week), "--out", str(out)]) == 1
    line = one_line(capsys.readouterr().err)
    assert line == (f"alignimation-tui: cannot render: cannot write {out}: no space left on device; "
                    f"the previous {out.name} is untouched")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    no_partials(tmp_path)


# folders that cannot be written ----------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: a chmod'd folder stays writable for root "
                    "(test_real_disk_faults.py's read-only tmpfs covers the same path)")
def test_read_only_cache_folder_chmod(folder, tmp_path, capsys):
    cache_home = Path(os.environ["XDG_CACHE_HOME"])
    cache_home.mkdir(parents=True, exist_ok=True)
    cache_home.chmod(0o500)
    try:
        assert main([str(folder), "--once", "--out", str(tmp_path / "o.mp4")]) == 2
    finally:
        cache_home.chmod(0o700)
    line = one_line(capsys.readouterr().err)
    assert str(cache_home) in line and line.endswith("store.cache_dir")


def test_cache_folder_that_is_a_file(folder, tmp_path, capsys):
    """Real, no injection: store.cache_dir names a file."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    config = tmp_path / "c.toml"
    config.write_text(f"[store]\ncache_dir = '{blocker}/cache'\n")
    assert main([str(folder), "--once", "--config", str(config), "--out", str(tmp_path / "o.mp4")]) == 2
    line = one_line(capsys.readouterr().err)
    assert line == (f"alignimation-tui: error: cannot create the cache folder {blocker}/cache: not a directory; "
                    "make it writable, or choose another folder with store.cache_dir")


def test_unreadable_decisions_file_is_a_folder_error_not_a_reset(folder, tmp_path, capsys, monkeypatch):
    """EACCES on the decisions file (injected: root reads anything) stops the run naming
    store.data_dir; the file is not moved aside as if it were damaged."""
    assert main([str(folder), "--once", "--out", str(tmp_path / "o.gif")]) == 0
    store = Store(folder)
    path = store.decisions.path
    store.decisions.set_verdict(content_hash(folder / "day01.jpg"), Verdict.REJECTED)
    store.close()
    saved = path.read_bytes()
    real_read = Path.read_text

    def no_permission(self, *args, **kwargs):
        if self == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", no_permission)
    capsys.readouterr()
    assert main([str(folder), "--once", "--out", str(tmp_path / "o.gif")]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"alignimation-tui: error: cannot read your decisions in {path.parent}: permission denied")
    assert line.endswith("store.data_dir")
    assert path.read_bytes() == saved and not list(path.parent.glob("*.unreadable.json"))


# Ctrl+C and SIGTERM ------------------------------------------------------------------------------

def at_a_terminal() -> None:
    """In the child, before it starts: SIGINT at its default, as a command typed at a terminal has
    it. A suite started in the background (``nohup``, ``cmd &`` in a script) ignores SIGINT and its
    children inherit that; Python then sets no KeyboardInterrupt handler and a Ctrl+C test would
    see the run finish. (alignimation-tui leaves an ignored SIGINT ignored, as programs do: a
    background job is not stopped by Ctrl+C.)"""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def once(folder: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "alignimation_tui", str(folder), "--once", *args], cwd=REPO,
                            env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=at_a_terminal)


def test_ctrl_c_while_detecting(folder, tmp_path, capsys, count_detections):
    config = tmp_path / "small-batches.toml"
    config.write_text("[detect]\nbatch_size = 1\ndecode_workers = 1\n")
    out = tmp_path / "out.mp4"
    proc = once(folder, "--config", str(config), "--out", str(out))
    signal_when(proc, lambda: cached_detections(folder) >= 2, signal.SIGINT, wait=120)
    err = proc.stderr.read()
    assert proc.returncode == 130, err
    m = INTERRUPTED.match(one_line(err))
    assert m, err
    done, total = int(m[1]), int(m[2])
    assert total == N and done == cached_detections(folder), (done, cached_detections(folder))
    assert not out.exists()
    no_partials(tmp_path)
    # Ctrl+C is taken between photos: sent after the second photo was stored, it stops the run well
    # before the last one (a run that finished anyway would hide the resume below)
    assert done < N, f"the run went on to the last photo after Ctrl+C ({done}/{N})"
    capsys.readouterr()
    assert main([str(folder), "--once", "--config", str(config), "--out", str(out)]) == 0
    assert sum(count_detections) == N - done, "what was stored before Ctrl+C is not detected again"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_rendering(folder, tmp_path, signum):
    out = tmp_path / "week.mp4"
    out.write_bytes(b"last week's animation")
    slow = tmp_path / "slow.toml"  # many frames per photo: the render lasts long enough to be stopped
    slow.write_text("[render]\ncrossfade = 24\npreset = \"slow\"\n")  # (veryfast, the default, is over quickly)
    proc = once(folder, "--config", str(slow), "--out", str(out))
    signal_when(proc, lambda: any(tmp_path.glob(".week.mp4.partial-*")), signum, wait=120)
    err = proc.stderr.read()
    assert proc.returncode == 128 + signum, err
    m = INTERRUPTED.match(one_line(err))
    assert m and int(m[1]) == int(m[2]) == N, err  # everything was detected before the render
    assert out.read_bytes() == b"last week's animation"
    assert not out.with_name("week.mp4.json").exists()
    no_partials(tmp_path)


async def test_q_during_a_render_cancels_it(folder, tmp_path):
    out = tmp_path / "out" / "slow.mp4"
    out.parent.mkdir()
    out.write_bytes(b"the previous render")
    config = replace(Config(), render=RenderConfig(output=str(out), crossfade=24, preset="slow"))
    app = AlignimationApp(folder, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == N, "every photo processed")
        await pilot.press("w")
        await until(pilot, lambda: app.render_note.startswith(("rendering", "wrote", "render failed")), "the render")
        assert app.render_note.startswith("rendering"), app.render_note
        await pilot.press("q")
    assert app.driver.render_idle.is_set()
    assert out.read_bytes() == b"the previous render"
    assert not out.with_name("slow.mp4.json").exists()
    no_partials(out.parent)


# a cache damaged while running -----------------------------------------------------------------

def test_cache_damaged_while_running_is_rebuilt(folder, tmp_path):
    for name in sorted(os.listdir(folder))[3:]:
        (folder / name).unlink()
    pipeline = Pipeline(folder, Config())
    try:
        pipeline.scan()
        pipeline.process()
        first = next(iter(pipeline.results))
        pipeline.set_verdict(first, Verdict.REJECTED)
        cache_dir = pipeline.store.cache_dir
        pipeline.store.cache._sql("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file, then
        db = cache_dir / "cache.db"
        with open(db, "r+b") as fh:  # damage it under the open connection
            fh.write(b"garbage!" * (db.stat().st_size // 8))
        pipeline.store.cache._sql("PRAGMA shrink_memory")  # its pages are read from the file again

        pipeline.scan()  # reads the stored stat records: the store notices and starts a new cache
        assert any("cache was damaged" in n for n in pipeline.notices), pipeline.notices
        aside = [p for p in cache_dir.parent.iterdir() if p.name.startswith(cache_dir.name + ".damaged-")]
        assert len(aside) == 1
        pipeline.process()  # detections are redone into the new cache
        assert all(r.status is FrameStatus.ALIGNED or r.verdict is Verdict.REJECTED
                   for r in pipeline.results.values())
        assert pipeline.results[first].verdict is Verdict.REJECTED
    finally:
        pipeline.close()
    store = Store(folder)
    try:
        assert store.decisions.verdict(first) is Verdict.REJECTED
        assert store.get_json(f"stat:{os.path.realpath(folder / sorted(os.listdir(folder))[0])}") is not None
    finally:
        store.close()


# the app: faults are notifications ---------------------------------------------------------------

def test_app_does_not_start_on_an_unusable_cache_folder(folder, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    config = replace(Config(), store=replace(Config().store, cache_dir=str(blocker / "cache")))
    with pytest.raises(FolderError, match="store.cache_dir"):
        AlignimationApp(folder, config, watch=False)


async def test_app_keeps_running_through_folder_faults(folder, tmp_path, monkeypatch, template):
    out = tmp_path / "out" / "app.mp4"
    app = AlignimationApp(folder, replace(Config(), render=RenderConfig(output=str(out))), watch=False)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    def errors() -> list[str]:  # a cache fault is a warning: the app goes on without the cache
        return [n.message for n in app._notifications if n.severity in ("error", "warning")]

    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == N, "every photo processed")
        with monkeypatch.context() as m:  # the cache turns read-only while the app runs
            m.setattr(app.driver.pipeline.store.cache, "set", read_only)
            new = folder / "late.jpg"
            new.write_bytes((template / "day03.jpg").read_bytes()[:-2] + b"\xff\xd9")  # other bytes, same face
            app.driver.submit(PhotoReady(new))
            await until(pilot, lambda: any("store.cache_dir" in e for e in errors()), "the cache notification")
        with monkeypatch.context() as m:  # the output folder is read-only: the render fails, nothing crashes
            m.setattr(staging.Staged, "file", classmethod(read_only))
            await pilot.press("w")
            await until(pilot, lambda: app.render_note.startswith(("wrote", "render failed")), "the render")
            assert app.render_note == "render failed"
            assert any("render.output" in e for e in errors()), errors()
        assert app.is_running
        await pilot.press("w")  # with the fault gone, the same app renders
        await until(pilot, lambda: app.render_note.startswith("wrote"), "the second render")
        await pilot.press("q")
    assert out.exists()
