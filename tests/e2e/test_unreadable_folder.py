"""A photo folder made unreadable (``chmod 000``) by a user who is not root (issue #33, point 2).

Root reads through chmod, and these tests run as root: so the checks run in a child process that
is someone else, uid and gid 65534 (``setpriv``), on a real chmod 000 folder, and the kernel says
no for real. Where the interpreter lives under a folder others cannot enter (``/root/.pyenv``),
the child gets a private mount namespace in which that folder can be entered and holds only the
way to the interpreter. Skipped, saying why, where this machine allows none of it."""
from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import save_with_date, similarity, warped_astronaut

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
TOOL = "alignimation-tui"


def _way_in() -> list[str]:
    """Shell lines that let others reach the interpreter: for the one folder on its way that others
    cannot enter (e.g. /root), a tmpfs they can enter there, holding only the next folder down."""
    python = Path(os.path.realpath(sys.executable))
    shut = [p for p in reversed(python.parents) if not os.stat(p).st_mode & 0o001]
    if not shut:
        return []
    if len(shut) > 1:
        pytest.skip(f"the interpreter {python} lies under several folders others cannot enter: {shut}")
    door = shut[0]
    inner = door / python.relative_to(door).parts[0]
    q = lambda p: shlex.quote(str(p))  # noqa: E731
    return ["keep=$(mktemp -d)", f"mount --bind {q(door)} \"$keep\"",
            f"mount -t tmpfs -o mode=755,size=1m tmpfs {q(door)}", f"mkdir {q(inner)}",
            f"mount --bind \"$keep\"/{q(inner.name)} {q(inner)}"]


def nobody_argv(home: Path, command: list[str]) -> list[str]:
    """``command`` to be run as uid/gid 65534 with ``home`` as its home (cache, data, config, TORCH_HOME)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "PYTHONPATH": str(REPO),
           "XDG_CACHE_HOME": str(home / "cache"), "XDG_DATA_HOME": str(home / "data"),
           "XDG_CONFIG_HOME": str(home / "config"), "TORCH_HOME": str(home / "torch")}
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "env", "-i",
            *(f"{k}={v}" for k, v in env.items()), *command]
    way = _way_in()
    if way:
        script = "\n".join([*way, f"cd {shlex.quote(str(REPO))}", "exec " + " ".join(map(shlex.quote, drop))])
        return ["unshare", "-m", "sh", "-ec", script]
    return drop


def as_nobody(home: Path, command: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(nobody_argv(home, command), cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """A folder the child can reach (pytest's own are root's alone), its home owned by the child."""
    if os.geteuid() != 0:
        pytest.skip("not root: the tests need to become another user (as root they do, as CI runs them)")
    for tool in ("setpriv", "unshare"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool}(1) here: the test needs it to run the check as another user")
    root = Path(tempfile.mkdtemp(prefix="unreadable-", dir="/tmp"))
    root.chmod(0o755)
    home = root / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    probe = as_nobody(home, [sys.executable, "-c", "import os, alignimation_tui.watch; print(os.getuid())"])
    if probe.returncode != 0 or probe.stdout.strip() != str(NOBODY):
        shutil.rmtree(root)
        pytest.skip(f"cannot run the package as uid {NOBODY} here (the repository, the venv or the interpreter "
                    f"is not readable by others, or unshare/mount are not permitted): {probe.stderr.strip()[-300:]}")
    yield root
    for path in root.rglob("*"):  # a folder left at 000 by a failed test
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(root)


@pytest.fixture
def photos(place, request) -> Path:
    """Three photos of the astronaut in a folder of the child's own (it may chmod it)."""
    folder = place / request.node.name.replace("[", "-").replace("]", "") / "photos"
    folder.mkdir(parents=True)
    for i in range(3):
        m = similarity(4 * i - 4, 1.0, 64 + 5 * i, 60 - 3 * i)
        save_with_date(warped_astronaut(m), folder / f"day{i:02d}.jpg", datetime(2024, 1, 1) + timedelta(days=i))
    for path in (folder.parent, folder, *folder.iterdir()):
        os.chown(path, NOBODY, NOBODY)
    return folder


WATCH_CHILD = """
import json, os, sys
from pathlib import Path
from alignimation_tui.watch import FolderWatcher, folder_problem

folder = Path(sys.argv[1])
heard = []
watcher = FolderWatcher(folder, on_ready=lambda p: None, on_deleted=lambda p: None, on_folder=heard.append)
report = {"uid": os.getuid()}
watcher.check_folder()
report["readable"] = list(heard)
os.chmod(folder, 0)  # chmod 000, as its owner
report["problem"] = folder_problem(folder)
for _ in range(3):
    watcher.check_folder()
report["unreadable"] = list(heard)
os.chmod(folder, 0o755)
watcher.check_folder()
report["readable_again"] = list(heard)
print(json.dumps(report))
"""


def test_an_unreadable_folder_is_said_once_with_its_reason(photos, place):
    child = as_nobody(place / "home", [sys.executable, "-c", WATCH_CHILD, str(photos)])
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.splitlines()[-1])
    assert report["uid"] == NOBODY
    assert report["readable"] == []  # usable from the start: nothing said
    assert report["problem"] == "permission denied"
    assert report["unreadable"] == ["permission denied"], "said once, with the true reason"
    assert report["readable_again"] == ["permission denied", None]


