"""The photo folder moved away while the app is open, and back (`mv photos photos2`, as a newcomer
does from a second shell): said once in one line, a render says why in one line with the count,
and a photo copied in meanwhile appears once the folder is back. A real folder, real renames, the
app through its Pilot (on recorded detections, see ``tests.tui.recorded``)."""
from __future__ import annotations

from pathlib import Path

from tests.tui.test_app import astronaut_photo, config, folder, make_app, settled, template, until  # noqa: F401


async def test_a_folder_moved_away_and_back(folder, config, tmp_path):
    app = make_app(folder, config)

    def said() -> list[str]:
        return [n.message for n in app._notifications]

    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == 6, "the first pass")
        away = folder.with_name("weekly-moved")
        folder.rename(away)
        await until(pilot, lambda: any("cannot be used (it was moved or removed)" in m for m in said()),
                    "the move noticed", timeout=60)
        notice = next(m for m in said() if "cannot be used" in m)
        assert "\n" not in notice and str(folder) in notice
        astronaut_photo(away / "week09.jpg", 9, (3, 0.95, 10, 5))  # arrives while the folder is away

        await pilot.press("w")  # a render now cannot read the photos: one line, with the count
        await until(pilot, lambda: app.render_note.startswith(("wrote", "render failed", "up to date")), "the render")
        assert app.render_note == "render failed"
        failure = next(m for m in said() if m.startswith("render: "))
        assert "\n" not in failure and "cannot be used (it was moved or removed)" in failure
        assert "5 photos cannot be read" in failure

        away.rename(folder)
        await until(pilot, lambda: any("can be read again" in m for m in said()), "the folder back", timeout=60)
        await until(pilot, lambda: settled(app) and any(r.name == "week09.jpg" and r.status == "aligned"
                                                        for r in app.rows.values()), "the photo that came meanwhile")
        assert len(app.rows) == 7
        await pilot.press("q")
