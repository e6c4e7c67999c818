"""A cache that cannot be written while the app runs (a full disk, a read-only folder, a removed
one) is a notification naming the folder and ``store.cache_dir``; the worker goes on without the
cache (every photo that arrives meanwhile is detected and aligned, none is left `detecting` or
`queued`) and uses the cache again once writes succeed. On recorded detections
(``tests.tui.recorded``), a real watched folder and the real store. The full disk and the read-only
folder are an injected error from the cache's writes (filling a disk, or a read-only mount, cannot
be done here, and root writes through chmod); the removed folder is removed for real."""
from __future__ import annotations

import errno
import os
import shutil
import time

import diskcache
import pytest

from alignimation_tui.tui import app as app_module
from tests.tui import recorded
from tests.tui.test_app import astronaut_photo, config, folder, make_app, settled, template, until  # noqa: F401

DROPS = 20


@pytest.mark.parametrize("fault", ["full", "read-only", "removed"])
async def test_cache_that_cannot_be_written_while_the_app_runs(folder, config, tmp_path, monkeypatch, fault):
    monkeypatch.setattr(app_module, "CACHE_RETRY_S", 0.5, raising=False)
    staging = tmp_path / "staging"
    staging.mkdir()
    drops = [astronaut_photo(staging / f"drop{i:02d}.jpg", 10 + i, (i, 1.0, 2 * i, -i)) for i in range(DROPS)]
    late = astronaut_photo(staging / "late.jpg", 40, (3, 0.95, 5, 5))
    app = make_app(folder, config)

    def said() -> list[str]:
        return [n.message for n in app._notifications]

    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == 6, "the first pass")
        cache_dir = app.driver.pipeline.store.cache_dir
        with monkeypatch.context() as m:
            if fault == "removed":
                shutil.rmtree(cache_dir)
            else:
                code, text = (errno.ENOSPC, "No space left on device") if fault == "full" else (
                    errno.EROFS, "Read-only file system")

                def failing(self, *args, **kwargs):
                    raise OSError(code, text)

                m.setattr(diskcache.Cache, "set", failing)
            for p in drops:
                os.rename(p, folder / p.name)
            await until(pilot, lambda: settled(app) and len(app.rows) == 6 + DROPS, "every photo processed")
            statuses = {r.status for r in app.rows.values() if r.name.startswith("drop")}
            assert statuses == {"aligned"}, statuses
            assert app.state.queue == 0 and not app.state.busy
            assert any(str(cache_dir) in m and "store.cache_dir" in m for m in said()), said()
        # the fault is gone: the next photo is detected and stored. The store tries the cache again on
        # the first write after its retry time since the last failed one; a photo whose writes all
        # come sooner is simply not cached, and nothing would write after it (a race seen once in
        # a loaded full run): wait until a write would be tried.
        store = app.driver.pipeline.store
        await until(pilot, lambda: store._failed_at is None
                    or time.monotonic() - store._failed_at >= store._retry_seconds, "the retry time")
        recorded.DETECTED.clear()
        os.rename(late, folder / late.name)
        await until(pilot, lambda: settled(app) and any(r.name == "late.jpg" and r.status == "aligned"
                                                        for r in app.rows.values()), "the late photo")
        await until(pilot, lambda: not app.driver.pipeline.store.degraded, "the cache in use again")
        await pilot.press("q")

    recorded.DETECTED.clear()
    again = make_app(folder, config)
    async with again.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(again) and len(again.rows) == 6 + DROPS + 1, "the reopened folder")
        await pilot.press("q")
    # what the fault kept out of the cache is detected again, what came after it is not (a removed
    # cache is started again at once: only what it held is gone, the first pass's five astronauts)
    assert sum(recorded.DETECTED) == (5 if fault == "removed" else DROPS), recorded.DETECTED
