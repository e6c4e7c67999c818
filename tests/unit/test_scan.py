import os
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from alignimation_tui.scan import list_photos, name_date, read_frame
from tests.conftest import save_with_date


def test_only_visible_photos_directly_in_the_folder(tmp_path):
    for name in ("a.jpg", "b.JPEG", "c.png", "d.webp", ".hidden.jpg", "notes.txt", "movie.mp4"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.jpg").write_bytes(b"x")
    names = [p.name for p in list_photos(tmp_path, exclude={tmp_path / "d.webp"})]
    assert names == ["a.jpg", "b.JPEG", "c.png"]


def test_exclude_by_real_path_through_links(tmp_path):
    """The excluded output is found however it is spelt: through a link to the folder, and a link
    in the folder that points at it (each photo's real path is the folder's real path + its name)."""
    real = tmp_path / "real"
    real.mkdir()
    for name in ("a.jpg", "b.jpg", "out.webp"):
        (real / name).write_bytes(b"x")
    (real / "link.webp").symlink_to(real / "out.webp")
    (tmp_path / "via").symlink_to(real)
    for folder in (real, tmp_path / "via"):
        assert [p.name for p in list_photos(folder, exclude={real / "out.webp"})] == ["a.jpg", "b.jpg"]
        assert [p.name for p in list_photos(folder, exclude={tmp_path / "via" / "a.jpg"})] == \
            ["b.jpg", "link.webp", "out.webp"]


@pytest.mark.parametrize("name, expected", [
    ("IMG_20240102_153012.jpg", datetime(2024, 1, 2, 15, 30, 12)),
    ("PXL_20231231_235959123.jpg", datetime(2023, 12, 31)),
    ("2024-01-02 10.11.12.jpg", datetime(2024, 1, 2, 10, 11, 12)),
    ("week 3 2024-03-05.png", datetime(2024, 3, 5)),
    ("20240102.jpg", datetime(2024, 1, 2)),
    ("scan_1234.jpg", None),
    ("20241399.jpg", None),
])
def test_dates_in_names(name, expected):
    found = name_date(name)
    assert (found.date() if found else None) == (expected.date() if expected else None)


def test_date_sources_and_hash(tmp_path):
    img = Image.new("RGB", (32, 24), "red")
    exif_path = save_with_date(img, tmp_path / "IMG_20200101_000000.jpg", datetime(2021, 5, 6, 7, 8, 9))
    named = tmp_path / "IMG_20220304_101112.jpg"
    img.save(named)
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (32, 24), "blue").save(plain)
    os.utime(plain, (1_600_000_000, 1_600_000_000))

    f1, _ = read_frame(exif_path)
    f2, _ = read_frame(named)
    f3, _ = read_frame(plain)
    assert (f1.taken_at, f1.date_source) == (datetime(2021, 5, 6, 7, 8, 9), "exif")
    assert (f2.taken_at, f2.date_source) == (datetime(2022, 3, 4, 10, 11, 12), "name")
    assert (f3.taken_at, f3.date_source) == (datetime.fromtimestamp(1_600_000_000), "mtime")
    assert f2.hash != f3.hash and len(f1.hash) == 32

    moved = tmp_path / "renamed.jpg"
    named.rename(moved)
    assert read_frame(moved)[0].hash == f2.hash


def test_cached_stat_record_spares_rereading(tmp_path):
    path = tmp_path / "a.jpg"
    Image.new("RGB", (8, 8)).save(path)
    frame, record = read_frame(path)
    fake = {**record, "hash": "from-cache"}
    assert read_frame(path, fake)[0].hash == "from-cache"
    path.write_bytes(path.read_bytes() + b"\0")  # changed size: the cache no longer applies
    assert read_frame(path, fake)[0].hash != "from-cache"


def test_scan_keeps_stat_records_under_the_real_path(tmp_path, monkeypatch):
    """A folder opened through a link or a relative path keeps its stat records under each photo's
    real path (``Pipeline._stat_key``), so the next open reads no photo again."""
    from alignimation_tui.config import Config
    from alignimation_tui.pipeline import Pipeline

    real = tmp_path / "real"
    real.mkdir()
    save_with_date(Image.new("RGB", (16, 16), "red"), real / "a.jpg", datetime(2020, 1, 1))
    (tmp_path / "via").symlink_to(real)
    monkeypatch.chdir(tmp_path)
    config = Config()  # one cache for the three spellings (its key is the real folder)
    for folder in (Path("via"), tmp_path / "via", real):
        p = Pipeline(folder, config)
        try:
            p.scan()
            assert p.store.get_json(f"stat:{os.path.realpath(real / 'a.jpg')}") is not None
            p.scan(known_only=True)
            assert p.unscanned == []
        finally:
            p.close()


