"""Messages that arrive while the app closes (seen under CPU load: a table event queued behind the
quit) must not fail the app on its way out.

The screen of a closing app has lost its widgets while the app still takes messages (its timers
tick, the worker's messages are queued). Here the widgets are removed from a running app and the
late messages go through the app's own queue and timer, as they would then: a handler that looks
up a removed widget raises NoMatches, Textual ends the app with that error (``return_code`` 1) and
``run_test`` raises it."""
from __future__ import annotations

import asyncio
from dataclasses import replace

from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from alignimation_tui.tui.messages import (PipelineState, PreviewReady, RenderFinished, RenderProgress, RowsChanged,
                                           RowsRemoved)
from tests.tui.test_app import config, folder, make_app, settled, template, until  # noqa: F401


async def test_late_messages_after_the_screen_is_gone_do_nothing(folder, config):
    app = make_app(folder, config, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == 6, "the first pass")
        table = app.table
        row = next(r for r in app.rows.values() if r.status == "aligned")
        await app.query_one("#main").remove()  # the table, its note, the plot and the preview
        await app.query_one("#status-bar").remove()
        assert not app.query("#frames") and not app.query("#preview-pane")

        async def handled(*late, flushed=False) -> None:
            """Post ``late`` to the app and wait until it has handled them (and, with ``flushed``,
            its row timer has shown the rows), or one of them ended the app."""
            done = asyncio.Event()
            for message in late:
                app.post_message(message)
            app.call_later(done.set)  # after the messages above, in the app's queue
            for _ in range(600):
                if app.return_code is not None or (done.is_set() and not (flushed and app.rows_pending)):
                    break
                await asyncio.sleep(0.05)
            names = [type(message).__name__ for message in late]
            assert app.return_code is None, f"{names} ended the app (its error is raised below)"
            assert done.is_set() and not (flushed and app.rows_pending), f"{names} not handled in 30 s"

        await handled(RowsChanged([replace(row, verdict="rejected")]), flushed=True)  # by the row timer
        await handled(RowsRemoved([row.hash]))
        await handled(PipelineState("week00.jpg", 0, "", False, "cpu", "face"))
        await handled(RenderProgress(1, 5), RenderFinished("out.mp4", 5), RenderFinished("out.mp4", 0, error="stopped"))
        await handled(PreviewReady(row.hash, "aligned", [], f"[aligned] {row.name}"))
        await handled(DataTable.RowHighlighted(table, 0, RowKey(row.hash)))
        assert app.state.reference == "week00.jpg" and app.render_note == "render failed"
        await pilot.press("q")
    assert app.return_code == 0
