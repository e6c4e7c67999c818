"""A library's worth of rows: the worker makes again only the rows and views that changed (a new
photo in a folder of many is one new row, not the whole table again), and the preview's framing
comes with the state, the same for every frame; what a library's open made is frozen, not passed
over by the collector. Speed is measured in bench/bench_library.py."""
from __future__ import annotations

import gc
from dataclasses import replace

import numpy as np
import pytest

from alignimation_tui import preview, triage
from alignimation_tui.preview import on_output
from alignimation_tui.tui import driver as driver_module
from alignimation_tui.tui.driver import PhotoReady
from tests.tui.test_app import (astronaut_library, astronaut_photo, config, make_app,  # noqa: F401  (fixture)
                                settled, until)

N = 30


@pytest.fixture
def library(tmp_path):
    return astronaut_library(tmp_path / "library", N, seed=5)


def counting(monkeypatch, name: str) -> list[str]:
    """The hashes of the rows (or views) the worker makes from now on, however it makes them."""
    made: list[str] = []
    real = getattr(triage if name == "frame_row" else preview, name)

    def count(r, *args, **kwargs):
        made.append(r.frame.hash)
        return real(r, *args, **kwargs)

    for module in (driver_module, triage, preview):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, count)
    return made


async def test_a_new_photo_remakes_its_row_not_the_table(library, config, monkeypatch):  # noqa: F811
    app = make_app(library, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == N, "the library")
        rows, views = counting(monkeypatch, "frame_row"), counting(monkeypatch, "frame_view")
        new = astronaut_photo(library / "day999.jpg", N + 5, (3, 1.0, 10, 5))
        app.driver.submit(PhotoReady(new))
        await until(pilot, lambda: settled(app) and any(r.name == "day999.jpg" and r.status == "aligned"
                                                        for r in app.rows.values()), "the new photo aligned")
        new_hash = next(h for h, r in app.rows.items() if r.name == "day999.jpg")
        others = [h for h in rows if h != new_hash]
        # Every arrival chooses, registers and frames again over all frames; the rows and views of
        # the 30 whose values did not change are not made again (they were, 3 times each: 90+).
        assert len(others) < N // 2, f"{len(others)} rows of other photos made again"
        assert len([h for h in views if h != new_hash]) < N // 2
        assert rows.count(new_hash) >= 2, "the new row was shown queued, then aligned"
        await pilot.press("q")


async def test_preview_framing_comes_with_the_state(library, config):  # noqa: F811
    """A frame's view holds its registration; the state's framing after it is the render's matrix
    (the framing moves with the kept frames: one state, not every view, says so)."""
    app = make_app(library, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == N and app.state.framing, "the library")
        pipeline = app.driver.pipeline  # idle: read here only to compare
        assert app.state.framing == tuple(tuple(float(v) for v in row) for row in pipeline.framing.matrix)
        for h, view in app.views.items():
            r = pipeline.results[h]
            if r.transform is None:
                assert view.matrix is None
                continue
            assert np.allclose(on_output(app.state.framing, view.matrix), pipeline.output_matrix(r))
        await pilot.press("q")


def test_what_a_big_open_made_is_frozen_when_the_collector_resumes():
    """After a library's open the collector would pass over all it made, once per young
    generation; frozen instead. A small open leaves the collector as it was."""
    from alignimation_tui.tui import terminal

    for made, frozen in ((1_000, False), (terminal.FREEZE_AFTER + 10_000, True)):
        pause = terminal.CollectorPause()
        pause.pause()
        try:
            before = gc.get_freeze_count()
            kept = [[] for _ in range(made)]  # lists: tracked by the collector, as rows and results are
        finally:
            pause.resume()
        try:
            assert gc.isenabled()
            assert (gc.get_freeze_count() >= before + made) is frozen, (made, gc.get_freeze_count() - before)
        finally:
            gc.unfreeze()  # the test session's objects back in sight
            del kept


