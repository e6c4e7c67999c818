"""A third mode defined here, in a test, and registered from it: anchor points marked by hand, read
from a JSON file beside each photo. No file of the package knows of it; it runs ``--once`` (its
``--mode`` choice and its config section come from the registry), the app (table, preview, nudge,
pin, render), the render and the selection end to end. It is what a newcomer writes to add a mode:
one module."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from alignimation_tui.cli import main
from alignimation_tui.config import Config, RenderConfig, SelectConfig, WatchConfig, between, check, load_config
from alignimation_tui.domain import FrameResult, FrameStatus
from alignimation_tui.modes import mode_names, register_mode, unregister_mode
from alignimation_tui.modes.base import Detection, Mode, Subject
from alignimation_tui.nudge import Nudge
from alignimation_tui.photos import open_photo
from alignimation_tui.register import apply
from alignimation_tui.render import read_sidecar, sidecar_path
from alignimation_tui.store import fingerprint
from tests.conftest import save_with_date, similarity, warped_astronaut

# ---- the mode -------------------------------------------------------------------------------------


def _suffix(v: str) -> str | None:
    return None if v.startswith(".") and v.endswith(".json") else f"must start with '.' and end in .json, got {v!r}"


@dataclass(frozen=True)
class PointsConfig:
    """``[points]``: this mode's own config section."""

    suffix: str = field(default=".points.json", metadata=check(_suffix))  # photo.jpg -> photo.jpg.points.json
    min_points: int = field(default=2, metadata=between(2, 100))


@dataclass(frozen=True)
class Marks:
    """The points marked on one photo (one set: one candidate), in upright photo pixels."""

    width: int
    height: int
    sets: tuple[tuple[tuple[float, float], ...], ...]

    @property
    def boxes(self):
        return tuple(_box(points) for points in self.sets)

    def to_json(self) -> dict:
        return {"width": self.width, "height": self.height, "sets": [list(map(list, s)) for s in self.sets]}

    @classmethod
    def from_json(cls, d: dict) -> "Marks":
        return cls(d["width"], d["height"], tuple(tuple((float(x), float(y)) for x, y in s) for s in d["sets"]))


def _box(points) -> tuple[float, float, float, float]:
    pts = np.asarray(points, np.float64)
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    pad = 0.5 * max(x1 - x0, y1 - y0)
    return (float(x0 - pad), float(y0 - pad), float(x1 + pad), float(y1 + pad))


@dataclass(frozen=True)
class MarkedSubject:
    index: int
    points: tuple[tuple[float, float], ...]
    confidence: float = 1.0
    facing = None  # nothing to say of where a hand-marked subject looks

    @property
    def box(self):
        return _box(self.points)

    @property
    def pivot(self):
        return self.points[:2]


class PointsMode(Mode):
    name = "points"
    subject_word = "marking"
    default_size = "landscape"
    config_sections = {"points": PointsConfig}

    @property
    def settings(self) -> PointsConfig:
        return self.section("points")

    @property
    def detect_fp(self) -> str:
        return fingerprint(kind="marks", suffix=self.settings.suffix)

    def cached_detection(self, content_hash: str):
        stored = self.ctx.store.get_json(f"marks:{content_hash}:{self.detect_fp}")
        return None if stored is None else Marks.from_json(stored)

    def needs_detection(self, r: FrameResult) -> bool:
        return r.detection is None

    def detect(self, todo, progress, cancel) -> int:
        p = self.ctx

        def decode(r: FrameResult):  # a small decode: the upright size, and a broken photo fails here
            return open_photo(r.frame.path, max_side=64, max_pixels=p.config.scan.max_pixels)

        def flush(batch) -> None:
            for r, photo in batch:
                marks = r.frame.path.with_name(r.frame.path.name + self.settings.suffix)
                sets = (tuple(map(tuple, json.loads(marks.read_text())["points"])),) if marks.is_file() else ()
                r.detection = Marks(photo.width, photo.height, sets)
                p.store.put_json(f"marks:{r.frame.hash}:{self.detect_fp}", r.detection.to_json())
                r.status, r.error = FrameStatus.QUEUED, None
                progress(r)

        return p.decode_in_batches(todo, decode, 4, flush, progress, cancel)

    def select(self) -> None:
        for r in self.ctx.results.values():
            if r.detection is None or r.status is FrameStatus.FAILED:
                continue
            usable = [i for i, s in enumerate(r.detection.sets) if len(s) >= self.settings.min_points]
            if usable:
                r.subject, r.status, r.error = MarkedSubject(usable[0], r.detection.sets[usable[0]]), \
                    FrameStatus.QUEUED, None
            else:
                r.subject, r.transform, r.status = None, None, FrameStatus.NO_SUBJECT
                r.error = f"no {self.settings.suffix} file with {self.settings.min_points} points"


