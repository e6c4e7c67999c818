"""The folder record (``folder_record``): a cached folder's next open is rebuilt from one stored
record, not photo by photo and not by choosing and registering again, and only when every photo,
setting, decision and the code are as they were; otherwise the usual scan runs, whatever is wrong
with the record. Real photos, the real store, the app's own steps (``Driver.prepare``, and the
worker's first act, which writes the record); detections from ``tests.tui.recorded``. Speed is
measured in bench/bench_library.py."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from dataclasses import fields, replace

import numpy as np
import pytest

from alignimation_tui import folder_record
from alignimation_tui.config import Config, FacingConfig
from alignimation_tui.domain import FrameResult, Verdict
from alignimation_tui.pipeline import Pipeline
from alignimation_tui.store import Decisions, Store
from alignimation_tui.tui.driver import Driver
from tests.tui.recorded import recorded_pipeline
from tests.tui.test_app import astronaut_library, astronaut_photo

N = 12
ROOT = Path(__file__).resolve().parents[2]


class Screen:
    """What the driver posts to (nothing is shown here)."""

    def post_message(self, message) -> None:
        pass


@pytest.fixture
def library(tmp_path):
    return astronaut_library(tmp_path / "library", N, seed=7)


@pytest.fixture
def config(tmp_path):
    return replace(Config(), mode="face", store=replace(Config().store, cache_dir=str(tmp_path / "cache"),
                                                         data_dir=str(tmp_path / "data")))


class Passes:
    """Counts the passes that choose and register (``Pipeline.process``)."""

    def __init__(self, monkeypatch):
        self.count = 0
        self.before_screen = 0
        real = Pipeline.process

        def counted(pipeline, *args, **kwargs):
            self.count += 1
            return real(pipeline, *args, **kwargs)

        monkeypatch.setattr(Pipeline, "process", counted)


def open_folder(folder, config, passes: "Passes | None" = None):
    """The app's open before its screen (``Driver.prepare``) and its worker's first act (the record
    of a final state, or the state rebuilt from the record); the pipeline, its driver and whether
    anything needs detecting. ``passes``: counting, stopped once the screen would be up."""
    pipeline = recorded_pipeline(folder, config)
    driver = Driver(Screen(), pipeline)
    detecting = driver.prepare()
    if passes is not None:
        passes.before_screen = passes.count
    driver.screen_drawn.set()
    if driver._checked is not None:
        assert driver._rebuild()
    elif driver._prepared_final:
        driver._keep_record()
    return pipeline, driver, detecting


def detect_all(folder, config) -> None:
    pipeline = recorded_pipeline(folder, config)
    pipeline.scan()
    pipeline.process()
    pipeline.close()


def state(pipeline: Pipeline, driver: Driver) -> dict:
    """Everything the front ends read of an open folder: every result's fields (``extra`` aside:
    what is measured again from the rest), the reference, the framing, the rows and the views."""
    results = {h: {f.name: getattr(r, f.name) for f in fields(FrameResult) if f.name != "extra"}
               for h, r in pipeline.results.items()}
    return {"order": list(pipeline.results), "results": results,
            "reference": (pipeline.reference.hash, pipeline.reference.landmarks.tolist(), pipeline.reference.canvas,
                          pipeline.reference.scale),
            "framing": (pipeline.framing.size, np.asarray(pipeline.framing.matrix).tolist(), pipeline.framing.anchor,
                        pipeline.framing.unit, pipeline.framing.style),
            "rows": dict(driver._posted), "views": dict(driver._posted_views),
            "transform keys": {h: r.extra.get("transform_key") for h, r in pipeline.results.items()},
            "notices": [n for n in pipeline.notices]}


@pytest.fixture
def recorded(library, config):
    """The library detected, then opened once (that open writes the record); its state."""
    detect_all(library, config)
    pipeline, driver, detecting = open_folder(library, config)
    assert not detecting and pipeline.store.get_json(folder_record.record_key(pipeline)) is not None
    made = state(pipeline, driver)
    pipeline.close()
    return made


def reopen(folder, config, monkeypatch) -> tuple[dict, bool, Pipeline]:
    """The state of the next open, whether it came from the record (no pass was made before the
    screen: its rows were the record's), and the pipeline (closed)."""
    passes = Passes(monkeypatch)
    pipeline, driver, _ = open_folder(folder, config, passes)
    try:
        return state(pipeline, driver), passes.before_screen == 0, pipeline
    finally:
        pipeline.close()
        monkeypatch.undo()


def test_a_folder_reopens_from_its_record_as_the_scan_made_it(library, config, recorded, monkeypatch):
    again, from_record, pipeline = reopen(library, config, monkeypatch)
    assert from_record, "nothing chosen or registered again"
    assert again == recorded  # every value, the rows and the views as the pass made them
    assert pipeline.unscanned == [] and len(again["rows"]) == N


def test_a_restored_state_is_what_a_decision_then_works_on(library, config, recorded, monkeypatch):
    """After an open from the record, the worker's next pass (a verdict here) finds what a pass
    over the scanned folder finds: the same results, transforms read from the store, none computed."""
    pipeline, driver, _ = open_folder(library, config)
    target = pipeline.results[recorded["order"][3]]
    pipeline.apply_verdict(target.frame.hash, Verdict.REJECTED)
    pipeline.process([], compute=False)  # compute=False: every transform it needs is stored
    restored = {h: (r.status, r.subject, r.transform) for h, r in pipeline.results.items()}
    pipeline.close()
    fresh = recorded_pipeline(library, config)
    fresh.scan()
    fresh.apply_verdict(target.frame.hash, Verdict.REJECTED)
    fresh.process([], compute=False)
    assert restored == {h: (r.status, r.subject, r.transform) for h, r in fresh.results.items()}
    assert not any(r.error == "no stored transform" for r in fresh.results.values())
    fresh.close()


def test_a_photo_edited_under_its_name_is_read_again(library, config, recorded, monkeypatch):
    edited = library / "day004.jpg"
    before = os.stat(edited)
    astronaut_photo(edited, 40, (20, 1.2, 30, -30))  # new content under the same name
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))  # ...even with its old time
    again, from_record, pipeline = reopen(library, config, monkeypatch)
    assert not from_record
    assert [path.name for path in pipeline.unscanned] == ["day004.jpg"], "read again, by the worker"
    assert "day004.jpg" not in {r.name for r in again["rows"].values()}, "no row of the old content"


