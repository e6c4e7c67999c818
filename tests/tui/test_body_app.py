"""The app in body mode, chosen by itself, on real side views with the real body model (BlazePose
ships with the package): the rows, the side column, the status bar, a verdict and a render."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import imageio.v2 as imageio

from alignimation_tui.config import Config, RenderConfig, WatchConfig
from alignimation_tui.tui.app import AlignimationApp
from tests.tui.test_app import cell, select, settled, until


async def test_side_views_open_in_body_mode_with_their_side(samples, tmp_path):
    folder = tmp_path / "bump"
    folder.mkdir()
    for path in sorted((samples / "body_standing").glob("*_side_*")):
        shutil.copy(path, folder / path.name)
    out = tmp_path / "out" / "bump.mp4"
    config = replace(Config(), watch=WatchConfig(settle_seconds=0.2), render=RenderConfig(output=str(out)))
    app = AlignimationApp(folder, config)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == 4, "the first pass")
        assert {r.status for r in app.rows.values()} == {"aligned"}
        assert app.state.models.startswith("body (auto)") and "BlazePose" in app.state.models
        names = sorted(r.name for r in app.rows.values())
        assert all(cell(app, name, "side") == "left nearer the camera" for name in names)
        await select(pilot, app, names[-1])
        await pilot.press("x")
        await pilot.press("w")
        await until(pilot, lambda: app.render_note.startswith(("wrote", "render failed")), "the render")
        assert app.render_note.startswith(f"wrote {out}"), app.render_note
        await pilot.press("q")
    reader = imageio.get_reader(out)
    assert reader.count_frames() == 3 and reader.get_data(0).shape[:2] == (1440, 1080)
    reader.close()
