"""The folder changes under a run: a photo overwritten under the same name, deleted (the reference
too), deleted while the render reads it; and a decisions file holding what this version does not
understand. One row per path, renders go on, nothing crashes. Real MTCNN, real files, real ffmpeg."""
from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from alignimation_tui.cli import main
from alignimation_tui.config import Config
from alignimation_tui.domain import FrameStatus
from alignimation_tui.pipeline import Pipeline
from alignimation_tui.render.sidecar import read_sidecar
from alignimation_tui.scan import content_hash
from alignimation_tui.store import Store
from tests.conftest import save_with_date, similarity, warped_astronaut
from tests.e2e.test_crash import N, folder, template  # noqa: F401 (fixtures)
from tests.e2e.test_faults import no_partials, once
from tests.e2e.test_one_owner import readable_frames, slow_config, staged, wait_for


def processed(folder: Path) -> Pipeline:
    p = Pipeline(folder, Config())
    p.scan()
    p.process()
    return p


def new_content(path: Path, like: Path | None = None) -> None:
    """Another photo (turned, smaller, moved) written over ``path``. With ``like``, padded to that
    file's size and given its modification time, as a re-export or ``cp -p`` may leave it."""
    img = warped_astronaut(similarity(25, 0.7, 150, 40))
    save_with_date(img, path, datetime(2023, 1, 5, 12))
    if like is not None:
        size, st = path.stat().st_size, like
        assert size <= st["size"]
        with open(path, "ab") as fh:  # JPEG readers ignore what follows the end marker
            fh.write(b"\0" * (st["size"] - size))
        os.utime(path, ns=(st["mtime_ns"], st["mtime_ns"]))


def rows_at(p: Pipeline, path: Path) -> list:
    return [r for r in p.results.values() if r.frame.path == path]


@pytest.mark.parametrize("how", ["overwrite", "mv over it", "same size and mtime"])
def test_a_photo_changed_under_the_same_name_is_a_new_photo(folder, tmp_path, how):
    p = processed(folder)
    path = folder / "day05.jpg"
    old = rows_at(p, path)[0]
    old_matrix = np.asarray(old.transform.matrix)
    if how == "overwrite":
        new_content(path)
    elif how == "mv over it":
        other = tmp_path / "export.jpg"
        new_content(other)
        os.replace(other, path)
    else:  # bigger than the new picture: the old photo padded
        st = path.stat()
        with open(path, "ab") as fh:
            fh.write(b"\0" * 200_000)
        st = path.stat()
        p.path_changed(path)  # the padded old photo: same picture, new bytes
        new_content(path, like={"size": st.st_size, "mtime_ns": st.st_mtime_ns})
        old = rows_at(p, path)[0]
    change = p.path_changed(path)
    assert change.removed == [old.frame.hash] and not change.reference_lost
    assert change.added is not None and change.added.frame.hash == content_hash(path)
    assert change.added.transform is None and p.needs_detection(change.added), "detected like a new photo"
    assert rows_at(p, path) == [change.added], "one row per path"
    p.process([change.added])
    new = rows_at(p, path)[0]
    assert new.status is FrameStatus.ALIGNED
    assert not np.allclose(np.asarray(new.transform.matrix), old_matrix, atol=1.0), "its own transform"
    assert [r.frame.path.name for r in p.kept()].count("day05.jpg") == 1
    out = tmp_path / "o.gif"
    p.render(out)
    frames = read_sidecar(out.with_name("o.gif.json"))["frames"]
    assert [f["hash"] for f in frames if f["path"].endswith("day05.jpg")] == [new.frame.hash]
    p.close()


