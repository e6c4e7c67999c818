"""kill -9 in the middle of work, and a damaged cache: verdicts survive, cached work is reused,
and the next start says what happened instead of failing."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from alignimation_tui.cli import main
from alignimation_tui.config import Config
from alignimation_tui.domain import Verdict
from alignimation_tui.scan import content_hash
from alignimation_tui.store import Store
from alignimation_tui.tui.app import AlignimationApp
from tests.conftest import save_with_date, similarity, warped_astronaut
from tests.tui.test_app import settled, until

REPO = Path(__file__).resolve().parents[2]
N = 12


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crash") / "photos"
    root.mkdir()
    rng = np.random.default_rng(7)
    for i in range(N):
        m = similarity(rng.uniform(-12, 12), rng.uniform(0.85, 1.15), 64 + rng.uniform(-25, 25), 60 + rng.uniform(-25, 25))
        save_with_date(warped_astronaut(m), root / f"day{i:02d}.jpg", datetime(2023, 1, 1) + timedelta(days=i))
    return root


@pytest.fixture
def folder(template, tmp_path) -> Path:
    dest = tmp_path / "photos"
    dest.mkdir()
    for p in template.iterdir():
        (dest / p.name).write_bytes(p.read_bytes())
    return dest


def cached_detections(folder: Path) -> int:
    store = Store(folder)
    db = store.cache_dir / "cache.db"
    store.close()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("SELECT count(*) FROM Cache WHERE key LIKE 'faces:%'").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not there yet
        return 0
    finally:
        con.close()


def signal_when(proc: subprocess.Popen, condition, signum: int = signal.SIGKILL, timeout: float = 300,
                wait: float = 30) -> None:
    """Send ``signum`` once ``condition()`` holds (polled: the condition is on files another process
    writes), then wait for the process to end."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended before the signal: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out before the signal")
        time.sleep(0.02)
    os.kill(proc.pid, signum)
    proc.wait(timeout=wait)


def test_kill_9_during_once_then_run_again(folder, tmp_path, count_detections, capsys):
    config = tmp_path / "small-batches.toml"
    config.write_text("[detect]\nbatch_size = 2\n")
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "alignimation_tui", str(folder), "--once", "--config", str(config),
                             "--out", str(out)], cwd=REPO, env=os.environ.copy(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    signal_when(proc, lambda: cached_detections(folder) >= 4)
    assert proc.returncode == -signal.SIGKILL
    done = cached_detections(folder)
    assert 4 <= done < N, "killed in the middle"

    assert main([str(folder), "--once", "--config", str(config), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert sum(count_detections) == N - done, "what was detected before the kill is not detected again"
    assert "cache was damaged" not in err and "error" not in err.lower()
    assert out.exists()


APP_SCRIPT = """
import asyncio, sys
from pathlib import Path
from alignimation_tui.config import Config
from alignimation_tui.tui.app import AlignimationApp

async def main():
    app = AlignimationApp(Path(sys.argv[1]), Config())
    async with app.run_test(size=(150, 40)) as pilot:
        while not app.rows:  # the table is filled by the scan; detection starts right after
            await pilot.pause(0.02)
        h = next(iter(app.rows))
        app.table.move_cursor(row=app.table.get_row_index(h))
        await pilot.pause()
        await pilot.press("x")
        print("REJECTED", h, flush=True)
        while True:
            await pilot.pause(1)

asyncio.run(main())
"""


async def test_kill_9_during_the_app_keeps_the_verdict(folder, tmp_path, count_detections):
    script = tmp_path / "app.py"
    script.write_text(APP_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(folder)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = ""
    deadline = time.monotonic() + 300
    while not line.startswith("REJECTED"):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the app never filled its table"
        line = proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)  # right after the key press, while detection still runs
    proc.wait(timeout=30)
    rejected = line.split()[1]
    done = cached_detections(folder)  # usually part of the folder; on a fast machine maybe all of it

    app = AlignimationApp(folder, Config())
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == N, "the reopened folder")
        assert app.rows[rejected].verdict == Verdict.REJECTED.value
        assert str(app.table.get_cell(rejected, "verdict")) == "rejected"
        assert not any("damaged" in n for n in app.driver.pipeline.notices)
        await pilot.press("q")
    assert sum(count_detections) == N - done


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_cache_is_moved_aside_and_rebuilt_and_verdicts_survive(damage, folder, tmp_path, capsys):
    for extra in sorted(folder.iterdir())[4:]:  # four photos are enough here
        extra.unlink()
    out = tmp_path / "out.gif"
    assert main([str(folder), "--once", "--out", str(out)]) == 0
    store = Store(folder)
    cache_dir = store.cache_dir
    rejected = content_hash(folder / "day03.jpg")  # rejected through the store, as the app does
    store.decisions.set_verdict(rejected, Verdict.REJECTED)
    store.close()
    db = cache_dir / "cache.db"
    if damage == "garbage":
        db.write_bytes(b"this is not an sqlite database, it was overwritten by something" * 100)
    else:
        with db.open("r+b") as fh:
            fh.truncate(db.stat().st_size // 3)
        for extra in (cache_dir / "cache.db-wal", cache_dir / "cache.db-shm"):
            extra.unlink(missing_ok=True)
    capsys.readouterr()

    assert main([str(folder), "--once", "--json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "cache was damaged" in captured.err
    by_hash = {d["hash"]: d for d in map(json.loads, captured.out.splitlines())}
    assert by_hash[rejected]["verdict"] == "rejected"
    assert sum(d["status"] == "aligned" for d in by_hash.values()) == 4
    aside = [p for p in cache_dir.parent.iterdir() if p.name.startswith(cache_dir.name + ".damaged-")]
    assert len(aside) == 1 and (aside[0] / "cache.db").exists(), "the damaged cache is kept for a look"

    capsys.readouterr()
    assert main([str(folder), "--once", "--out", str(out)]) == 0
    assert "cache was damaged" not in capsys.readouterr().err, "the rebuilt cache is sound"
