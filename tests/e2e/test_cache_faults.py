"""A cache that cannot be written while a long run goes on (its disk full, its folder removed):
said once, naming the folder and store.cache_dir; the work goes on without it and it is used
again once writes succeed. The disk filling up is real: a file-size limit in a child process
(writes past it fail with EFBIG, as on a full disk), lifted later as when room is freed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from alignimation_tui.cli import main
from alignimation_tui.config import Config
from alignimation_tui.domain import FrameStatus
from alignimation_tui.pipeline import Pipeline
from tests.e2e.test_crash import N, folder, template  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import json, resource, signal, sys
from pathlib import Path
from alignimation_tui.config import Config
from alignimation_tui.domain import FrameStatus
from alignimation_tui.pipeline import Pipeline

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
folder = Path(sys.argv[1])
p = Pipeline(folder, Config())
p.store.keep_going_on_write_faults(retry_seconds=0)
results = p.scan()
half = len(results) // 2
p.process(results[:half])
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # the disk is full
p.process(results[half:-1])
during = {"aligned": sum(r.status is FrameStatus.ALIGNED for r in p.results.values()), "notices": list(p.notices)}
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
p.process(results[-1:])
print(json.dumps({"during": during, "after": list(p.notices),
                  "aligned": sum(r.status is FrameStatus.ALIGNED for r in p.results.values())}))
p.close()
"""


def test_a_full_cache_disk_while_running_is_said_once_and_work_goes_on(folder, tmp_path):
    child = subprocess.run([sys.executable, "-c", CHILD, str(folder)], cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.splitlines()[-1])
    during = report["during"]
    assert during["aligned"] == N - 1, "detection and registration went on without the cache"
    faults = [n for n in during["notices"] if "store.cache_dir" in n]
    assert len(faults) == 1, during["notices"]  # once, however many writes failed
    assert "cache" in faults[0] and "going on without the cache" in faults[0].lower()
    assert report["aligned"] == N
    assert any("can be written again" in n for n in report["after"]), report["after"]
    # what was done while the disk was full is simply redone next time; nothing else was lost
    assert main([str(folder), "--once", "--out", str(tmp_path / "o.gif")]) == 0


def test_a_removed_cache_folder_is_started_again(folder, tmp_path):
    p = Pipeline(folder, Config())
    p.store.keep_going_on_write_faults(retry_seconds=0)
    try:
        results = p.scan()
        p.process(results[:3])
        shutil.rmtree(p.store.cache_dir)  # removed under the running app (a cleaner, a person)
        p.process(results[3:])
        assert all(r.status is FrameStatus.ALIGNED for r in p.results.values())
        assert (p.store.cache_dir / "cache.db").exists(), "a new cache was started"
        assert not p.store.degraded
    finally:
        p.close()
    again = Pipeline(folder, Config())
    try:
        again.scan()
        assert sum(r.detection is not None for r in again.results.values()) >= N - 3, "kept in the new cache"
    finally:
        again.close()