def test_a_photo_moved_over_another_of_the_same_size_and_time_is_read_again(library, config, recorded, monkeypatch):
    """Same name, size and modification time, other content: the inode and change time say so."""
    target, other = library / "day002.jpg", library / "day003.jpg"
    st = os.stat(target)
    copy = library.parent / "copy.jpg"
    shutil.copyfile(other, copy)
    with open(copy, "r+b") as fh:  # the size of the photo it replaces
        fh.truncate(st.st_size)
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(copy, target)
    again, from_record, pipeline = reopen(library, config, monkeypatch)
    assert not from_record and [path.name for path in pipeline.unscanned] == ["day002.jpg"]


def test_a_removed_photo_is_not_taken_from_the_record(library, config, recorded, monkeypatch):
    (library / "day005.jpg").unlink()
    again, from_record, _ = reopen(library, config, monkeypatch)
    assert not from_record and len(again["rows"]) == N - 1
    # ...and that open's record holds for the folder as it is now
    again, from_record, _ = reopen(library, config, monkeypatch)
    assert from_record and len(again["rows"]) == N - 1


def test_photos_added_and_detected_since_are_read_beside_the_record(library, config, recorded, monkeypatch):
    """A week's new photos, detected by another run since the record (a cron job's ``--once``),
    leave the record standing: the screen gets its rows, the added photos are the worker's to read
    from the store, and then the state is the one the scan makes of the folder as it is now."""
    astronaut_photo(library / "day099.jpg", 50, (2, 1.0, 5, 5))
    astronaut_photo(library / "a-first.jpg", 51, (-3, 0.95, -5, 8))  # before the others by name
    detect_all(library, config)
    passes = Passes(monkeypatch)
    pipeline, driver, detecting = open_folder(library, config, passes)
    try:
        assert passes.before_screen == 0 and len(driver.initial[0]) == N, "the record's rows before the screen"
        # the worker's first act: the state rebuilt from the record, the added photos read in the
        # same pass (``open_folder`` made its first part, ``Driver._rebuild``), then a record kept
        assert detecting and sorted(p.name for p in driver._renewing[1]) == ["a-first.jpg", "day099.jpg"]
        assert pipeline.unscanned == [] and len(pipeline.results) == len(driver._posted) == N + 2
        driver._first_pass()
        added = state(pipeline, driver)
    finally:
        pipeline.close()
        monkeypatch.undo()
    assert len(added["rows"]) == N + 2 and all(r.status == "aligned" for r in added["rows"].values())
    again, from_record, pipeline = reopen(library, config, monkeypatch)
    assert from_record and pipeline.unscanned == [] and again == added, "the next open: the new record, whole"
    monkeypatch.setattr(folder_record, "check", lambda *args, **kwargs: None)  # the same folder, scanned
    scanned, from_record, _ = reopen(library, config, monkeypatch)
    assert not from_record and scanned == added


