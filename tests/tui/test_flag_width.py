"""The flag column is as wide as its longest flag (issue #33, point 6: at 160x48 a mostly empty flag
column took 30 columns and pushed the short columns behind the preview). A real watched folder, a
nudge's mark set and cleared by its keys, a broken photo copied in and removed, the app through its
Pilot (recorded detections, see ``tests.tui.recorded``); and the width kept without a pass over the
rows."""
from __future__ import annotations

import shutil

from rich.cells import cell_len

from alignimation_tui.triage import NUDGE_MARK
from alignimation_tui.tui import table_view
from alignimation_tui.tui.cells import FLAG_MAX, FLAG_MIN, FlagWidth
from alignimation_tui.tui.table_view import visible_columns
from tests.tui.test_app import config, make_app, settled, template, until  # noqa: F401


def flag_width(app) -> int:
    return app.table.columns["flag"].get_render_width(app.table) - 2 * app.table.cell_padding


def scroll_width_follows(app) -> bool:
    """The table's scrollable width is its columns' (it was recomputed after the flag column changed)."""
    table = app.table
    return table.virtual_size.width == sum(c.get_render_width(table) for c in table.columns.values())


async def test_the_flag_column_takes_what_its_flags_need(template, config, tmp_path):
    folder = tmp_path / "weekly"
    shutil.copytree(template, folder)
    broken = (folder / "2024-03-20 broken.jpg").read_bytes()
    (folder / "2024-03-20 broken.jpg").unlink()
    app = make_app(folder, config)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == 5, "the first pass")
        assert all(r.flag == "" for r in app.rows.values())
        await until(pilot, lambda: scroll_width_follows(app), "the table's width")
        assert flag_width(app) == FLAG_MIN, "no flag: the column is as wide as its header"
        await until(pilot, lambda: "flag" in visible_columns(app.table), "the flag column in view at 160x48",
                    timeout=30)

        # A flag set on a row in place (a nudge marks it), then cleared.
        app.table.move_cursor(row=0)
        await pilot.press("shift+right")
        assert NUDGE_MARK in app.rows[app._selected_hash()].flag
        await until(pilot, lambda: flag_width(app) == cell_len(NUDGE_MARK) and scroll_width_follows(app),
                    f"the column widened for the nudge's mark (now {flag_width(app)})", timeout=30)
        await pilot.press("0")
        await until(pilot, lambda: flag_width(app) == FLAG_MIN and scroll_width_follows(app),
                    f"the column narrowed when the mark went (now {flag_width(app)})", timeout=30)

        (folder / "2024-03-20 broken.jpg").write_bytes(broken)
        await until(pilot, lambda: settled(app) and len(app.rows) == 6, "the broken photo's row")
        flag = next(r.flag for r in app.rows.values() if r.name == "2024-03-20 broken.jpg")
        assert flag.startswith("✗ not an image")
        await until(pilot, lambda: flag_width(app) == min(cell_len(flag), FLAG_MAX) and scroll_width_follows(app),
                    f"the column widened for {flag!r} (now {flag_width(app)})", timeout=30)
        cut = str(app.table.get_cell(next(h for h, r in app.rows.items() if r.flag), "flag"))
        assert cut == flag  # the cell holds the whole flag; the column cuts what is wider than FLAG_MAX

        (folder / "2024-03-20 broken.jpg").unlink()
        await until(pilot, lambda: len(app.rows) == 5, "the broken photo's row gone")
        await until(pilot, lambda: flag_width(app) == FLAG_MIN and scroll_width_follows(app),
                    f"the column narrowed again (now {flag_width(app)})", timeout=30)
        await pilot.press("q")


def test_the_width_is_kept_without_measuring_the_rows(monkeypatch):
    widths = FlagWidth()
    for i in range(10_000):
        widths.set(f"p{i}", "")
    widths.set("p7", "⚑ outlier: residual")
    assert widths.width == len("⚑ outlier: residual")
    widths.set("p8", "x" * 80)
    assert widths.width == FLAG_MAX
    measured = []
    monkeypatch.setattr(table_view, "cell_len", lambda text: measured.append(text) or len(text))
    widths.set("p8", "")  # the longest gone: the next longest, found without a pass over the rows
    assert widths.width == len("⚑ outlier: residual")
    widths.drop("p7")
    assert widths.width == FLAG_MIN
    widths.drop("nowhere")
    assert measured == [""], "only the changed flag is measured"
    assert len(widths._rows) == 1  # one width (0) for 9,999 photos