def test_the_listing_says_which_photos_are_links_and_a_scan_asks_each_file_once(tmp_path, monkeypatch):
    """The folder's listing says which photos are links (it knows, for nothing); the scan of a
    folder it has seen before then asks each photo that is not a link for its stat once, and no
    more whether it is a link (four questions a photo before: 40,000 system calls for a library).
    A link is still resolved and checked."""
    from dataclasses import replace

    from alignimation_tui.config import Config
    from alignimation_tui.pipeline import Pipeline
    from alignimation_tui.scan import list_photo_files

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 24), (40 * i, 80, 120)).save(folder / f"p{i}.jpg")
    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (32, 24)).save(outside)
    (folder / "z-link.jpg").symlink_to(outside)
    assert [(p.name, link) for p, link in list_photo_files(folder)] == \
        [("p0.jpg", False), ("p1.jpg", False), ("p2.jpg", False), ("p3.jpg", False), ("z-link.jpg", True)]

    config = replace(Config(), mode="face")
    config = replace(config, store=replace(config.store, cache_dir=str(tmp_path / "cache"),
                                           data_dir=str(tmp_path / "data")))
    Pipeline(folder, config).scan()  # the stat records stored
    pipeline = Pipeline(folder, config)
    asked: list[str] = []
    real_stat, real_lstat = os.stat, os.lstat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: asked.append(f"stat {Path(p).name}") or real_stat(p, *a, **k))
    monkeypatch.setattr(os, "lstat", lambda p, *a, **k: asked.append(f"lstat {Path(p).name}") or real_lstat(p, *a, **k))
    results = pipeline.scan(known_only=True)
    monkeypatch.undo()
    for i in range(4):
        assert asked.count(f"stat p{i}.jpg") == 1 and f"lstat p{i}.jpg" not in asked, asked
    assert {r.frame.path.name for r in results} == {f"p{i}.jpg" for i in range(4)}
    assert [p.name for p in pipeline.unscanned] == ["z-link.jpg"]  # (nothing stored for it: read later)
    link = pipeline.add_path(pipeline.unscanned[0])
    assert link.status.value == "failed" and "outside the folder" in link.error


@pytest.mark.parametrize("value", [
    "2021:05:06 07:08:09", b"2019:12:31 23:59:59\x00", "  2020:02:29 12:00:00  ", "2021:05:06 07:08:09 +02:00",
    "2021:02:30 07:08:09", "2021:13:06 07:08:09", "2021:00:06 07:08:09", "0000:01:01 00:00:00",
    "2021:05:06 24:00:00", "2021:05:06 23:60:00", "2021:05:06 23:59:60", "2021:05:06 23:59:61",
    "2021:5:6 7:8:9", "2021:05: 6 07:08:09", "2021:05:06  07:08:09", "2021-05-06 07:08:09", "2021:05:06T07:08:09",
    "\u0662\u0660\u0662\u0661:05:06 07:08:09", "    ", "", None, 12345])
def test_exif_dates_read_as_strptime_reads_them(value):
    """The plain "YYYY:MM:DD HH:MM:SS" is read without ``strptime`` (its import and first call were
    4-10 ms of a small folder's scan); every value, plain or odd, gives what ``strptime`` gives."""
    from alignimation_tui.scan import _parse_exif_datetime

    text = value.decode("ascii", "ignore") if isinstance(value, bytes) else value
    try:
        expected = datetime.strptime(text.strip().rstrip("\x00")[:19], "%Y:%m:%d %H:%M:%S")
    except (ValueError, AttributeError):
        expected = None
    assert _parse_exif_datetime(value) == expected


def test_plain_exif_dates_need_no_strptime(tmp_path):
    """A photo with an ordinary EXIF date is dated without importing ``_strptime``."""
    import subprocess
    import sys

    img = Image.new("RGB", (32, 24), (120, 90, 60))
    path = save_with_date(img, tmp_path / "a.jpg", datetime(2021, 5, 6, 7, 8, 9))
    code = ("import sys; from pathlib import Path; from alignimation_tui.scan import read_frame\n"
            "frame, _ = read_frame(Path(sys.argv[1]))\n"
            "print(frame.taken_at.isoformat(), frame.date_source, '_strptime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["2021-05-06T07:08:09", "exif", "False"], out.stderr[-2000:]