def test_a_photo_added_since_and_not_detected_is_detected_beside_the_record(library, config, recorded,
                                                                             monkeypatch):
    astronaut_photo(library / "day099.jpg", 50, (2, 1.0, 5, 5))
    passes = Passes(monkeypatch)
    pipeline, driver, detecting = open_folder(library, config, passes)
    try:
        assert passes.before_screen == 0 and detecting and [p.name for p in driver._renewing[1]] == ["day099.jpg"]
        driver._first_pass()
        assert len(driver._posted) == N + 1 and all(r.status == "aligned" for r in driver._posted.values())
    finally:
        pipeline.close()
        monkeypatch.undo()
    again, from_record, pipeline = reopen(library, config, monkeypatch)
    assert from_record and pipeline.unscanned == [] and len(again["rows"]) == N + 1


def test_a_decision_made_before_the_record_is_renewed_keeps_it_from_being_written(library, config, recorded,
                                                                                 monkeypatch):
    """A key pressed while the worker reads the added photos (its verdict stored, not yet in the
    state): no record of a state without it; the next open scans and sees the verdict."""
    astronaut_photo(library / "day099.jpg", 50, (2, 1.0, 5, 5))
    pipeline, driver, _ = open_folder(library, config)
    try:
        h = next(h for h, r in pipeline.results.items() if r.frame.name == "day004.jpg")
        pipeline.store.decisions.set_verdict(h, Verdict.REJECTED)  # as a key press stores it
        driver._first_pass()
    finally:
        pipeline.close()
    again, from_record, pipeline = reopen(library, config, monkeypatch)
    assert not from_record and again["results"][h]["verdict"] is Verdict.REJECTED


def test_a_link_added_since_is_not_taken_from_the_record(library, config, recorded, monkeypatch):
    """A link is resolved and checked by the scan (it may point outside the folder, or nowhere)."""
    os.symlink(library / "day003.jpg", library / "zz-link.jpg")
    _, from_record, _ = reopen(library, config, monkeypatch)
    assert not from_record


def test_a_change_of_settings_or_code_is_not_taken_from_the_record(library, config, recorded, monkeypatch):
    stricter = replace(config, facing=FacingConfig(max_yaw_deg=1.0))
    again, from_record, _ = reopen(library, stricter, monkeypatch)
    assert not from_record
    monkeypatch.setattr(folder_record, "code_digest", lambda: "another version")
    passes = Passes(monkeypatch)
    pipeline, _, _ = open_folder(library, stricter, passes)
    pipeline.close()
    assert passes.before_screen == 1, "the scan's pass, not the record"