async def test_the_name_column_is_as_wide_as_its_widest_name(library, config):  # noqa: F811
    """The table is given the name column's width (its widest name) instead of measuring every name
    of every new row; it follows the rows as they come and go."""
    from alignimation_tui.tui.driver import PhotoDeleted

    app = make_app(library, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == N, "the library")
        column = app.table.columns["name"]
        assert column.width == len("day000.jpg")
        long = astronaut_photo(library / "a photo with a [rather] long name.jpg", N + 3)
        app.driver.submit(PhotoReady(long))
        await until(pilot, lambda: settled(app) and len(app.rows) == N + 1, "the long name")
        assert column.width == len(long.name)
        h = next(h for h, r in app.rows.items() if r.name == long.name)
        shown = app.table._get_row_renderables(app.table.get_row_index(h)).cells[0]
        assert shown.plain == long.name, "shown as it is: not read as markup (that lost '[rather]')"
        long.unlink()
        app.driver.submit(PhotoDeleted(long))
        await until(pilot, lambda: settled(app) and len(app.rows) == N, "the long name gone")
        assert column.width == len("day000.jpg")
        await pilot.press("q")


def test_chunks_grow_when_the_bookkeeping_outweighs_detection():
    """Every chunk is followed by a pass over every frame detected so far (choosing, registering,
    the rows): with many frames the chunks grow, so that pass stays a share of the time a photo
    takes, instead of a cost per 8 photos that grows with the folder."""
    from alignimation_tui.tui.driver import BOOKKEEPING_SHARE, CHUNK, MAX_CHUNK, next_chunk

    assert next_chunk(0.02, 0.8, CHUNK) == CHUNK, "a small folder: detection is most of the time"
    # 0.1 s a photo, 1.5 s of bookkeeping (10,000 frames): that pass is a quarter of a bigger chunk's time
    size = next_chunk(1.5, 0.8, CHUNK)
    assert CHUNK < size < MAX_CHUNK
    assert 1.5 <= BOOKKEEPING_SHARE * (size + 1) * 0.1
    assert next_chunk(30.0, 0.8, CHUNK) == MAX_CHUNK, "rows still turn aligned every so often"
    assert next_chunk(0.5, 0.0, 0) == CHUNK  # nothing detected (all failed, or cancelled)


async def test_the_table_measures_no_cell(library, config, monkeypatch):  # noqa: F811
    """Every column has a width (fixed, or fitted to its widest cell), so the table measures no cell:
    not every cell of every new row (1 s of a 10,000-photo open), nor an updated one."""
    from textual.widgets import _data_table

    measured: list[int] = []
    real = _data_table.measure
    monkeypatch.setattr(_data_table, "measure", lambda *a, **k: measured.append(1) or real(*a, **k))
    app = make_app(library, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == N, "the library")
        measured.clear()  # the headers, measured as the columns were added
        new = astronaut_photo(library / "day999.jpg", N + 5, (3, 1.0, 10, 5))
        app.driver.submit(PhotoReady(new))
        await until(pilot, lambda: settled(app) and len(app.rows) == N + 1, "the new photo")
        await pilot.pause(0.1)  # the table's idle pass
        assert not measured, f"{len(measured)} cells of new rows measured"
        app.action_verdict("accepted")  # one cell updated, the selected row's verdict
        await until(pilot, lambda: settled(app) and not app._verdicts, "the verdict applied")
        await pilot.pause(0.1)
        assert not measured, f"{len(measured)} cells measured for updated cells"
        await pilot.press("q")


async def test_rows_added_at_once_are_as_rows_added_one_by_one():
    """``FrameTable.add_rows`` leaves the table as ``add_row`` one row at a time does (the order, the
    keys, the first row highlighted); a duplicate key adds none of the rows. The cells hold the plain
    text and are styled as they are drawn, never read as markup."""
    from textual.app import App
    from textual.widgets import DataTable
    from textual.widgets.data_table import DuplicateKey

    from alignimation_tui.tui.app import table_cell
    from alignimation_tui.tui.table_view import FrameTable

    rows = [(f"h{i}", (f"[b]photo {i}[/b].jpg", "aligned" if i % 2 else "failed")) for i in range(5)]

    class Tables(App):
        highlighted: list[tuple[str, str]] = []

        def compose(self):
            for name in ("one", "many"):
                table = FrameTable(id=name, cursor_type="row", style_cell=table_cell)
                table.add_column("photo", key="name", width=20)
                table.add_column("status", key="status", width=10)
                yield table

        def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
            self.highlighted.append((event.data_table.id, event.row_key.value))

    app = Tables()
    async with app.run_test(size=(80, 20)) as pilot:
        one, many = app.query_one("#one", FrameTable), app.query_one("#many", FrameTable)
        for key, cells in rows:
            one.add_row(*cells, key=key)
        assert [k.value for k in many.add_rows(rows)] == [key for key, _ in rows]
        await pilot.pause()
        for table in (one, many):
            assert table.row_count == 5
            assert [table.get_row_index(key) for key, _ in rows] == list(range(5))
            assert table.get_cell("h3", "status") == "aligned"
        assert ("one", "h0") in app.highlighted and ("many", "h0") in app.highlighted
        with pytest.raises(DuplicateKey):
            many.add_rows([("h9", ("new.jpg", "aligned")), ("h2", ("again.jpg", "aligned"))])
        assert many.row_count == 5 and "h9" not in many.rows
        shown = many._get_row_renderables(many.get_row_index("h1")).cells
        assert shown[0].plain == "[b]photo 1[/b].jpg", "a name is shown as it is, not read as markup"
        assert str(shown[1].style) == "green", "the status is styled as it is drawn"
        await pilot.press("q")


