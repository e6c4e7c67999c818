"""The app notices when another process changes the decisions file (a second app on the folder, a
script) and shows the new verdicts and nudges, without undoing them. Another real process writes
the file; the app runs on recorded detections (``tests.tui.recorded``)."""
from __future__ import annotations

import os
import subprocess
import sys

from alignimation_tui.nudge import Nudge
from tests.conftest import REPO
from tests.tui.test_app import config, decisions, folder, make_app, settled, template, until  # noqa: F401

WRITER = """
import sys
from alignimation_tui.domain import Verdict
from alignimation_tui.nudge import Nudge
from alignimation_tui.store import Decisions

d = Decisions(__import__("pathlib").Path(sys.argv[1]))
d.set_verdict(sys.argv[2], Verdict.REJECTED)
d.set_verdict(sys.argv[3], Verdict.ACCEPTED)
d.set_nudge(sys.argv[4], Nudge(dx=0.2))
"""


async def test_verdicts_set_by_another_process_appear(folder, config):
    app = make_app(folder, config)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == 6, "the first pass")
        h = {r.name: k for k, r in app.rows.items()}
        path = app.decisions.path
        subprocess.run([sys.executable, "-c", WRITER, str(path), h["week01.jpg"], h["week02.jpg"], h["week03.jpg"]],
                       check=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)

        def shown() -> bool:
            rows = {r.name: r for r in app.rows.values()}
            return (rows["week01.jpg"].verdict == "rejected" and rows["week02.jpg"].verdict == "accepted"
                    and "✥ nudged" in rows["week03.jpg"].flag)

        await until(pilot, shown, "the other process's decisions", timeout=60)
        assert str(app.table.get_cell(h["week01.jpg"], "verdict")) == "rejected"
        # this app's own decision afterwards keeps the other process's ones
        app.table.move_cursor(row=app.table.get_row_index(h["week04.jpg"]))
        await pilot.pause()
        await pilot.press("x")
        stored = decisions(config, folder)
        assert stored.verdict(h["week01.jpg"]).value == "rejected"
        assert stored.verdict(h["week02.jpg"]).value == "accepted"
        assert stored.verdict(h["week04.jpg"]).value == "rejected"
        assert stored.nudge(h["week03.jpg"]) == Nudge(dx=0.2)
        await pilot.press("q")
