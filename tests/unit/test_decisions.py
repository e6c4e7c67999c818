"""One writer of the decisions: two instances (two apps, an app and a script) never undo each
other, what this version does not understand is kept, and no value in the file crashes anything."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignimation_tui.domain import Verdict
from alignimation_tui.folders import FolderError
from alignimation_tui.nudge import Nudge
from alignimation_tui.store import Decisions

REPO = Path(__file__).resolve().parents[2]


def test_two_instances_never_undo_each_other(tmp_path):
    path = tmp_path / "decisions.json"
    first, second = Decisions(path), Decisions(path)  # two apps open on one folder
    first.set_verdict("h1", Verdict.REJECTED)
    second.set_verdict("h2", Verdict.ACCEPTED)
    second.set_nudge("h3", Nudge(dx=0.1))
    first.pin_reference("h2")
    on_disk = json.loads(path.read_text())
    assert on_disk["verdicts"] == {"h1": "rejected", "h2": "accepted"}
    assert set(on_disk["nudges"]) == {"h3"} and on_disk["reference"] == "h2"
    again = Decisions(path)
    assert again.verdict("h1") is Verdict.REJECTED and again.verdict("h2") is Verdict.ACCEPTED
    # this instance's own view follows the file it merged with
    assert first.verdict("h2") is Verdict.ACCEPTED and first.nudge("h3") == Nudge(dx=0.1)


def test_changes_by_another_process_are_noticed(tmp_path):
    path = tmp_path / "decisions.json"
    mine, theirs = Decisions(path), Decisions(path)
    mine.set_verdict("keep", Verdict.ACCEPTED)
    assert not mine.changed_on_disk()
    assert theirs.changed_on_disk()
    changes = theirs.reload()
    assert changes and changes.verdicts == {"keep": Verdict.ACCEPTED} and not changes.reference_changed
    assert not theirs.changed_on_disk() and not theirs.reload()
    mine.set_verdict("keep", Verdict.AUTO)
    mine.pin_reference("ref")
    mine.set_nudge("n", Nudge(angle_deg=2.0))
    changes = theirs.reload()
    assert changes.verdicts == {"keep": Verdict.AUTO}
    assert changes.reference_changed and changes.reference == "ref" == theirs.reference
    assert changes.nudges == {"n": Nudge(angle_deg=2.0)}


ODD = {
    "verdicts": {"shout": "REJECTED", "yes": True, "fine": "rejected", "later": "maybe"},
    "reference": ["x"],
    "nudges": {"broken": "garbage", "nan": {"scale": -1}, "good": {"dx": 0.02}},
    "future_feature": {"anything": [1, 2, 3]},
}


def test_entries_this_version_does_not_understand_are_kept_and_said_once(tmp_path):
    path = tmp_path / "decisions.json"
    path.write_text(json.dumps(ODD))
    d = Decisions(path)
    assert d.verdict("shout") is Verdict.AUTO and d.verdict("yes") is Verdict.AUTO
    assert d.verdict("fine") is Verdict.REJECTED
    assert d.reference is None  # a list is no photo's name: ignored, no crash
    assert d.nudge("broken") is None and d.nudge("good") == Nudge(dx=0.02)
    assert len(d.notices) == 1
    for key in ("verdicts.shout", "verdicts.yes", "reference", "nudges.broken", "future_feature"):
        assert key in d.notices[0]
    d.set_verdict("new", Verdict.ACCEPTED)  # the next key press rewrites the file: nothing is dropped
    d.set_nudge("good", Nudge(dx=0.03))
    on_disk = json.loads(path.read_text())
    assert on_disk["verdicts"] == {**ODD["verdicts"], "new": "accepted"}
    assert on_disk["reference"] == ["x"] and on_disk["future_feature"] == ODD["future_feature"]
    assert on_disk["nudges"]["broken"] == "garbage" and on_disk["nudges"]["nan"] == {"scale": -1}
    assert len(d.notices) == 1, "said once"
    d.pin_reference("new")  # the person's own change replaces what was not understood there
    assert json.loads(path.read_text())["reference"] == "new"


@pytest.mark.parametrize("text", ['{"verdicts": [1, 2]}', '{"verdicts": "x", "nudges": 5}'])
def test_a_table_of_the_wrong_type_is_kept_aside_in_the_file(tmp_path, text):
    path = tmp_path / "decisions.json"
    path.write_text(text)
    d = Decisions(path)
    assert d.all_verdicts() == {}
    d.set_verdict("h", Verdict.REJECTED)
    d.set_nudge("h", Nudge(dx=0.1))
    on_disk = json.loads(path.read_text())
    assert on_disk["verdicts"] == {"h": "rejected"}
    assert on_disk["verdicts.unreadable"] == json.loads(text)["verdicts"]


@pytest.mark.parametrize("junk", [b"{not json", b"[1, 2, 3]", b"\xff\xfe garbage", b'"a string"'])
def test_files_that_are_not_json_objects_go_to_new_numbered_backups(tmp_path, junk):
    path = tmp_path / "decisions.json"
    path.write_bytes(junk)
    first = Decisions(path)
    assert first.all_verdicts() == {} and "unreadable" in first.notices[0]
    assert (tmp_path / "decisions.unreadable.json").read_bytes() == junk
    path.write_bytes(b"second junk")
    Decisions(path)
    path.write_bytes(b"third junk")
    Decisions(path)
    assert (tmp_path / "decisions.unreadable.json").read_bytes() == junk, "the first backup is kept"
    assert (tmp_path / "decisions.unreadable-2.json").read_bytes() == b"second junk"
    assert (tmp_path / "decisions.unreadable-3.json").read_bytes() == b"third junk"
    assert not path.exists()


def test_a_failed_write_is_not_a_decision(tmp_path, monkeypatch):
    from alignimation_tui import decisions as decisions_mod

    path = tmp_path / "decisions.json"
    d = Decisions(path)
    d.set_verdict("a", Verdict.ACCEPTED)

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(decisions_mod.tempfile, "mkstemp", read_only)
    with pytest.raises(FolderError, match="store.data_dir"):
        d.set_verdict("b", Verdict.REJECTED)
    assert d.verdict("b") is Verdict.AUTO and d.verdict("a") is Verdict.ACCEPTED
    assert json.loads(path.read_text())["verdicts"] == {"a": "accepted"}


WRITER = """
import sys, time
from pathlib import Path
from alignimation_tui.domain import Verdict
from alignimation_tui.store import Decisions

