"""Messages that arrive while the app closes (seen under CPU load: a table event queued behind the
quit) must not fail the app on its way out."""
from dataclasses import replace

from alignimation_tui.config import Config, WatchConfig
from alignimation_tui.tui.app import AlignimationApp
from alignimation_tui.tui.messages import PipelineState
from tests.tui.recorded import recorded_pipeline


async def test_late_messages_after_the_screen_is_gone_do_nothing(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    app = AlignimationApp(folder, replace(Config(), watch=WatchConfig(settle_seconds=0.2)), watch=False,
                          pipeline=recorded_pipeline)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
    # the screen's widgets are gone now; these are what late messages and timers would call
    app.request_preview()
    app._flush_rows()
    app.show_state(PipelineState("", 0, "", False, "cpu", "face"))
    assert not app.query("#frames")