@pytest.fixture
def points_mode():
    register_mode(PointsMode)
    yield PointsMode
    unregister_mode(PointsMode.name)


# ---- the photos -----------------------------------------------------------------------------------

# Hand-marked points on the astronaut (her pixels): the eyes and the mouth's corners.
MARKS = np.array([[205, 102], [247, 104], [202, 139], [245, 142.0]])
WARPS = [(0, 1.0, 0, 0), (10, 0.9, 25, -15), (-12, 1.1, -30, 10), (6, 0.85, 35, 25), (-5, 1.15, -15, -20)]
START = datetime(2024, 3, 1, 9, 0, 0)


@pytest.fixture
def folder(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """Five marked astronauts two days apart, one photo with no marks, one broken file."""
    root = tmp_path / "marked"
    root.mkdir()
    truths = {}
    for i, (angle, scale, tx, ty) in enumerate(WARPS):
        m = similarity(angle, scale, tx + 64, ty + 60)
        path = save_with_date(warped_astronaut(m), root / f"day{i:02d}.jpg", START + timedelta(days=2 * i))
        path.with_name(path.name + ".points.json").write_text(json.dumps({"points": apply(m, MARKS).tolist()}))
        truths[path.name] = m
    save_with_date(warped_astronaut(similarity(0, 1.0, 64, 60)), root / "unmarked.jpg", START + timedelta(days=1))
    (root / "broken.jpg").write_bytes(b"not a photo")
    return root, truths


def landed(sidecar: dict, truths: dict) -> dict[str, np.ndarray]:
    """Where each rendered frame's final matrix puts its photo's marks."""
    out = {}
    for frame in sidecar["frames"]:
        name = Path(frame["path"]).name
        out[name] = apply(np.asarray(frame["transform"]), apply(truths[name], MARKS))
    return out


# ---- the tests ------------------------------------------------------------------------------------


def test_once_with_the_config_section_and_the_selection(points_mode, folder, tmp_path, capsys):
    root, truths = folder
    assert "points" in mode_names()
    config_file = tmp_path / "marks.toml"
    config_file.write_text('mode = "points"\n[points]\nmin_points = 3\n[select]\nevery = "week"\n')
    config = load_config(config_file)
    assert config.mode == "points" and config.section("points").min_points == 3
    out = tmp_path / "marked.mp4"
    code = main([str(root), "--once", "--json", "--config", str(config_file), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = {Path(r["path"]).name: r for r in map(json.loads, captured.out.splitlines())}
    assert rows["broken.jpg"]["status"] == "failed"
    assert rows["unmarked.jpg"]["status"] == "no_subject" and ".points.json" in rows["unmarked.jpg"]["error"]
    # two days apart from Friday 1 March: days 0 and 2 in one ISO week, 4, 6 and 8 in the next
    statuses = {n: rows[n]["status"] for n in truths}
    assert sorted(statuses.values()) == ["aligned", "aligned", "skipped", "skipped", "skipped"], statuses
    assert all(rows[n]["scores"] is None and rows[n]["confidence"] == 1.0 for n in truths)
    # the render: the mode's default size, and every kept frame's marks where the reference's are
    reader = imageio.get_reader(out)
    assert reader.get_data(0).shape == (1080, 1920, 3)  # "landscape": the mode's own default
    reader.close()
    points = landed(read_sidecar(sidecar_path(out)), truths)
    assert len(points) == 2
    first, *others = points.values()
    for p in others:
        assert np.abs(p - first).max() < 2.0  # output pixels

    # a mistyped key of the mode's own section is named, with the usual hint
    config_file.write_text('mode = "points"\n[points]\nmin_point = 3\n')
    assert main([str(root), "--once", "--config", str(config_file), "--out", str(out)]) == 2
    assert "points.min_point" in capsys.readouterr().err


def test_unknown_mode_is_refused_with_the_registered_choices(points_mode, tmp_path, capsys):
    from alignimation_tui.config import ConfigError

    config_file = tmp_path / "bad.toml"
    config_file.write_text('mode = "pets"\n')
    with pytest.raises(ConfigError, match="'face', 'body', 'points'"):
        load_config(config_file)


async def test_app_table_preview_nudge_pin_and_render(points_mode, folder, tmp_path):
    from alignimation_tui.tui.app import AlignimationApp
    from tests.tui.test_app import decisions, select, settled, until

    root, truths = folder
    out = tmp_path / "app.mp4"
    config = replace(Config(mode="points"), watch=WatchConfig(settle_seconds=0.2),
                     render=RenderConfig(output=str(out)), select=SelectConfig())
    app = AlignimationApp(root, config, watch=False)
    async with app.run_test(size=(150, 40)) as pilot:
        await until(pilot, lambda: settled(app) and len(app.rows) == 7, "the first pass")
        statuses = {r.name: r.status for r in app.rows.values()}
        assert statuses.pop("broken.jpg") == "failed" and statuses.pop("unmarked.jpg") == "no_subject"
        assert set(statuses.values()) == {"aligned"}
        assert app.state.reference == "day00.jpg"
        status_bar = str(app.query_one("#status-bar").render())
        assert "points" in status_bar

        await select(pilot, app, "day02.jpg")
        caption = app.query_one("#preview-caption")
        await until(pilot, lambda: str(caption.render()).startswith("[aligned] day02.jpg"), "the preview")
        await pilot.press("l")
        await until(pilot, lambda: "1 marking(s) detected" in str(caption.render()), "the marks view")
        await pilot.press("l")

        h = app._selected_hash()
        await pilot.press("shift+right", "shift+right")
        assert decisions(config, root).nudge(h) == Nudge(dx=0.1)
        await until(pilot, lambda: "✥ nudged" in str(app.table.get_cell(h, "flag")), "the flag mark")
        await until(pilot, lambda: "nudge shift +0.10" in str(caption.render()), "the nudged preview")

        await select(pilot, app, "day03.jpg")
        await pilot.press("p")
        await until(pilot, lambda: settled(app) and app.state.reference == "day03.jpg", "the pinned reference")

        await pilot.press("w")
        await until(pilot, lambda: app.render_note.startswith(("wrote", "render failed")), "the render")
        assert app.render_note == f"wrote {out} (5 frames)"
        await pilot.press("q")

    points = landed(read_sidecar(sidecar_path(out)), truths)
    day02 = points.pop("day02.jpg")
    first, *others = points.values()
    for p in others:
        assert np.abs(p - first).max() < 2.0
    # the nudge: 0.1 of the distance between the first two marks (the pivot), to the right
    unit = np.linalg.norm(first[1] - first[0])
    assert day02 - first == pytest.approx(np.tile([0.1 * unit, 0.0], (4, 1)), abs=2.0)


def test_the_protocols_describe_the_test_mode():
    marks = Marks(640, 480, (((1.0, 2.0), (3.0, 4.0)),))
    assert isinstance(marks, Detection)
    assert isinstance(MarkedSubject(0, marks.sets[0]), Subject)
