"""A render whose file already holds exactly what it would write is not encoded again (a cron job
running --once beside the app, a second `w`): the file keeps its inode and bytes. Anything that
changes the pictures or the encoding renders again; a changed verdict or path rewrites the sidecar."""
import json
import os
from dataclasses import replace

import numpy as np
import pytest

from alignimation_tui.render import RenderSettings, write_animation
from alignimation_tui.render.frame import CaptionStyle
from tests.unit.test_render import CANVAS, WARPS, make_items


def stamp(path):
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


@pytest.fixture
def rendered(tmp_path):
    items = make_items(tmp_path, WARPS[:3])
    out = tmp_path / "t.mp4"
    first = write_animation(items, CANVAS, out, RenderSettings())
    assert not first.unchanged
    return items, out


def test_the_same_render_again_writes_nothing(rendered):
    items, out = rendered
    before, sidecar_before = stamp(out), stamp(out.with_name("t.mp4.json"))
    seen = []
    again = write_animation(items, CANVAS, out, RenderSettings(), progress=seen.append)
    assert again.unchanged and again.photos == 3 and again.bytes == out.stat().st_size
    assert again.frames == 3 and again.sidecar == out.with_name("t.mp4.json")
    assert stamp(out) == before and stamp(out.with_name("t.mp4.json")) == sidecar_before
    assert seen == [3]
    data = json.loads(out.with_name("t.mp4.json").read_text())
    assert data["bytes"] == out.stat().st_size and len(data["render_key"]) == 64


@pytest.mark.parametrize("change", ["fps", "quality", "preset", "caption", "fill", "crossfade", "matrix", "photo",
                                    "fewer", "colour"])
def test_anything_that_changes_the_file_renders_again(rendered, change):
    from alignimation_tui.colour import ColourGain

    items, out = rendered
    settings = RenderSettings()
    if change == "fps":
        settings = replace(settings, fps=5.0)
    elif change == "quality":
        settings = replace(settings, quality=30)
    elif change == "preset":
        settings = replace(settings, preset="ultrafast")
    elif change == "caption":
        settings = replace(settings, caption=CaptionStyle("%Y"))
    elif change == "fill":
        settings = replace(settings, fill="white")
    elif change == "crossfade":
        settings = replace(settings, crossfade=1)
    elif change == "matrix":  # a nudge, a new reference, other framing
        items = [replace(items[0], matrix=items[0].matrix @ np.diag([1.01, 1.01, 1.0])), *items[1:]]
    elif change == "photo":  # re-exported under its name: another content hash
        items = [replace(items[0], hash="another"), *items[1:]]
    elif change == "fewer":
        items = items[:2]
    elif change == "colour":
        items = [replace(items[0], colour=ColourGain((1.05, 1.0, 0.95))), *items[1:]]
    before = stamp(out)
    again = write_animation(items, CANVAS, out, settings)
    assert not again.unchanged
    assert os.stat(out).st_ino != before[0]


@pytest.mark.parametrize("damage", ["truncated", "replaced", "same size", "deleted", "sidecar deleted",
                                    "sidecar unreadable"])
def test_a_file_changed_since_renders_again(rendered, damage):
    items, out = rendered
    sidecar = out.with_name("t.mp4.json")
    good = out.read_bytes()
    if damage == "truncated":
        out.write_bytes(good[: len(good) // 2])
    elif damage == "replaced":
        out.write_bytes(b"x" * len(good) + b"y")
    elif damage == "same size":  # another file of the same size, written since
        st = out.stat()
        out.write_bytes(b"x" * len(good))
        os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    elif damage == "deleted":
        out.unlink()
    elif damage == "sidecar deleted":
        sidecar.unlink()
    else:
        sidecar.write_text("{not json")
    again = write_animation(items, CANVAS, out, RenderSettings())
    assert not again.unchanged
    assert out.stat().st_size == again.bytes and json.loads(sidecar.read_text())["bytes"] == again.bytes


def test_a_changed_verdict_rewrites_only_the_sidecar(rendered):
    items, out = rendered
    before = stamp(out)
    items = [replace(items[1], info={"verdict": "accepted", "status": "aligned"}) if k == 1 else i
             for k, i in enumerate(items)]
    again = write_animation(items, CANVAS, out, RenderSettings())
    assert again.unchanged and stamp(out) == before
    frames = json.loads(out.with_name("t.mp4.json").read_text())["frames"]
    assert [f["verdict"] for f in frames] == ["auto", "accepted", "auto"]


@pytest.mark.parametrize("edit", ["a frame less", "a frame more", "a frame changed", "a head field changed"])
def test_a_sidecar_edited_since_is_written_again_whole(rendered, edit):
    """The key, size and time still match (the file is the render), but the sidecar's other fields
    do not say what this render would: it is written again as the render writes it, the file kept."""
    items, out = rendered
    path = out.with_name("t.mp4.json")
    fresh = json.loads(path.read_text())
    before = stamp(out)
    edited = json.loads(path.read_text())
    if edit == "a frame less":
        del edited["frames"][-1]
    elif edit == "a frame more":
        edited["frames"].append(dict(edited["frames"][-1], index=4))
    elif edit == "a frame changed":
        edited["frames"][0]["transform"][0][2] += 1.0
    else:
        edited["fps"] = 99
    path.write_text(json.dumps(edited, indent=1))
    again = write_animation(items, CANVAS, out, RenderSettings())
    assert again.unchanged and stamp(out) == before
    assert json.loads(path.read_text()) == fresh


def test_frames_folder_without_sidecar_or_without_hashes_always_render(tmp_path, rendered):
    items, out = rendered
    assert not write_animation(items, CANVAS, out, RenderSettings(), frames_dir=tmp_path / "frames").unchanged
    assert write_animation(items, CANVAS, out, RenderSettings()).unchanged
    assert not write_animation([replace(i, hash="") for i in items], CANVAS, out, RenderSettings()).unchanged
    plain = tmp_path / "plain.mp4"
    write_animation(items, CANVAS, plain, RenderSettings(sidecar=False))
    assert not write_animation(items, CANVAS, plain, RenderSettings(sidecar=False)).unchanged


def test_gif_up_to_date_counts_its_frames(tmp_path):
    items = make_items(tmp_path, WARPS[:3])
    out = tmp_path / "t.gif"
    first = write_animation(items, CANVAS, out, RenderSettings(crossfade=1))
    again = write_animation(items, CANVAS, out, RenderSettings(crossfade=1))
    assert again.unchanged and again.frames == first.frames == 5
