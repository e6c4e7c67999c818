"""Real disk faults (issue #33, point 11): a full disk and a read-only file system under the output,
the cache and the decisions, met by the real program in a real child process.

Each test runs the program in a private mount namespace (``unshare -m``) where a small tmpfs is the
folder under test: filled to its last byte it gives the kernel's own ENOSPC; remounted read-only,
its own EROFS; nothing is patched. The tmpfs goes away with the namespace, so the script copies
what the folder holds afterwards out to a real folder, and the checks are made on that copy:
one line naming the problem and the folder, a non-zero exit, last week's files untouched and no
partial file left, the decisions as they were. Skipped only where this machine does not allow a
mount namespace and tmpfs mounts (checked at run time; CI runs as root on a machine like this)."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from alignimation_tui.cli import main
from alignimation_tui.decisions import Decisions
from alignimation_tui.domain import Verdict
from alignimation_tui.scan import content_hash
from alignimation_tui.store import Store, folder_key
from tests.conftest import save_with_date, similarity, warped_astronaut

REPO = Path(__file__).resolve().parents[2]
N = 6
TOOL = "alignimation-tui"
FILLER = ".filler"  # what fills the disk to its last byte; not part of what the program left


@pytest.fixture(scope="module", autouse=True)
def mounts_allowed(tmp_path_factory) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) here: real disk faults need a private mount namespace")
    where = tmp_path_factory.mktemp("probe")
    where = shlex.quote(str(where))
    probe = subprocess.run(["unshare", "-m", "sh", "-ec", f"mount -t tmpfs -o size=64k tmpfs {where}; "
                            f"mount -o remount,ro {where}"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("unshare -m / mount -t tmpfs not permitted on this machine (real disk faults need them): "
                    + (probe.stderr.strip() or f"exit status {probe.returncode}"))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("disk") / "photos"
    root.mkdir()
    for i in range(N):
        m = similarity(4 * (i % 3) - 4, 1.0 + 0.03 * (i % 2), 64 + 5 * i, 60 - 3 * i)
        save_with_date(warped_astronaut(m), root / f"day{i:02d}.jpg", datetime(2024, 1, 1) + timedelta(days=i))
    return root


@pytest.fixture
def folder(template, tmp_path) -> Path:
    dest = tmp_path / "photos"
    shutil.copytree(template, dest)
    return dest


@pytest.fixture
def decided(folder, tmp_path) -> bytes:
    """A first run (the cache warm) and one verdict stored: the decisions file's bytes."""
    assert main([str(folder), "--once", "--out", str(tmp_path / "first" / "week.mp4")]) == 0
    store = Store(folder)
    try:
        store.decisions.set_verdict(content_hash(folder / "day01.jpg"), Verdict.REJECTED)
        return store.decisions.path.read_bytes()
    finally:
        store.close()


@dataclass
class Outcome:
    rc: int
    out: str
    err: str
    left: dict[str, bytes]  # what the small disk holds afterwards: relative path -> bytes

    @property
    def line(self) -> str:
        """The one line on stderr that says what went wrong (after checking there is no traceback)."""
        assert "Traceback" not in self.err, self.err
        lines = [ln for ln in self.err.splitlines() if ln.strip()]
        assert lines, f"nothing on stderr (exit status {self.rc})"
        return lines[-1]


