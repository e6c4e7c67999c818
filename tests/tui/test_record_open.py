"""The app on a folder it has opened before, from the folder's record (``folder_record``): the
table is final as the screen mounts, nothing is chosen or registered again, the views follow once
the screen is drawn, and the app then works as ever (a decision, a photo edited under its name).
What the record may and may not be used for: tests/unit/test_folder_record.py."""
from __future__ import annotations

import pytest

from alignimation_tui.tui.driver import PhotoReady
from tests.tui.test_app import (astronaut_library, astronaut_photo, cell, config, make_app,  # noqa: F401
                                select, settled, until, watch_the_open)

N = 12


@pytest.fixture
def library(tmp_path):
    return astronaut_library(tmp_path / "library", N, seed=11)


async def opened(folder, config) -> tuple[dict, dict]:  # noqa: F811
    """Open the app until it has settled; its rows and views."""
    app = make_app(folder, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == N and len(app.views) == N, "the library")
        rows, views = dict(app.rows), dict(app.views)
        await pilot.press("q")
    return rows, views


async def test_a_reopened_library_comes_from_its_record(library, config, monkeypatch):  # noqa: F811
    await opened(library, config)  # detects
    rows, views = await opened(library, config)  # from the store, photo by photo; writes the record
    passes, mounted = watch_the_open(monkeypatch)
    app = make_app(library, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        assert mounted["rows"] == rows and mounted["count"] == N, "final as the screen mounts"
        assert mounted["passes"] == 0, "nothing chosen or registered before the screen"
        await until(pilot, lambda: settled(app) and len(app.views) == N, "the views")
        assert app.views == views and app.rows == rows, "the state rebuilt from the record, as it was"
        before = len(passes)
        caption = app.query_one("#preview-caption")
        await until(pilot, lambda: str(caption.render()).startswith("[aligned] "), "the first row's preview",
                    timeout=60)
        await select(pilot, app, "day003.jpg")
        await pilot.press("x")
        await until(pilot, lambda: settled(app) and cell(app, "day003.jpg", "verdict") == "rejected"
                    and len(passes) > before, "the decision used")
        # a photo edited under its name while the app is open: a new row, the old one gone
        old = next(h for h, r in app.rows.items() if r.name == "day005.jpg")
        astronaut_photo(library / "day005.jpg", 40, (15, 1.2, 20, -25))
        app.driver.submit(PhotoReady(library / "day005.jpg"))
        await until(pilot, lambda: settled(app) and old not in app.rows
                    and any(r.name == "day005.jpg" and r.status == "aligned" for r in app.rows.values()),
                    "the edited photo's new row")
        await pilot.press("q")
    # the next open sees the decision and the edit (the record no longer holds: the scan runs)
    again, _ = await opened(library, config)
    assert cell_of(again, "day003.jpg").verdict == "rejected"
    assert cell_of(again, "day005.jpg").hash != old


def cell_of(rows: dict, name: str):
    return next(r for r in rows.values() if r.name == name)


async def test_after_the_record_the_passes_memory_is_made_before_any_photo_or_key(library, config):  # noqa: F811
    """Once the record has rebuilt the state (after the first draw), one pass reads what is stored:
    what the passes keep of each frame (the subject chosen, the transform's key) is made then, not
    by the first photo or key press; and the rows' check holds each frame's current values, so the
    passes after it compare them by identity."""
    import operator

    from alignimation_tui.tui.driver import _inputs

    await opened(library, config)  # detects
    await opened(library, config)  # writes the record
    app = make_app(library, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.views) == N, "the views")
        driver, p = app.driver, app.driver.pipeline
        assert len(p.mode._choices) == N, "every frame's subject chosen (kept) before any job"
        assert all("transform_key_of" in r.extra for r in p.results.values()), "every transform's key made"
        assert all(all(map(operator.is_, driver._made[h][0], _inputs(r))) for h, r in p.results.items()), \
            "the rows' check holds the frames' current values"
        await pilot.press("q")


async def test_a_library_with_photos_added_since_its_record_opens_from_it(library, config, monkeypatch):  # noqa: F811
    """New photos since the last open (a week's, or a cron job's run): the screen mounts with the
    record's rows, nothing chosen or registered before it, and the new photos follow, aligned."""
    await opened(library, config)  # detects
    rows, _ = await opened(library, config)  # writes the record
    astronaut_photo(library / "day050.jpg", 44, (4, 1.05, -10, 12))
    passes, mounted = watch_the_open(monkeypatch)
    app = make_app(library, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        assert mounted["rows"] == rows and mounted["count"] == N, "the record's rows as the screen mounts"
        assert mounted["passes"] == 0, "nothing chosen or registered before the screen"
        await until(pilot, lambda: settled(app) and len(app.rows) == N + 1 and len(app.views) == N + 1, "the new photo")
        assert all(r.status == "aligned" for r in app.rows.values())
        assert {h: r for h, r in app.rows.items() if h in rows} == rows, "the others as they were"
        now = dict(app.rows)
        await pilot.press("q")
    # the worker kept a record with the new photo: the next open reads nothing, the new one included
    passes, mounted = watch_the_open(monkeypatch)
    app = make_app(library, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        assert mounted["rows"] == now and mounted["count"] == N + 1 and mounted["passes"] == 0
        await until(pilot, lambda: settled(app) and len(app.views) == N + 1, "the views")
        assert app.rows == now
        await pilot.press("q")