def test_once_on_an_unreadable_folder_says_permission_denied_once(photos, place):
    photos.chmod(0)
    out = place / "home" / "week.mp4"
    child = as_nobody(place / "home", [sys.executable, "-m", "alignimation_tui", str(photos), "--once",
                                       "--out", str(out)])
    photos.chmod(0o755)
    assert "Traceback" not in child.stderr, child.stderr[-2000:]
    lines = [ln for ln in child.stderr.splitlines() if ln.strip()]
    assert child.returncode == 2, child.stderr
    said = [ln for ln in lines if "permission denied" in ln.lower()]
    assert len(said) == 1 and str(photos) in said[0] and said[0].startswith(f"{TOOL}: "), lines
    assert not out.exists()


APP_CHILD = """
import asyncio, json, os, sys, time
from dataclasses import replace
from pathlib import Path
from alignimation_tui.config import Config, RenderConfig, WatchConfig
from tests.tui.test_app import astronaut_photo, make_app, settled, until

def photos(where):
    folder = where / "photos"
    folder.mkdir(parents=True)
    for i in range(3):
        astronaut_photo(folder / f"week{i:02d}.jpg", i)
    return folder

async def run(root, watch):
    folder = photos(root / ("watched" if watch else "unwatched"))
    astronaut_photo(folder.parent / "late.jpg", 5)  # root copies it in while the folder is unreadable
    config = replace(Config(), watch=WatchConfig(settle_seconds=0.2),
                     render=RenderConfig(output=str(folder.parent / "out" / "t.mp4")))
    app = make_app(folder, config, watch=watch)
    said = lambda: [n.message for n in app._notifications]
    report = {}
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == 3, "the first pass")
        os.chmod(folder, 0)  # chmod 000
        if watch:
            await until(pilot, lambda: any("cannot be used" in m for m in said()), "the folder noticed", timeout=60)
        await pilot.press("w")
        await until(pilot, lambda: app.render_note.startswith(("wrote", "render failed", "up to date")), "the render")
        report["render_note"] = app.render_note
        if watch:  # root copies a photo in (this user cannot), and the watcher hears of it but cannot look
            sys.__stdout__.write("unreadable\\n")  # (the app holds sys.stdout while it runs)
            sys.__stdout__.flush()
            await asyncio.to_thread(sys.stdin.readline)  # copied
            for _ in range(2):  # the watcher looks at the folder again (twice: the first look is over), still
                checked = time.monotonic()  # unreadable: nothing more is said
                await until(pilot, lambda: app.watcher._checked > checked, "the watcher's next look", timeout=60)
        os.chmod(folder, 0o755)
        if watch:
            await until(pilot, lambda: any("can be read again" in m for m in said()), "readable again", timeout=60)
            await until(pilot, lambda: settled(app) and any(r.name == "late.jpg" and r.status == "aligned"
                                                            for r in app.rows.values()), "the photo that came meanwhile",
                        timeout=60)
        report["said"] = said()
        report["rows"] = sorted(r.name for r in app.rows.values())
        await pilot.press("q")
    return report

root = Path(sys.argv[1])
print(json.dumps({"watched": asyncio.run(run(root, True)), "unwatched": asyncio.run(run(root, False))}))
"""


def test_the_app_on_a_folder_made_unreadable(place, request):
    """The app (recorded detections, see ``tests.tui.recorded``), run by the child: the folder made
    unreadable is said once with its reason; `w` then fails in one line that says why and how many
    photos; a photo root copies in meanwhile (the watcher hears of it but cannot look at it) appears
    once the folder is readable again. Without the watcher (the render finds out itself), the
    render's line names the reason too, not "the file is gone"."""
    root = place / request.node.name
    root.mkdir()
    os.chown(root, NOBODY, NOBODY)
    folder = root / "watched" / "photos"
    with subprocess.Popen(nobody_argv(place / "home", [sys.executable, "-c", APP_CHILD, str(root)]), cwd=REPO,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        ready, _, _ = select.select([child.stdout], [], [], 300)
        said = child.stdout.readline() if ready else ""  # the child made the folder unreadable and saw it said
        if said.strip() == "unreadable":
            shutil.copyfile(root / "watched" / "late.jpg", folder / "late.jpg")  # as root, through the chmod
            child.stdin.write("copied\n")
            child.stdin.flush()
        out, err = child.communicate(timeout=600)
    assert child.returncode == 0 and said.strip() == "unreadable", (said, err[-3000:])
    report = json.loads(out.splitlines()[-1])

    watched = report["watched"]
    noticed = [m for m in watched["said"] if "cannot be used" in m and not m.startswith("render: ")]
    assert noticed == [f"the folder {folder} cannot be used (permission denied): waiting for it; nothing is lost, "
                       "your decisions are kept"], watched["said"]
    assert watched["render_note"] == "render failed"
    failed = [m for m in watched["said"] if m.startswith("render: ")]
    assert failed == [f"render: the folder {folder} cannot be used (permission denied): its 3 photos cannot be read"]
    assert sum("can be read again" in m for m in watched["said"]) == 1
    assert watched["rows"] == ["late.jpg", "week00.jpg", "week01.jpg", "week02.jpg"]

    unwatched = report["unwatched"]
    assert unwatched["render_note"] == "render failed"
    failed = [m for m in unwatched["said"] if m.startswith("render: ")]
    assert len(failed) == 1 and "\n" not in failed[0], unwatched["said"]
    assert "permission denied" in failed[0] and "gone" not in failed[0], failed[0]
    assert "3 photos" in failed[0], failed[0]