async def test_a_latest_photo_is_put_last_without_sorting_the_table(library, config, monkeypatch):  # noqa: F811
    """A new photo that sorts after every row (the latest, in date order) is put at the bottom: the
    table is not sorted again (10,000 rows a photo). One that sorts among them sorts the table."""
    app = make_app(library, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == N, "the library")
        sorts: list[str] = []
        real_sort = type(app.table).sort
        monkeypatch.setattr(type(app.table), "sort", lambda table, *a, **k: sorts.append(a) or real_sort(table, *a, **k))

        def in_date_order() -> bool:
            keys = [str(app.table.get_cell_at((i, app.table.get_column_index("date"))))
                    for i in range(app.table.row_count)]
            return keys == sorted(keys)

        latest = astronaut_photo(library / "day999.jpg", N + 5, (3, 1.0, 10, 5))
        app.driver.submit(PhotoReady(latest))
        await until(pilot, lambda: settled(app) and len(app.rows) == N + 1, "the latest photo")
        assert sorts == [], "the table was sorted again for a row that goes last"
        assert in_date_order()
        assert app.table.get_row_index(next(h for h, r in app.rows.items() if r.name == latest.name)) == N
        middle = astronaut_photo(library / "day003b.jpg", 3, (2, 1.0, 5, 5))
        app.driver.submit(PhotoReady(middle))
        await until(pilot, lambda: settled(app) and len(app.rows) == N + 2, "the photo among them")
        assert sorts, "a row that goes among the others sorts the table"
        assert in_date_order()
        await pilot.press("q")


async def test_moving_the_cursor_does_not_put_the_plot_in_order_again(library, config, monkeypatch):  # noqa: F811
    """The residual plot's date order is made when it may change (rows come or go, a date or a
    residual changes), not at every move of the cursor (at 10,000 rows, 30 ms a key press) nor for
    a verdict; the rows per status are kept as rows change, not counted again."""
    from collections import Counter

    from alignimation_tui.tui.widgets import series

    app = make_app(library, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == N, "the library")
        ordered: list[int] = []
        real = series.residual_order
        monkeypatch.setattr(series, "residual_order", lambda rows: ordered.append(len(rows)) or real(rows))
        drawn: list[int] = []
        real_bars = series.residual_bars
        monkeypatch.setattr(series, "residual_bars", lambda rows, width: drawn.append(len(rows)) or real_bars(rows, width))
        plot = app.query_one("#series", series.SeriesPlot)
        before = str(plot.content)
        for _ in range(3):
            await pilot.press("down")
        await pilot.pause()
        assert ordered == [], "the plot's order was made again for a move of the cursor"
        assert drawn == [], "the plot's bars were made again for a move of the cursor"
        assert str(plot.content) != before, "the plot marks the frame under the cursor"
        # A residual's new value (a frame registered again) is drawn, in the same order
        first = min(app.rows.values(), key=lambda r: r.series_key)
        worst = max(r.residual_pct for r in app.rows.values() if r.residual_pct is not None)
        bars_before = str(plot.content).splitlines()[0]
        app.show_rows([replace(first, residual_pct=worst * 4 + 1, residual=f"{worst * 4 + 1:.2f}")])
        await pilot.pause()
        assert ordered == [] and len(drawn) == 1, "the bars, not the order, were made again for a new residual"
        bars_after = str(plot.content).splitlines()[0]
        assert bars_after != bars_before and bars_after[0] == "█", "the first frame's bar shows its new residual"
        app.show_rows([first])
        await pilot.pause()
        app.action_verdict("rejected")  # a new verdict: the same dates and residuals, the same order
        await until(pilot, lambda: settled(app) and not app._verdicts, "the verdict applied")
        assert ordered == [], "the plot's order was made again for a verdict"
        assert sum(app._status_count.values()) == N
        assert dict(+app._status_count) == dict(Counter(r.status for r in app.rows.values()))
        await pilot.press("q")


