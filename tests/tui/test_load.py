"""500 photos dropped into a watched folder at once: each processed exactly once, the queue depth
visible while they wait, the app still answering keys."""
from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
from PIL import Image

from alignimation_tui.config import Config, WatchConfig
from alignimation_tui.tui.app import AlignimationApp
from tests.tui.recorded import DETECTED, recorded_pipeline
from tests.tui.test_app import astronaut_photo, settled, until

N = 500


async def test_500_photos_dropped_at_once(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    astronaut_photo(folder / "first.jpg", 0)
    staging = tmp_path / "staging"
    staging.mkdir()
    rng = np.random.default_rng(3)
    for i in range(N):  # small faceless photos: the cost is in the bookkeeping, not the network
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(staging / f"drop{i:03d}.jpg")
    app = AlignimationApp(folder, replace(Config(), watch=WatchConfig(settle_seconds=0.2)), pipeline=recorded_pipeline)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == 1, "the first photo")
        DETECTED.clear()
        for p in sorted(staging.iterdir()):  # as a file manager drops them: renames into the folder
            os.rename(p, folder / p.name)
        deepest = 0

        def all_done() -> bool:
            nonlocal deepest
            if app.state is not None:
                deepest = max(deepest, app.state.queue)
            return settled(app) and len(app.rows) == N + 1

        await until(pilot, all_done, "all 500 photos", timeout=600)
        assert sum(DETECTED) == N, "each photo detected exactly once"
        assert deepest >= N // 4, f"the queue depth was shown ({deepest})"
        statuses = {r.status for h, r in app.rows.items() if r.name != "first.jpg"}
        assert statuses == {"no_subject"}
        assert app.table.row_count == N + 1
        await pilot.press("f")  # still answering keys
        assert app.filter == "flagged" and app.table.row_count == N
        await pilot.press("q")