def test_a_decision_made_elsewhere_is_not_taken_from_the_record(library, config, recorded, monkeypatch):
    """A verdict or a pin another process wrote to the decisions file since the record."""
    h = recorded["order"][2]
    other = Decisions(config_data(config) / "decisions.json")
    other.set_verdict(h, Verdict.REJECTED)
    again, from_record, _ = reopen(library, config, monkeypatch)
    assert not from_record and again["rows"][h].verdict == "rejected"
    again, from_record, _ = reopen(library, config, monkeypatch)
    assert from_record and again["rows"][h].verdict == "rejected"
    other.pin_reference(recorded["order"][5])
    again, from_record, pipeline = reopen(library, config, monkeypatch)
    assert not from_record and pipeline.reference.hash == recorded["order"][5]


def config_data(config) -> Path:
    return Path(config.store.data_dir)


def test_photos_a_plug_in_decodes_need_it_installed(library, config, recorded, monkeypatch):
    """A record of photos a plug-in decodes (HEIC) holds only while it is installed: without it they
    are failed rows (the scan says why), not the recorded ones. Photos Pillow reads need none."""
    from alignimation_tui import scan

    key = record_key(library, config)
    store = Store(library, config.store.cache_dir, config.store.data_dir)
    record = store.get_json(key)
    assert record["plugins"] == []
    record["plugins"] = [".heic"]  # as a folder of HEIC photos records it
    store.put_json(key, record)
    store.close()
    monkeypatch.setattr(folder_record, "readable_suffixes", lambda: scan.PHOTO_SUFFIXES | {".heic"})
    assert checked(library, config), "installed"
    monkeypatch.setattr(folder_record, "readable_suffixes", lambda: set(scan.PHOTO_SUFFIXES))
    assert not checked(library, config), "not installed"


def checked(folder, config) -> bool:
    """Whether the app's open takes the folder's record (``Driver.prepare``)."""
    pipeline = recorded_pipeline(folder, config)
    driver = Driver(Screen(), pipeline)
    driver.prepare()
    pipeline.close()
    return driver._checked is not None


def test_the_record_never_touches_the_decisions_file(library, config, monkeypatch):
    detect_all(library, config)
    Decisions(config_data(config) / "decisions.json").set_verdict("someone", Verdict.ACCEPTED)
    path = config_data(config) / "decisions.json"
    before = (path.read_bytes(), os.stat(path).st_mtime_ns, os.stat(path).st_ino)
    for _ in range(2):
        reopen(library, config, monkeypatch)
    assert (path.read_bytes(), os.stat(path).st_mtime_ns, os.stat(path).st_ino) == before


@pytest.mark.parametrize("damage", ["not json", "wrong types", "short numbers", "faces out of range", "pickled"])
def test_a_damaged_record_is_ignored(library, config, recorded, monkeypatch, damage):
    key = record_key(library, config)
    store = Store(library, config.store.cache_dir, config.store.data_dir)
    record = store.get_json(key)
    if damage == "not json":
        store.cache.set(key, b"\x00{not json")
    elif damage == "pickled":
        store.cache.set(key, {"format": 1})  # diskcache pickles a dict: never unpickled
    else:
        if damage == "wrong types":
            record["photos"][0][1] = "big"
            record["photos"][1][20] = {"face": "?"}
        elif damage == "short numbers":
            record["numbers"] = record["numbers"][:40]
        else:
            record["photos"][0][20] = [0, 9, False]
        store.put_json(key, record)
    store.close()
    again, from_record, _ = reopen(library, config, monkeypatch)
    assert not from_record
    assert again == recorded, "the scan's state, as if there were no record"


