"""A path has one row in the app, whatever the timing of the watcher's events against the running
job: a photo overwritten in place by another of the same name (`cp new.jpg old.jpg`), one moved
over (`mv`), one deleted while queued, while detecting, once aligned, or while it is the reference
(a new one is chosen and said). The folder is opened as typed, relative or absolute; the app runs
on recorded detections (``tests.tui.recorded``), the watcher and the files are real."""
from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from alignimation_tui.register import apply
from alignimation_tui.render import read_sidecar, sidecar_path
from alignimation_tui.scan import content_hash
from alignimation_tui.tui.driver import Driver, PhotoReady
from tests.tui import recorded
from tests.tui.recorded import ASTRONAUT_FACE
from tests.tui.test_app import (TIMEOUT, astronaut_photo, config, folder, make_app, settled, template,  # noqa: F401
                                until)

EYES = np.asarray(ASTRONAUT_FACE.landmarks[:2])


def names(app) -> list[str]:
    return sorted(r.name for r in app.rows.values())


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".jpg")


def hash_of(app, name: str) -> str:
    (h,) = [h for h, r in app.rows.items() if r.name == name]
    return h


async def render(pilot, app) -> dict:
    app.render_note = ""
    await pilot.press("w")
    await until(pilot, lambda: app.render_note.startswith(("wrote", "render failed")), "the render")
    assert app.render_note.startswith("wrote"), app.render_note
    return read_sidecar(sidecar_path(Path(app.config.render.output)))


def eyes_in_output(sidecar: dict, placed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Where each rendered frame's final matrix puts the eyes of the portrait its photo holds."""
    return {Path(f["path"]).name: apply(np.asarray(f["transform"]), apply(placed[Path(f["path"]).name], EYES))
            for f in sidecar["frames"]}


@pytest.mark.parametrize("spelled", ["relative", "absolute"])
async def test_overwritten_and_moved_over_photos_have_one_row(folder, config, tmp_path, monkeypatch, spelled):
    from tests.conftest import similarity
    from tests.tui.test_app import WARPS

    placed = {f"week{i:02d}.jpg": similarity(a, s, tx + 64, ty + 60) for i, (a, s, tx, ty) in enumerate(WARPS)}
    monkeypatch.chdir(folder.parent)
    app = make_app(Path(folder.name) if spelled == "relative" else folder, config)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == 6, "the first pass")

        # cp new.jpg week02.jpg: another photo, same name, written in place
        warp = (14, 0.8, 40, -10)
        new = astronaut_photo(tmp_path / "new.jpg", 2, warp)
        placed["week02.jpg"] = similarity(warp[0], warp[1], warp[2] + 64, warp[3] + 60)
        shutil.copyfile(new, folder / "week02.jpg")
        await until(pilot, lambda: settled(app) and content_hash(new) in app.rows, "the new week02.jpg")
        assert names(app) == files(folder), "one row per path"

        # mv other.jpg week03.jpg: moved over it from outside the folder
        warp = (-9, 1.2, -30, 20)
        other = astronaut_photo(tmp_path / "other.jpg", 3, warp)
        placed["week03.jpg"] = similarity(warp[0], warp[1], warp[2] + 64, warp[3] + 60)
        moved_hash = content_hash(other)
        os.replace(other, folder / "week03.jpg")
        await until(pilot, lambda: settled(app) and moved_hash in app.rows, "the moved-over week03.jpg")
        assert names(app) == files(folder), "one row per path"
        assert hash_of(app, "week02.jpg") == content_hash(folder / "week02.jpg")
        assert hash_of(app, "week03.jpg") == moved_hash
        status = str(app.query_one("#status-bar").render())
        assert status.startswith("5 aligned · 1 failed"), status

        # the render: each photo once, the new ones placed by their own transforms
        eyes = eyes_in_output(await render(pilot, app), placed)
        assert sorted(eyes) == [f"week{i:02d}.jpg" for i in range(5)]
        first = eyes.pop("week00.jpg")
        for name, e in eyes.items():
            assert np.abs(e - first).max() < 3.0, name  # output pixels
        await pilot.press("q")


