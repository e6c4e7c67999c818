"""Curation in the app, through the Pilot on recorded detections (``tests.tui.recorded``): nudge keys
(stored at once, the rendered frame moves by the expected amount, the nudge survives a pin and a
restart), the series plot, the preview's picture protocol, and an 80x24 terminal."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from alignimation_tui.config import Config, PreviewConfig, RenderConfig, WatchConfig
from alignimation_tui.nudge import Nudge, nudged
from alignimation_tui.tui.widgets.graphics import choose_graphics
from alignimation_tui.tui.widgets.halfblock import HalfBlockImage
from tests.e2e.test_nudge_render import phase_shift
from tests.tui.test_app import decisions, folder, make_app, select, settled, template, until  # noqa: F401


@pytest.fixture
def config(tmp_path) -> Config:
    return replace(Config(), watch=WatchConfig(settle_seconds=0.2),
                   render=RenderConfig(output=str(tmp_path / "out" / "timelapse.mp4")))


def rendered_frame(path: Path, index: int) -> np.ndarray:
    reader = imageio.get_reader(path)
    try:
        frame = reader.get_data(index)
    finally:
        reader.close()
    return np.asarray(frame, np.float64).mean(axis=2)


def eye_frame(matrix, eyes) -> tuple[np.ndarray, float]:
    pts = (np.c_[np.asarray(eyes), np.ones(2)] @ np.asarray(matrix).T)[:, :2]
    return pts.mean(axis=0), float(np.linalg.norm(pts[1] - pts[0]))


async def render(pilot, app) -> Path:
    app.render_note = ""
    await pilot.press("w")
    await until(pilot, lambda: app.render_note.startswith(("wrote", "render failed")), "the render")
    assert app.render_note.startswith("wrote"), app.render_note
    return Path(app.config.render.output)


async def test_nudge_keys_store_move_the_frame_and_survive_pin_and_restart(folder, config):
    app = make_app(folder, config)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app), "the first pass")
        out = await render(pilot, app)
        before = rendered_frame(out, 2)  # week02, the third kept frame
        await select(pilot, app, "week02.jpg")
        h = app._selected_hash()
        r = app.driver.pipeline.results[h]  # the worker's own results, read while it is idle (settled)
        registration = np.asarray(r.transform.matrix)
        framed = app.driver.pipeline.output_matrix(r)  # framing ∘ registration: the frame before its nudge
        eyes = r.subject.face.landmarks[:2]

        await pilot.press("shift+right", "shift+right", "shift+up")  # coarse: 0.05 eye distances a step
        stored = decisions(config, folder).nudge(h)  # read back from disk, app still open
        assert stored == Nudge(dx=0.1, dy=-0.05)
        await pilot.press("full_stop", "shift+down", "right_square_bracket", "plus")  # fine steps
        assert app.nudge_step == "fine"
        stored = decisions(config, folder).nudge(h)
        assert (stored.dx, stored.dy, stored.angle_deg) == pytest.approx((0.1, -0.04, 0.2))
        assert stored.scale == pytest.approx(1.004)
        await until(pilot, lambda: "✥ nudged" in str(app.table.get_cell(h, "flag")), "the flag mark")
        caption = app.query_one("#preview-caption")
        await until(pilot, lambda: "nudge shift +0.10,-0.04" in str(caption.render()), "the nudged preview")
        await pilot.press("o", "shift+left")  # the onion skin follows the nudge too
        await until(pilot, lambda: "nudge shift +0.09,-0.04" in str(caption.render())
                    and "onion skin with week00.jpg" in str(caption.render()), "the nudged onion skin")
        await pilot.press("o")

        # back to a plain shift, and the rendered frame moves by it
        await pilot.press("0")
        assert decisions(config, folder).nudge(h) is None
        await pilot.press("full_stop", "shift+right", "shift+right", "shift+down", "shift+down", "shift+down")
        assert app.nudge_step == "coarse"
        assert decisions(config, folder).nudge(h) == Nudge(dx=0.1, dy=0.15)
        after = rendered_frame(await render(pilot, app), 2)
        centre, iod = eye_frame(framed, eyes)
        assert phase_shift(before, after) == pytest.approx([0.1 * iod, 0.15 * iod], abs=1.5)

        # pin another reference: every frame is re-registered, the nudge stays relative to the face
        await select(pilot, app, "week03.jpg")
        await pilot.press("p")
        await until(pilot, lambda: settled(app) and app.state.reference == "week03.jpg", "the new reference")
        r = app.driver.pipeline.results[h]
        assert not np.allclose(np.asarray(r.transform.matrix), registration)
        assert r.nudge == Nudge(dx=0.1, dy=0.15)
        plain_mid, plain_iod = eye_frame(app.driver.pipeline.output_matrix(r), eyes)
        final_mid, _ = eye_frame(app.driver.pipeline.final_matrix(r), eyes)
        assert final_mid - plain_mid == pytest.approx([0.1 * plain_iod, 0.15 * plain_iod], abs=1e-6)
        await pilot.press("q")

    again = make_app(folder, config)
    async with again.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(again), "the reopened app")
        r = again.driver.pipeline.results[h]
        assert r.nudge == Nudge(dx=0.1, dy=0.15)
        assert "✥ nudged" in str(again.table.get_cell(h, "flag"))
        p = again.driver.pipeline
        assert p.final_matrix(r) == pytest.approx(nudged(p.output_matrix(r), r.nudge, eyes))
        await pilot.press("q")


async def test_small_terminal_layout_plot_and_standing_condition(folder, config, monkeypatch):
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    app = make_app(folder, replace(config, preview=PreviewConfig(graphics="auto")))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: settled(app), "the first pass")
        await select(pilot, app, "week02.jpg")
        assert app.screen.has_class("-narrow")
        table, pane = app.query_one("#frames"), app.query_one("#preview-pane")
        assert pane.region.y >= table.region.bottom, "the preview goes under the table"
        assert pane.region.width >= 70
        # the most useful columns come first and fit in 80 columns
        visible = [c.key.value for c in table.ordered_columns if table.region.x + sum(
            x.get_render_width(table) for x in table.ordered_columns[:table.ordered_columns.index(c) + 1]) <= 80]
        assert visible[:5] == ["name", "status", "verdict", "residual", "sharpness"]
        # the standing condition is in the status bar, not in a notification
        status = str(app.query_one("#status-bar").render())
        assert "identity matching off" in status
        assert not any("identity matching is off" in n.message for n in app._notifications)
        # the plot: one bar per aligned frame, the selected one marked
        plot = str(app.query_one("#series").render())
        bars, marker = plot.splitlines()[:2]
        assert len(bars.split()[0]) == 5 and marker.index("▲") == 2  # week02: the third in date order
        # under tmux the preview uses half-blocks
        assert isinstance(app.query_one("#preview"), HalfBlockImage)
        await until(pilot, lambda: any("▀" in s.text for s in app.query_one("#preview")._lines), "the preview")
        await pilot.press("q")


def test_graphics_choice():
    kitty = lambda: "kitty"  # noqa: E731  what a terminal answering the Kitty query would give
    assert choose_graphics("auto", {"TERM": "xterm-kitty"}, is_tty=True, probe=kitty) == "kitty"
    plain_tmux = lambda: {"256", "RGB", "title"}  # noqa: E731  `tmux display -p '#{client_termfeatures}'`
    sixel_tmux = lambda: {"256", "RGB", "sixel"}  # noqa: E731  with `set -as terminal-features ',*:sixel'`
    assert choose_graphics("auto", {"TMUX": "/tmp/tmux", "TERM": "screen"}, is_tty=True, probe=kitty,
                           tmux=plain_tmux) == "halfblock"
    assert choose_graphics("auto", {"TERM": "tmux-256color"}, is_tty=True, probe=kitty, tmux=plain_tmux) == "halfblock"
    assert choose_graphics("auto", {"TMUX": "/tmp/tmux", "TERM": "tmux-256color", "SSH_TTY": "/dev/pts/1"},
                           is_tty=True, probe=kitty, tmux=sixel_tmux) == "sixel"
    assert choose_graphics("auto", {"TMUX": "/tmp/tmux"}, is_tty=True, tmux=set) == "halfblock"  # tmux silent
    assert choose_graphics("auto", {"STY": "1.pts", "TERM": "screen"}, is_tty=True, probe=kitty) == "halfblock"
    assert choose_graphics("auto", {"SSH_CONNECTION": "1 2 3 4", "TERM": "xterm"}, is_tty=True,
                           probe=kitty) == "halfblock"
    assert choose_graphics("auto", {"TERM": "xterm-256color"}, is_tty=False, probe=kitty) == "halfblock"
    assert choose_graphics("auto", {"TERM": "xterm"}, is_tty=True, probe=lambda: "halfblock") == "halfblock"
    assert choose_graphics("sixel", {"TMUX": "x"}, is_tty=False) == "sixel"  # forced by the config


async def test_forced_kitty_preview_gets_a_sharp_picture(folder, config):
    app = make_app(folder, replace(config, preview=PreviewConfig(graphics="kitty")))
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app), "the first pass")
        await select(pilot, app, "week02.jpg")
        preview = app.query_one("#preview")
        assert not isinstance(preview, HalfBlockImage)
        await until(pilot, lambda: preview.image is not None, "the picture")
        w, h = preview.cell_size
        assert preview.image.size[0] >= w * 2 and preview.image.size[1] >= h * 2, "pixels, not cells"
        await pilot.press("q")