def test_two_processes_writing_the_record_leave_a_whole_one(library, config, recorded, monkeypatch, tmp_path):
    """Records written side by side by two other processes (each write one transaction): every
    open in between reads a whole record, or none; never a mixture, never an error."""
    key = record_key(library, config)
    store = Store(library, config.store.cache_dir, config.store.data_dir)
    (tmp_path / "record.json").write_text(json.dumps(store.get_json(key)))
    store.close()
    writer = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from alignimation_tui.store import Store\n"
        "folder, cache, data, key, record = sys.argv[1:]\n"
        "store = Store(Path(folder), cache, data)\n"
        "value = json.loads(Path(record).read_text())\n"
        "for k in range(30):\n"
        "    store.put_json(key, value)\n"
        "    store.put_json(f'filler:{k}', {'pad': 'x' * 1000})\n"
        "store.close()\n")
    args = [str(library), config.store.cache_dir, config.store.data_dir, key, str(tmp_path / "record.json")]
    writers = [subprocess.Popen([sys.executable, "-c", writer, *args], cwd=ROOT) for _ in range(2)]
    try:
        while any(w.poll() is None for w in writers):
            again, _, _ = reopen(library, config, monkeypatch)
            assert again == recorded
    finally:
        codes = [w.wait(120) for w in writers]
    assert codes == [0, 0]
    again, from_record, _ = reopen(library, config, monkeypatch)
    assert from_record and again == recorded, "what they left is a whole record"


def record_key(folder, config) -> str:
    pipeline = recorded_pipeline(folder, config)
    try:
        return folder_record.record_key(pipeline)
    finally:
        pipeline.close()


def test_two_versions_or_settings_keep_a_record_each(library, config, recorded, monkeypatch):
    """Two configs (or versions) on one folder, taking turns, each keep their own record instead of
    writing over the other's; only the newest few are kept."""
    other = replace(config, facing=FacingConfig(max_yaw_deg=20.0))
    _, from_record, _ = reopen(library, other, monkeypatch)
    assert not from_record  # its first open: the scan, then its record
    for settings in (config, other, config):
        _, from_record, _ = reopen(library, settings, monkeypatch)
        assert from_record
    for yaw in (21.0, 22.0, 23.0):  # three more settings: the oldest records go
        reopen(library, replace(config, facing=FacingConfig(max_yaw_deg=yaw)), monkeypatch)
    store = Store(library, config.store.cache_dir, config.store.data_dir)
    kept = [key for (key,) in store.cache._sql("SELECT key FROM Cache").fetchall()
            if str(key).startswith(folder_record.KEY)]
    store.close()
    assert len(kept) == folder_record.RECORDS_KEPT


def test_every_field_of_a_result_is_kept():
    """A field added to ``FrameResult`` must be kept by the record too (until it is, no record is
    written or read: ``folder_record._recordable``)."""
    assert tuple(f.name for f in fields(FrameResult)) == folder_record.RESULT_FIELDS



def test_an_app_closing_before_the_record_is_rebuilt_leaves_the_store_as_it_was(library, config, recorded,
                                                                                monkeypatch):
    """Quit before the first draw, with photos added since the record: the worker neither rebuilds
    the state nor reads the added photos into an empty one (nothing is chosen or registered among
    them alone); the store is as it was, and the next open is the record's."""
    astronaut_photo(library / "day099.jpg", 50, (2, 1.0, 5, 5))
    pipeline = recorded_pipeline(library, config)
    driver = Driver(Screen(), pipeline)
    try:
        assert driver.prepare() and driver._checked is not None
        auto = pipeline.store.get_json(pipeline.mode.auto_reference_key)
        record = pipeline.store.get_json(folder_record.record_key(pipeline))
        driver.cancel.set()  # the app quits before its first draw
        driver._first_pass()
        assert pipeline.results == {} and pipeline.unscanned and len(driver._posted) == N, "nothing read"
        assert pipeline.store.get_json(pipeline.mode.auto_reference_key) == auto
        assert pipeline.store.get_json(folder_record.record_key(pipeline)) == record
    finally:
        pipeline.close()
    again, from_record, _ = reopen(library, config, monkeypatch)
    assert from_record and len(again["rows"]) == N + 1