def gather_drops(monkeypatch, dropped: set[str]) -> None:
    """The worker takes the dropped photos as one burst, in name order, whatever the watcher's
    timing: the first eight are one detection batch (drop00.jpg held in it) and the rest wait,
    `queued`, behind it. The watcher may hand over a burst in parts (it did on a CI machine: the
    first part became the whole batch and the rest were not rows yet while it was held), so the
    first job that brings a dropped photo waits, on the job queue, for the others."""
    handle = Driver._handle

    def gathered(self, jobs):
        def arrived(js):
            return {j.path.name for j in js if isinstance(j, PhotoReady)} & dropped

        jobs = list(jobs)
        if arrived(jobs):
            deadline = time.monotonic() + TIMEOUT
            while arrived(jobs) != dropped:
                assert time.monotonic() < deadline, f"the watcher handed over only {sorted(arrived(jobs))}"
                try:
                    jobs.append(self.jobs.get(timeout=0.1))
                except queue.Empty:
                    pass
            jobs.sort(key=lambda j: (not isinstance(j, PhotoReady), getattr(j, "path", Path()).name))
        handle(self, jobs)

    monkeypatch.setattr(Driver, "_handle", gathered)


@pytest.mark.parametrize("spelled", ["relative", "absolute"])
async def test_deleted_while_queued_detecting_aligned_or_the_reference(folder, config, tmp_path, monkeypatch,
                                                                      spelled):
    staging = tmp_path / "staging"
    staging.mkdir()
    drops = [astronaut_photo(staging / f"drop{i:02d}.jpg", 10 + i, (i, 1.0, 2 * i, -i)) for i in range(12)]
    hold = recorded.HOLD["drop00.jpg"] = threading.Event()
    gather_drops(monkeypatch, {p.name for p in drops})
    monkeypatch.chdir(folder.parent)
    app = make_app(Path(folder.name) if spelled == "relative" else folder, config)
    try:
        async with app.run_test(size=(150, 40)) as pilot:
            await until(pilot, lambda: settled(app) and len(app.rows) == 6, "the first pass")
            assert app.state.reference == "week00.jpg"
            for p in drops:  # as a file manager drops them
                os.rename(p, folder / p.name)
            await until(pilot, lambda: "drop00.jpg" in recorded.DETECTING, "drop00.jpg held in detection")

            def queued() -> list[str]:
                return [r.name for r in app.rows.values() if r.status == "queued" and r.name.startswith("drop")
                        and r.name not in recorded.DETECTING]

            await until(pilot, lambda: bool(queued()), "a photo queued behind the batch")
            gone = ["drop00.jpg", queued()[0]]  # one being detected, one waiting for it
            for name in gone:
                (folder / name).unlink()
            hold.set()
            await until(pilot, lambda: settled(app) and len(app.rows) == 6 + 12 - 2, "the drops processed")
            assert not set(gone) & set(names(app)), names(app)
            assert names(app) == files(folder)

            (folder / "week01.jpg").unlink()  # an aligned one
            await until(pilot, lambda: "week01.jpg" not in names(app), "the aligned photo's row to go")

            app.clear_notifications()
            (folder / "week00.jpg").unlink()  # the reference
            await until(pilot, lambda: settled(app) and app.state.reference not in ("week00.jpg", ""),
                        "a new reference")
            assert names(app) == files(folder)
            said = [n.message for n in app._notifications]
            assert any("week00.jpg" in m and app.state.reference in m and "reference" in m for m in said), said

            sidecar = await render(pilot, app)
            rendered = sorted(Path(f["path"]).name for f in sidecar["frames"])
            assert rendered == sorted(n for n in files(folder) if n != "2024-03-20 broken.jpg")
            await pilot.press("q")
    finally:
        hold.set()
        recorded.HOLD.clear()