def test_a_photo_changed_with_the_same_size_and_mtime_is_read_again_by_once(folder, tmp_path, capsys):
    """A re-export that keeps the size and the modification time: the next --once sees the new
    content (not the old photo's hash, and so not its transform)."""
    out = tmp_path / "o.gif"
    assert main([str(folder), "--once", "--out", str(out)]) == 0
    path = folder / "day05.jpg"
    with open(path, "ab") as fh:
        fh.write(b"\0" * 200_000)
    assert main([str(folder), "--once", "--out", str(out)]) == 0
    st = path.stat()
    new_content(path, like={"size": st.st_size, "mtime_ns": st.st_mtime_ns})
    capsys.readouterr()
    assert main([str(folder), "--once", "--json", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    mine = [r for r in rows if r["path"].endswith("day05.jpg")]
    assert [r["hash"] for r in mine] == [content_hash(path)]
    assert len(rows) == N


def test_one_row_per_path_when_the_folder_was_opened_by_a_relative_path(folder, monkeypatch):
    """The app opened as ``alignimation-tui photos``: the watcher reports ``/abs/photos/day05.jpg``.
    Overwritten in place (``cp new.jpg day05.jpg``), the photo still has one row, and its old
    result (and transform) is gone."""
    monkeypatch.chdir(folder.parent)
    p = Pipeline(Path(folder.name), Config())
    p.scan()
    p.process()
    path = folder / "day05.jpg"  # absolute, as the watcher says it
    old = next(h for h, r in p.results.items() if r.frame.path.name == "day05.jpg")
    new_content(path)
    r = p.add_path(path)  # what the driver does today for the watcher's event
    assert old not in p.results
    assert [x.frame.hash for x in p.results.values() if x.frame.path.name == "day05.jpg"] == [r.frame.hash]
    p.process([r])
    assert len(p.kept()) == N and len({x.frame.path.name for x in p.kept()}) == N
    p.path_removed(folder / "day06.jpg")
    assert len(p.results) == N - 1
    p.close()


def test_a_deleted_reference_is_replaced_and_said(folder, tmp_path):
    p = processed(folder)
    ref = p.reference.hash
    ref_path = p.results[ref].frame.path
    ref_path.unlink()
    change = p.path_removed(ref_path)
    assert change.removed == [ref] and change.reference_lost and change.added is None
    assert ref not in p.results and p.kept() == [], "no frame is used with a transform onto a gone reference"
    p.register()
    assert p.reference is not None and p.reference.hash != ref
    said = [n for n in p.notices if n.startswith(f"the reference photo {ref_path.name} was deleted")]
    assert said and p.results[p.reference.hash].frame.path.name in said[0]
    assert len(p.kept()) == N - 1
    out = tmp_path / "o.gif"
    assert p.render(out) == N - 1
    p.close()


def test_a_deleted_photo_leaves_the_results_whenever_it_is_deleted(folder):
    p = Pipeline(folder, Config())
    p.scan()
    queued = folder / "day03.jpg"  # before detection
    queued.unlink()
    assert p.path_removed(queued).removed
    p.process()
    aligned = folder / "day07.jpg"
    aligned.unlink()
    assert p.path_changed(aligned).removed, "a change event for a file that is gone is a removal"
    assert len(p.results) == len(p.kept()) == N - 2
    assert p.path_removed(aligned).removed == [], "said twice: nothing more to do"
    p.close()


@pytest.mark.parametrize("render_only", [False, True])
def test_a_photo_deleted_while_the_render_reads_it_is_left_out(folder, tmp_path, render_only):
    out = tmp_path / "week.mp4"
    if render_only:
        assert main([str(folder), "--once", "--out", str(tmp_path / "first.gif")]) == 0
    args = ("--render-only",) if render_only else ()
    proc = once(folder, *args, "--config", str(slow_config(tmp_path)), "--out", str(out))
    last = folder / f"day{N - 1:02d}.jpg"  # the last by date: read last, long after the render starts
    wait_for(lambda: staged(out) or proc.poll() is not None, "the render to start", 300)
    last.unlink()
    proc.wait(timeout=300)
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    assert f"note: {last.name} left out of this render" in " ".join(err.split()), err
    assert readable_frames(out) == (N - 2) * 24 + N - 1
    frames = json.loads(out.with_name("week.mp4.json").read_text())["frames"]
    assert len(frames) == N - 1 and not any(f["path"].endswith(last.name) for f in frames)
    no_partials(tmp_path)


def test_once_with_decisions_it_does_not_understand(folder, tmp_path, capsys):
    out = tmp_path / "o.gif"
    assert main([str(folder), "--once", "--out", str(out)]) == 0
    store = Store(folder)
    path = store.decisions.path
    store.close()
    odd = {"verdicts": {content_hash(folder / "day01.jpg"): "REJECTED", content_hash(folder / "day02.jpg"): True,
                        content_hash(folder / "day03.jpg"): "rejected"},
           "reference": ["x"], "nudges": {"abc": "not a nudge"}, "added_by_a_newer_version": 1}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(odd))
    capsys.readouterr()
    assert main([str(folder), "--once", "--json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    said = " ".join(captured.err.split())
    assert "kept but ignored what this version does not understand" in said
    assert "reference" in said and "added_by_a_newer_version" in said
    verdicts = {r["path"].rsplit("/", 1)[1]: r["verdict"] for r in map(json.loads, captured.out.splitlines())}
    assert verdicts["day03.jpg"] == "rejected" and verdicts["day01.jpg"] == verdicts["day02.jpg"] == "auto"
    assert json.loads(path.read_text()) == odd, "the file is as it was"
