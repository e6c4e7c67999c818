"""The app opened on the demo folder (what `alignimation-tui demo` does without --once)."""
from dataclasses import replace

from alignimation_tui.config import Config, WatchConfig
from alignimation_tui.demo import NO_FACE, PHOTOS, write_demo
from alignimation_tui.tui.app import AlignimationApp
from tests.tui.test_app import settled, until


async def test_app_opens_the_demo_folder(tmp_path):
    folder = tmp_path / "demo"
    write_demo(folder)
    app = AlignimationApp(folder, replace(Config(), watch=WatchConfig(settle_seconds=0.2)), watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == len(PHOTOS) + 1, "the demo's first pass")
        statuses = {r.name: r.status for r in app.rows.values()}
        assert statuses.pop(NO_FACE) == "no_subject"
        assert set(statuses.values()) == {"aligned"}
        await pilot.press("q")