def on_a_small_disk(tmp_path: Path, mount: Path, command: list[str], *, holding: Path | None = None,
                    full: bool = False, read_only: bool = False, size: str = "1m", env: dict | None = None) -> Outcome:
    """``command`` run with a fresh tmpfs of ``size`` on ``mount`` (a copy of ``holding``'s files on
    it), filled to its last byte (``full``) or remounted read-only (``read_only``)."""
    run = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
    left = run / "left"
    left.mkdir(parents=True)
    mount.mkdir(parents=True, exist_ok=True)
    q = lambda p: shlex.quote(str(p))  # noqa: E731
    script = [f"mount -t tmpfs -o size={size} tmpfs {q(mount)}"]
    if holding is not None:
        script.append(f"cp -a {q(holding)}/. {q(mount)}/")
    if full:
        script.append(f"dd if=/dev/zero of={q(mount / FILLER)} bs=4k 2>/dev/null || true")
        script.append(f"test \"$(df -k --output=avail {q(mount)} | tail -1 | tr -d ' ')\" = 0")
    if read_only:
        script.append(f"mount -o remount,ro {q(mount)}")
    script.append(f"{' '.join(map(q, command))} >{q(run / 'out')} 2>{q(run / 'err')} && echo 0 >{q(run / 'rc')} "
                  f"|| echo $? >{q(run / 'rc')}")
    script.append(f"cp -a {q(mount)}/. {q(left)}/")
    child = subprocess.run(["unshare", "-m", "sh", "-ec", "\n".join(script)], cwd=REPO, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=600)
    assert child.returncode == 0, f"setting up the disk failed: {child.stderr}"
    files = {str(p.relative_to(left)): p.read_bytes() for p in sorted(left.rglob("*")) if p.is_file()}
    files.pop(FILLER, None)
    return Outcome(int((run / "rc").read_text()), (run / "out").read_text(), (run / "err").read_text(), files)


def once(folder: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "alignimation_tui", str(folder), "--once", *args]


