"""Selection on real files with the real MTCNN: sharpness, one photo per week, near-duplicates and
bursts, the person's accept overriding the choice, and what --once --json reports."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import ImageEnhance, ImageFilter

from alignimation_tui.config import Config, SelectConfig
from alignimation_tui.curate import hamming, subject_sharpness
from alignimation_tui.domain import FrameStatus, Verdict
from alignimation_tui.headless import run_once
from alignimation_tui.pipeline import Pipeline
from alignimation_tui.triage import frame_rows
from tests.conftest import similarity, warped_astronaut

WARP_A, WARP_B = (0, 1.0, 0, 0), (8, 0.9, 25, -10)


def photo(folder: Path, name: str, warp=WARP_A, blur: float = 0, brighten: float = 0, quality: int = 95,
          background=(90, 110, 130)) -> Path:
    angle, scale, tx, ty = warp
    img = warped_astronaut(similarity(angle, scale, tx + 64, ty + 60), background=background)
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    if brighten:
        img = ImageEnhance.Brightness(img).enhance(1 + brighten)
    img.save(folder / name, quality=quality)  # no EXIF: the date comes from the name
    return folder / name


def run(folder: Path, **select) -> Pipeline:
    p = Pipeline(folder, replace(Config(), select=SelectConfig(**select)))
    p.scan()
    p.detect()
    p.select()
    p.register()
    return p


def by_name(p: Pipeline) -> dict:
    return {r.frame.path.name: r for r in p.results.values()}


@pytest.fixture
def weekly(tmp_path) -> Path:
    """Two ISO weeks (2024-W10, 2024-W11), three photos each: one sharp and two blurred copies."""
    folder = tmp_path / "weekly"
    folder.mkdir()
    for day, warp, blur in (("20240304", WARP_A, 2.0), ("20240306", WARP_A, 0), ("20240308", WARP_A, 4.0),
                            ("20240311", WARP_B, 0), ("20240312", WARP_B, 2.0), ("20240314", WARP_B, 4.0)):
        photo(folder, f"IMG_{day}_090000.jpg", warp, blur)
    return folder


def test_sharpness_and_one_photo_per_week(weekly, capsys):
    p = run(weekly, every="week")
    try:
        r = by_name(p)
        assert all(x.subject is not None for x in r.values()), "every photo has a face"
        sharp = {n: subject_sharpness(x) for n, x in r.items()}
        # a sharp photo is sharper than its blurred copies, the more blurred the less sharp
        assert sharp["IMG_20240306_090000.jpg"] > sharp["IMG_20240304_090000.jpg"] > sharp["IMG_20240308_090000.jpg"]
        assert sharp["IMG_20240311_090000.jpg"] > sharp["IMG_20240312_090000.jpg"] > sharp["IMG_20240314_090000.jpg"]

        kept = {x.frame.path.name for x in p.kept()}
        assert kept == {"IMG_20240306_090000.jpg", "IMG_20240311_090000.jpg"}, "the sharp photo of each week"
        skipped = r["IMG_20240304_090000.jpg"]
        assert skipped.status is FrameStatus.SKIPPED
        assert skipped.skip_reason == "week 2024-W10 keeps IMG_20240306_090000.jpg"
        assert r["IMG_20240314_090000.jpg"].skip_reason == "week 2024-W11 keeps IMG_20240311_090000.jpg"

        # the table: a sharpness column; min_sharpness flags the blurred frames
        threshold = (sharp["IMG_20240306_090000.jpg"] + sharp["IMG_20240304_090000.jpg"]) / 2
        rows = {row.name: row for row in frame_rows(list(p.results.values()), min_sharpness=threshold)}
        assert "blurry" in rows["IMG_20240308_090000.jpg"].flag  # (with any other reason: the flag lists all)
        assert "blurry" not in rows["IMG_20240306_090000.jpg"].flag
        assert rows["IMG_20240304_090000.jpg"].status == "skipped" and "⊘ week 2024-W10" in rows[
            "IMG_20240304_090000.jpg"].flag
        assert rows["IMG_20240306_090000.jpg"].sharpness == f"{sharp['IMG_20240306_090000.jpg']:.0f}"

        # accepting a skipped photo keeps it: it becomes its week's pick
        p.set_verdict(r["IMG_20240304_090000.jpg"].frame.hash, Verdict.ACCEPTED)
        p.select()
        p.register()
        kept = {x.frame.path.name for x in p.kept()}
        assert kept == {"IMG_20240304_090000.jpg", "IMG_20240311_090000.jpg"}
        assert r["IMG_20240306_090000.jpg"].skip_reason == "week 2024-W10 keeps IMG_20240304_090000.jpg"
    finally:
        p.close()

    # --once --json reports sharpness, the hash and why a photo was skipped (from the cache)
    config = replace(Config(), select=SelectConfig(every="week"))
    assert run_once(weekly, config, weekly.parent / "out.mp4", as_json=True) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    report = {Path(d["path"]).name: d for d in lines}
    assert report["IMG_20240304_090000.jpg"]["verdict"] == "accepted"
    assert report["IMG_20240306_090000.jpg"]["status"] == "skipped"
    assert report["IMG_20240306_090000.jpg"]["skipped"] == "week 2024-W10 keeps IMG_20240304_090000.jpg"
    assert report["IMG_20240311_090000.jpg"]["skipped"] is None
    assert report["IMG_20240311_090000.jpg"]["sharpness"] == pytest.approx(sharp["IMG_20240311_090000.jpg"], abs=0.01)
    assert len(report["IMG_20240311_090000.jpg"]["dhash"]) == 16


def test_exact_and_near_duplicates_and_bursts(tmp_path):
    folder = tmp_path / "dups"
    folder.mkdir()
    photo(folder, "IMG_20240401_090000.jpg", WARP_A)
    photo(folder, "IMG_20240402_090000.jpg", WARP_A, quality=85)  # the same picture saved again
    photo(folder, "IMG_20240403_090000.jpg", WARP_A, brighten=0.06, quality=90)  # a near-identical shot
    photo(folder, "IMG_20240404_090000.jpg", (15, 0.8, -40, 20), background=(200, 180, 60))  # another photo
    # a burst: two shots 20 s apart, and one a quarter of an hour later
    photo(folder, "IMG_20240501_090000.jpg", (-6, 1.1, 30, 10), background=(40, 40, 40))
    photo(folder, "IMG_20240501_090020.jpg", (6, 0.95, -20, -10), background=(240, 240, 240))
    photo(folder, "IMG_20240501_091500.jpg", (12, 1.2, 5, 30), background=(30, 160, 90))

    p = run(folder)  # selection off: everything kept
    try:
        r = by_name(p)
        assert len(p.kept()) == 7
        h = {n: x.quality.dhash for n, x in r.items()}
        first = h["IMG_20240401_090000.jpg"]
        assert hamming(first, h["IMG_20240402_090000.jpg"]) <= 1
        assert hamming(first, h["IMG_20240403_090000.jpg"]) <= 4
        assert hamming(first, h["IMG_20240404_090000.jpg"]) > 10
    finally:
        p.close()

    p = run(folder, duplicates=True, duplicate_bits=4, burst_seconds=60)
    try:
        r = by_name(p)
        april = ["IMG_20240401_090000.jpg", "IMG_20240402_090000.jpg", "IMG_20240403_090000.jpg"]
        kept_april = [n for n in april if r[n].status is FrameStatus.ALIGNED]
        assert len(kept_april) == 1, "one of the duplicates stays"
        for n in april:
            if n not in kept_april:
                assert r[n].skip_reason == f"near-duplicate of {kept_april[0]}"
        assert r["IMG_20240404_090000.jpg"].status is FrameStatus.ALIGNED
        burst = [r["IMG_20240501_090000.jpg"], r["IMG_20240501_090020.jpg"]]
        assert sorted(x.status.value for x in burst) == ["aligned", "skipped"]
        assert r["IMG_20240501_091500.jpg"].status is FrameStatus.ALIGNED
        assert len(p.kept()) == 4
    finally:
        p.close()


def test_sharpness_is_normalised_for_the_face_size():
    """The same face at twice the pixels scores about the same (the crop is resampled to a fixed
    square); a blurred copy scores far lower at either size."""
    from PIL import Image

    from alignimation_tui.curate import face_sharpness
    from tests.conftest import astronaut

    face = Image.fromarray(astronaut())
    box = (160, 60, 260, 170)  # the astronaut's face
    big = face.resize((1024, 1024), Image.Resampling.BICUBIC)
    small_score, big_score = face_sharpness(face, box), face_sharpness(big, tuple(2 * v for v in box))
    assert big_score == pytest.approx(small_score, rel=0.2)
    blurred = face.filter(ImageFilter.GaussianBlur(1))
    assert face_sharpness(blurred, box) < small_score / 2