path, prefix, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
d = Decisions(path)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
for i in range(100):
    d.set_verdict(f"{prefix}{i:03d}", Verdict.REJECTED if i % 2 else Verdict.ACCEPTED)
"""


def test_two_processes_setting_100_verdicts_each_keep_all_200(tmp_path):
    path = tmp_path / "data" / "decisions.json"
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), prefix, str(go)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
             for prefix in ("a", "b")]
    for proc in procs:  # both have read the (empty) file before either writes
        assert proc.stdout.readline().strip() == "ready"
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    verdicts = json.loads(path.read_text())["verdicts"]
    assert len(verdicts) == 200
    assert verdicts["a001"] == verdicts["b099"] == "rejected" and verdicts["a000"] == "accepted"


def test_a_pipeline_takes_the_verdicts_another_process_set(tmp_path):
    from PIL import Image

    from alignimation_tui.config import Config
    from alignimation_tui.pipeline import Pipeline
    from alignimation_tui.scan import content_hash

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 48), (40 * i, 80, 120)).save(folder / f"p{i}.jpg")
    p = Pipeline(folder, Config())
    p.scan()
    h = content_hash(folder / "p1.jpg")
    assert not p.refresh_decisions()
    other = Decisions(p.store.decisions.path)  # the second app
    other.set_verdict(h, Verdict.REJECTED)
    other.pin_reference(h)
    changes = p.refresh_decisions()
    assert changes.verdicts == {h: Verdict.REJECTED} and changes.reference_changed
    assert p.results[h].verdict is Verdict.REJECTED
    p.set_verdict(content_hash(folder / "p0.jpg"), Verdict.ACCEPTED)  # and this one's change keeps theirs
    assert Decisions(p.store.decisions.path).verdict(h) is Verdict.REJECTED
    p.close()
