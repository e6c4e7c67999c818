"""`alignimation-tui demo DIR --once`: the newcomer's first command, offline, with the real MTCNN."""
import imageio.v2 as imageio

from alignimation_tui.demo import NO_FACE, PHOTOS, write_demo
from tests.e2e.test_once import run


def test_demo_once_aligns_every_face_photo(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "demo"
    code, rows, err = run(capsys, "demo", folder, "--once", "--json")
    assert code == 0, err
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert set(by_name) == {p.name for p in PHOTOS} | {NO_FACE}
    assert by_name.pop(NO_FACE)["status"] == "no_subject"
    assert {r["status"] for r in by_name.values()} == {"aligned"}, {n: r["status"] for n, r in by_name.items()}
    dated_by_name = {p.name for p in PHOTOS if not p.exif_date}
    assert {n for n, r in by_name.items() if r["date_source"] == "name"} == dated_by_name
    assert all(r["date_source"] == "exif" for n, r in by_name.items() if n not in dated_by_name)
    out = tmp_path / "demo-timelapse.mp4"  # the default output: ./FOLDER-timelapse.mp4
    assert f"wrote {out}" in " ".join(err.split()) and f"({len(PHOTOS)} photos" in err
    reader = imageio.get_reader(out)
    try:
        assert reader.count_frames() >= len(PHOTOS)
    finally:
        reader.close()


def test_demo_never_writes_into_someone_elses_folder(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"someone's photo")
    code, _, err = run(capsys, "demo", folder, "--once")
    assert code == 2 and "not a demo folder" in err
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]
    again = write_demo(tmp_path / "demo")  # a previous demo folder may be written again
    assert write_demo(tmp_path / "demo") == again
