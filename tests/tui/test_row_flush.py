"""When the worker's rows reach the table: a change after a quiet spell (a new photo in a watched
folder, a key press's rows) at once; changes that follow within ROW_FLUSH_S of a flush together at
the end of that interval, so a first scan redraws the table a few times a second, not per photo.
Rows of photos on their way (`queued`, `detecting`) hold back nothing: a new photo's `aligned` row
is not kept waiting by its `detecting` row.

The rows go through the app's own queue as the worker posts them (``RowsChanged``); what is shown
when is recorded by a spy on ``show_rows``. Nothing here waits for a time: each step waits for the
app to have handled what was posted (an event set from the app's queue after the messages), or for
the rows to be shown."""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from alignimation_tui.tui import app as app_module
from alignimation_tui.tui.messages import RowsChanged
from tests.tui.test_app import config, folder, make_app, settled, template, until  # noqa: F401


async def handled(app, *messages) -> None:
    """Post ``messages`` and wait until the app's queue has gone past them."""
    done = asyncio.Event()
    for message in messages:
        app.post_message(message)
    app.call_later(done.set)  # after the messages above, in the app's queue
    await asyncio.wait_for(done.wait(), 30)


async def test_rows_after_a_quiet_spell_are_shown_at_once_then_at_most_once_per_interval(folder, config,
                                                                                        monkeypatch):
    app = make_app(folder, config, watch=False)
    shown: list[tuple[float, set[str]]] = []
    show_rows = app.show_rows

    def spy(rows):
        shown.append((time.monotonic(), {row.hash for row in rows}))
        return show_rows(rows)

    monkeypatch.setattr(app, "show_rows", spy)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == 6, "the first pass")
        await until(pilot, lambda: time.monotonic() - shown[-1][0] > app_module.ROW_FLUSH_S, "a quiet spell")
        a, b, c = [row for row in app.rows.values() if row.status == "aligned"][:3]

        # A photo on its way (`detecting`), as a new photo's row first is: shown at once, and it holds
        # back nothing: the rows that follow are shown at once too.
        before = len(shown)
        await handled(app, RowsChanged([replace(a, status="detecting")]))
        assert len(shown) == before + 1 and shown[-1][1] == {a.hash} and app.rows[a.hash].status == "detecting"

        # Two messages in one go: both shown as soon as the app has handled them.
        await handled(app, RowsChanged([replace(a, verdict="rejected")]), RowsChanged([replace(b, verdict="rejected")]))
        assert len(shown) == before + 2 and shown[-1][1] == {a.hash, b.hash} and app.rows[a.hash].status == a.status
        assert app.rows[a.hash].verdict == app.rows[b.hash].verdict == "rejected" and not app.rows_pending
        first = shown[-1][0]

        # One right after: shown by the timer, no sooner than ROW_FLUSH_S after the last flush.
        await handled(app, RowsChanged([replace(c, verdict="rejected")]))
        await until(pilot, lambda: not app.rows_pending, "the next flush")
        assert [hashes for _, hashes in shown[before:]] == [{a.hash}, {a.hash, b.hash}, {c.hash}]
        assert shown[-1][0] - first >= app_module.ROW_FLUSH_S - 1e-3
        assert app.rows[c.hash].verdict == "rejected"
        await pilot.press("q")
    assert app.return_code == 0
