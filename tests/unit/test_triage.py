"""Rows, outlier flags and filters the table shows, without a screen."""
from datetime import datetime
from pathlib import Path

from alignimation_tui.domain import (Face, FaceDetection, FacingScores, Frame, FrameResult, FrameStatus, Subject,
                                     Transform, Verdict)
from alignimation_tui.triage import frame_rows, is_flagged, matches, outlier_flags, status_counts

FACE = Face((0, 0, 10, 10), 0.99, ((1, 1), (2, 1), (1.5, 2), (1, 3), (2, 3)))


def result(i: int, residual: float | None = 0.2, eye: float = 0.95, status=FrameStatus.ALIGNED,
           verdict=Verdict.AUTO, error=None) -> FrameResult:
    frame = Frame(Path(f"p{i:02d}.jpg"), f"h{i}", datetime(2024, 1, 1 + i), "exif", 100)
    r = FrameResult(frame, status=status, verdict=verdict, error=error)
    if residual is not None:
        r.detection = FaceDetection(10, 10, (FACE,))
        r.subject = Subject(0, FACE, FacingScores(eye, 0.9, 2.0), None)
        r.transform = Transform(((1, 0, 0), (0, 1, 0), (0, 0, 1)), (10, 10), residual)
    return r


def test_outliers_are_far_from_the_rest_and_above_a_floor():
    results = [result(i, 0.2 + 0.01 * i) for i in range(10)]
    assert outlier_flags(results) == {}
    results.append(result(10, residual=3.5))
    results.append(result(11, eye=0.45))
    results.append(result(12, residual=0.9))  # far in MADs, but under the 1 % floor: not worth a look
    flags = outlier_flags(results)
    assert flags == {"h10": "⚑ residual", "h11": "⚑ eyes"}


def test_flags_follow_a_new_fit_and_mix_faces_with_frames_without_facing_scores():
    """Each frame's values are kept with its fit: a frame registered again (a new transform, as
    after a new reference) is judged on its new residual; a frame whose subject has no facing
    scores (body mode's) counts for the residual only."""
    from alignimation_tui.domain import BodySubject, Person

    results = [result(i, 0.2 + 0.01 * i) for i in range(10)]
    assert outlier_flags(results) == {}
    results[3].transform = Transform(((1, 0, 0), (0, 1, 0), (0, 0, 1)), (10, 10), 4.0)
    assert outlier_flags(results) == {"h3": "⚑ residual"}
    results[3].transform = Transform(((1, 0, 0), (0, 1, 0), (0, 0, 1)), (10, 10), 0.23)
    results[5].subject = Subject(0, FACE, FacingScores(0.4, 0.9, 2.0), None)  # chosen again: eyes far off
    assert outlier_flags(results) == {"h5": "⚑ eyes"}
    bodies = [result(20 + i, 0.3) for i in range(6)]
    person = Person((0, 0, 10, 10), 0.9, ((1.0, 1.0),) * 17, (3.0,) * 17)
    for r in bodies:
        r.subject = BodySubject(0, person, "left", ((1.0, 1.0),), (1.0,), 0.0)  # no facing scores
    bodies[0].transform = Transform(((1, 0, 0), (0, 1, 0), (0, 0, 1)), (10, 10), 5.0)
    flags = outlier_flags(results + bodies)
    assert flags == {"h5": "⚑ eyes", "h20": "⚑ residual"}
    assert list(outlier_flags(bodies + results)) == ["h20", "h5"]  # in the frames' order


def test_rows_filters_and_counts():
    results = [result(i) for i in range(6)]
    results += [result(6, None, status=FrameStatus.FAILED, error="cannot open: truncated"),
                result(7, verdict=Verdict.REJECTED), result(8, status=FrameStatus.TURNED)]
    rows = frame_rows(results)
    by = {r.hash: r for r in rows}
    assert by["h6"].flag == "✗ cannot open: truncated" and by["h6"].eye == "" and by["h6"].residual == ""
    assert by["h0"].date == "2024-01-01" and by["h0"].residual == "0.20" and by["h0"].confidence == "0.990"
    assert [r.hash for r in rows if is_flagged(r)] == ["h6", "h8"]
    assert [r.hash for r in rows if matches(r, "rejected")] == ["h7"]
    assert [r.hash for r in rows if matches(r, "failed")] == ["h6"]
    assert len([r for r in rows if matches(r, "all")]) == 9
    assert status_counts(rows) == {"aligned": 7, "turned": 1, "failed": 1}


def test_the_first_s_sorts_by_the_first_visible_column_after_the_photo():
    from alignimation_tui.triage import COLUMNS, next_sort_column

    visible = ["name", "status", "verdict", "residual", "sharpness", "flag"]  # the preview hides the rest
    assert next_sort_column("date", visible, chosen=False) == "status"
    assert next_sort_column("status", visible, chosen=True) == "verdict"
    assert next_sort_column("flag", visible, chosen=True) == "date"  # then those out of view
    assert next_sort_column("eye", visible, chosen=True) == "mouth"
    assert next_sort_column("side", visible, chosen=True) == "name"  # then the photo, then round again
    assert next_sort_column("name", visible, chosen=True) == "status"
    seen, column = [], "name"  # every column is reached
    for _ in range(len(COLUMNS)):
        column = next_sort_column(column, visible, chosen=True)
        seen.append(column)
    assert sorted(seen) == sorted(key for key, _, _ in COLUMNS)