def files_in(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def decisions_file(folder: Path) -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / TOOL / "folders" / folder_key(folder) / "decisions.json"


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / f"config-{abs(hash(text))}.toml"
    path.write_text(text)
    return str(path)


# the output ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_a_full_output_disk_keeps_last_weeks_file(folder, decided, tmp_path, suffix):
    last_week = tmp_path / "last-week"
    assert main([str(folder), "--once", "--out", str(last_week / f"week{suffix}")]) == 0
    before = files_in(last_week)
    # room for last week's files and 64 KiB more; this week's render is longer and does not fit
    size = f"{sum(map(len, before.values())) // 1024 + 64}k"
    disk = tmp_path / "disk"
    out = disk / f"week{suffix}"
    longer = config(tmp_path, "[render]\ncrossfade = 12\nhold_last = 2.0\n")
    seen = on_a_small_disk(tmp_path, disk, once(folder, "--config", longer, "--out", str(out)),
                           holding=last_week, size=size)
    assert seen.rc == 1, f"exit status {seen.rc}, not the render's failure: {seen.err}"
    assert seen.line.startswith(f"{TOOL}: cannot render: cannot write {out}: ")
    assert seen.line.startswith(f"{TOOL}: cannot render: cannot write {out}: no space left on device"), seen.line
    assert seen.line.endswith(f"the previous week{suffix} is untouched"), seen.line
    assert seen.left == before, f"the disk holds {sorted(seen.left)}: a partial file left, or last week's changed"
    assert decisions_file(folder).read_bytes() == decided


def test_a_read_only_output_folder(folder, decided, tmp_path):
    last_week = tmp_path / "last-week"
    assert main([str(folder), "--once", "--out", str(last_week / "week.mp4")]) == 0
    before = files_in(last_week)
    disk = tmp_path / "disk"
    other = config(tmp_path, "[render]\nquality = 28\n")  # else the file is up to date and nothing is written
    seen = on_a_small_disk(tmp_path, disk, once(folder, "--config", other, "--out", str(disk / "week.mp4")),
                           holding=last_week, read_only=True)
    assert seen.rc == 2, seen.err
    assert seen.line == (f"{TOOL}: error: cannot write the animation into {disk}: read-only file system; "
                         "make it writable, or choose another folder with render.output (or --out)")
    assert seen.left == before

    frames = disk / "frames"
    seen = on_a_small_disk(tmp_path, disk, once(folder, "--out", str(tmp_path / "o.mp4"), "--frames", str(frames)),
                           read_only=True)
    assert seen.rc == 2, seen.err
    assert seen.line == (f"{TOOL}: error: cannot write the aligned frames into {frames}: read-only file system; "
                         "make it writable, or choose another folder with --frames")
    assert seen.left == {}
    assert decisions_file(folder).read_bytes() == decided


# the cache -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("warm", [False, True], ids=["new-cache", "warm-cache"])
@pytest.mark.parametrize("fault,reason,advice", [
    ("full", "no space left on device", "free some space there"),
    ("read-only", "read-only file system", "make it writable"),
])
def test_a_cache_disk_that_cannot_be_written(folder, decided, tmp_path, warm, fault, reason, advice):
    cache_home = Path(os.environ["XDG_CACHE_HOME"])  # warm: what the first run stored
    disk = tmp_path / "cache-disk"
    out = tmp_path / "out" / "week.mp4"
    seen = on_a_small_disk(tmp_path, disk, once(folder, "--out", str(out)), holding=cache_home if warm else None,
                           full=fault == "full", read_only=fault == "read-only", env={"XDG_CACHE_HOME": str(disk)})
    assert seen.rc == 2, seen.err
    assert seen.line.startswith(f"{TOOL}: error: cannot "), seen.line
    assert f"{disk}/{TOOL}/folders/{folder_key(folder)}: {reason}; " in seen.line, seen.line
    assert seen.line.endswith(f"{advice}, or choose another folder with store.cache_dir"), seen.line
    assert not out.parent.exists() or not any(out.parent.iterdir())
    assert decisions_file(folder).read_bytes() == decided


# the decisions ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_once_reads_the_decisions_on_a_full_or_read_only_disk(folder, decided, tmp_path, fault):
    """--once only reads the decisions: a data folder that cannot be written is no error, and the
    verdict in it is used (the rejected photo is left out)."""
    data_home = Path(os.environ["XDG_DATA_HOME"])
    disk = tmp_path / "data-disk"
    out = tmp_path / "out" / "week.mp4"
    seen = on_a_small_disk(tmp_path, disk, once(folder, "--out", str(out)), holding=data_home,
                           full=fault == "full", read_only=fault == "read-only", env={"XDG_DATA_HOME": str(disk)})
    assert seen.rc == 0, seen.err
    sidecar = json.loads(out.with_name("week.mp4.json").read_text())
    assert len(sidecar["frames"]) == N - 1 and "day01.jpg" not in json.dumps(sidecar)
    key = f"{TOOL}/folders/{folder_key(folder)}/decisions.json"
    assert seen.left[key] == decided


APP_CHILD = """
import asyncio, json, sys
from pathlib import Path
from alignimation_tui.config import Config
from alignimation_tui.tui.app import AlignimationApp
from tests.tui.test_app import settled, until

async def run(folder, n):
    app = AlignimationApp(Path(folder), Config(), watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == n, "every photo processed")
        h = app._selected_hash()
        await pilot.press("x")  # reject the photo under the cursor
        await pilot.pause()
        report = {"name": app.rows[h].name, "verdict": app.rows[h].verdict, "running": app.is_running,
                  "said": [n.message for n in app._notifications if n.severity == "error"]}
        await pilot.press("q")
    print(json.dumps(report))

asyncio.run(run(sys.argv[1], int(sys.argv[2])))
"""


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_verdict_on_a_full_or_read_only_disk(folder, decided, tmp_path, fault):
    """The app, in a child process, on a data folder that cannot be written: the verdict is said not
    to be saved in one line naming the problem and store.data_dir, is not shown as decided, the app
    goes on, and the decisions file is as it was (no temporary file left beside it)."""
    data_home = Path(os.environ["XDG_DATA_HOME"])
    disk = tmp_path / "data-disk"
    seen = on_a_small_disk(tmp_path, disk, [sys.executable, "-c", APP_CHILD, str(folder), str(N)], holding=data_home,
                           full=fault == "full", read_only=fault == "read-only", env={"XDG_DATA_HOME": str(disk)})
    assert seen.rc == 0, seen.err
    report = json.loads(seen.out.splitlines()[-1])
    assert report["name"] != "day01.jpg" and report["verdict"] == "auto", report  # not saved, so not shown
    assert report["running"]
    problem = "no space left on device" if fault == "full" else "read-only file system"
    said = [m for m in report["said"] if "store.data_dir" in m]
    assert len(said) == 1 and "\n" not in said[0] and problem in said[0], report["said"]
    folder_decisions = f"{TOOL}/folders/{folder_key(folder)}"
    assert seen.left[f"{folder_decisions}/decisions.json"] == decided
    assert sorted(seen.left) == sorted(f"{folder_decisions}/{name}" for name in ("decisions.json",
                                                                                  "decisions.json.lock"))
    assert Decisions(decisions_file(folder)).verdict(content_hash(folder / "day01.jpg")) is Verdict.REJECTED