def _tables_app(rows: int):
    from textual.app import App

    from alignimation_tui.tui.app import table_cell
    from alignimation_tui.tui.table_view import FrameTable

    class Table(App):
        def compose(self):
            table = FrameTable(id="t", cursor_type="row", zebra_stripes=True, style_cell=table_cell)
            for key in ("name", "status", "date"):
                table.add_column(key, key=key, width=12)
            yield table

        def on_mount(self) -> None:
            self.query_one(FrameTable).add_rows(
                (f"h{i:05d}", (f"p{i:05d}.jpg", "aligned", f"2020-{i % 12 + 1:02d}-01")) for i in range(rows))

    return Table()


class CountingRows(dict):
    """A table's ``rows`` that counts the rows looked up."""

    looked_up = 0

    def __getitem__(self, key):
        CountingRows.looked_up += 1
        return super().__getitem__(key)


async def test_a_change_to_one_cell_does_not_list_every_row_again():
    """After a cell changes, drawing the table looks up the rows in view, not every row of the
    table (the DataTable listed all its rows, and all its lines, after every change: at 10,000
    rows, tens of milliseconds each time a photo's status changed). The table still draws and
    moves as before."""
    from textual.coordinate import Coordinate
    from textual.widgets import DataTable

    from alignimation_tui.tui.table_view import FrameTable

    app = _tables_app(5_000)
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        table = app.query_one(FrameTable)
        table.sort("date", key=lambda v: str(v))
        await pilot.pause()
        table.rows = CountingRows(table.rows)
        CountingRows.looked_up = 0
        table.update_cell("h00010", "status", "failed")
        table.move_cursor(row=4_000)
        await pilot.pause()
        assert CountingRows.looked_up < 500, f"{CountingRows.looked_up} rows looked up for one change"
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        assert key == table._row_locations.get_key(4_000).value and table.cursor_row == 4_000
        assert table._get_offsets(table.header_height + 4_000) == (table._row_locations.get_key(4_000), 0)
        assert table.virtual_size.height == 5_000 + table.header_height
        assert [row.key for row in table.ordered_rows[3_999:4_001]] == \
            [table._row_locations.get_key(i) for i in (3_999, 4_000)]
        for i in (0, 7, 4_000, 4_999):  # where the DataTable's own sums put them
            assert table._get_row_region(i) == DataTable._get_row_region(table, i)
            assert table._get_cell_region(Coordinate(i, 2)) == DataTable._get_cell_region(table, Coordinate(i, 2))
        await pilot.press("q")


async def test_a_change_to_one_cell_draws_that_cell_again_not_every_cell_in_view(monkeypatch):
    """The cells in view are kept as drawn while what they are drawn from stays (their text, place,
    width, styles, the cursor): a change to one cell draws that cell (and the header) again, not
    every cell in view; the changed cell shows its new text."""
    from textual.widgets import DataTable

    from alignimation_tui.tui.table_view import FrameTable

    app = _tables_app(200)
    async with app.run_test(size=(60, 30)) as pilot:
        await pilot.pause()
        table = app.query_one(FrameTable)
        drawn: list[tuple[int, int]] = []
        real = DataTable._render_cell
        monkeypatch.setattr(DataTable, "_render_cell",
                            lambda self, r, c, *a, **k: drawn.append((r, c)) or real(self, r, c, *a, **k))
        table.update_cell("h00003", "status", "failed")
        await pilot.pause()
        body = [cell for cell in drawn if cell[0] >= 0]
        assert (3, 1) in body and len(body) <= 3, body
        shown = "".join(segment.text for segment in table.render_line(table.header_height + 3))
        assert "failed" in shown and "p00003.jpg" in shown
        await pilot.press("q")
