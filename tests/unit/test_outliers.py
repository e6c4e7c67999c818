"""The gross-misregistration guard (outliers.py) on series of fit signals: what a wrong fit does is
caught with its reason, an ordinary spread is not."""
import math

import numpy as np
import pytest

from alignimation_tui.domain import FrameResult, FrameStatus, Subject, Face, FacingScores, Transform, Verdict, is_kept
from alignimation_tui.outliers import FitSignals, MIN_SERIES, apply_outliers, find_outliers, find_unsure, signals_of
from tests.unit.test_triage import result as triage_result


def series(n=20, seed=0):
    """An ordinary series: sizes within ±8 %, centres within a tenth of the box, turns ±7°."""
    rng = np.random.default_rng(seed)
    return [FitSignals(f"h{k}", 130 * (1 + rng.uniform(-0.08, 0.08)),
                       (500 + rng.uniform(-12, 12), 280 + rng.uniform(-12, 12)), rng.uniform(-7, 7),
                       0.35 * (1 + rng.uniform(-0.1, 0.1)), 0.5, 0.01 + rng.uniform(0, 0.02)) for k in range(n)]


def test_an_ordinary_series_has_no_outlier():
    for seed in range(20):
        assert find_outliers(series(seed=seed)) == {}


@pytest.mark.parametrize("change, reason", [
    (dict(size=130 * 1.8), "face 1.8x the median size"),
    (dict(size=130 / 1.6), "face 0.6x the median size"),
    (dict(centre=(500 + 85, 280)), "away from where the rest land"),
    (dict(turn_deg=45.0), "turned 4"),
    (dict(turn_deg=178.0), "turned 178° beyond the rest"),  # eyes swapped: a mirrored labelling
    (dict(shape=0.35 * 1.9), "x the usual distance below the eyes"),
    (dict(residual_box=0.2, residual_pct=3.1), "landmark fit residual 3.1 %"),
    (dict(size=130 * 1.35, turn_deg=30.0), "face 1.3x the median size; turned 3"),  # two doubts at once
])
def test_each_kind_of_wrong_fit_is_caught_with_its_reason(change, reason):
    from dataclasses import replace
    s = series()
    s[7] = replace(s[7], **change)
    found = find_outliers(s)
    assert set(found) == {"h7"} and reason in found["h7"], found
    assert find_unsure(s) == {}


@pytest.mark.parametrize("change, reason", [
    (dict(size=130 * 1.35), "face 1.3x the median size"),
    (dict(centre=(500 + 65, 280)), "away from where the rest land"),
    (dict(turn_deg=30.0), "turned 3"),
    (dict(shape=0.35 * 1.5), "mouth 1.5x the usual distance below the eyes"),
    (dict(residual_box=0.09, residual_pct=1.4), "landmark fit residual 1.4 %"),
])
def test_a_doubt_no_head_rules_out_is_flagged_and_kept(change, reason):
    """Where the check is unsure it flags, it does not drop."""
    from dataclasses import replace
    s = series()
    s[7] = replace(s[7], **change)
    assert find_outliers(s) == {}
    unsure = find_unsure(s)
    assert set(unsure) == {"h7"} and reason in unsure["h7"], unsure


def test_a_turned_head_is_kept():
    """A box 1.6x as large against its eye distance is left out from a frontal face, but kept (and
    flagged) from a head turned 45°: 1.6 x cos 45° = 1.1, as the turn explains."""
    from dataclasses import replace
    s = series()
    s[7] = replace(s[7], size=130 * 1.6)
    assert set(find_outliers(s)) == {"h7"}
    s[7] = replace(s[7], yaw_deg=45.0)
    assert find_outliers(s) == {} and "face 1.6x the median size" in find_unsure(s)["h7"]


def test_the_reference_and_short_series_are_never_judged():
    from dataclasses import replace
    s = series()
    s[0] = replace(s[0], size=400.0)
    assert find_outliers(s, exempt=frozenset({"h0"})) == {}
    assert find_outliers(s[:MIN_SERIES - 1]) == {}


def test_turns_wrap_around():
    """A series turned about 180° (photos stored upside down) is ordinary among itself."""
    from dataclasses import replace
    s = [replace(x, turn_deg=(180 + x.turn_deg + 180) % 360 - 180) for x in series()]
    assert find_outliers(s) == {}


def _result(k: int, eye_gap: float = 40.0, scale: float = 1.0) -> FrameResult:
    r = triage_result(k)
    box = (100.0, 100.0, 200.0, 220.0)
    lm = ((130.0, 140.0), (130.0 + eye_gap, 140.0), (150.0, 170.0), (135.0, 185.0), (165.0, 185.0))
    r.subject = Subject(0, Face(box, 0.99, lm), FacingScores(1, 1, 0), None)
    # registration that takes this face's eyes to a canvas eye gap of 40 px
    s = 40.0 / eye_gap * scale
    r.transform = Transform(((s, 0.0, 0.0), (0.0, s, 0.0), (0.0, 0.0, 1.0)), (640, 480), 0.5)
    r.status = FrameStatus.ALIGNED
    return r


def test_apply_outliers_sets_the_status_and_the_reason_and_is_idempotent():
    results = [_result(k) for k in range(12)]
    results[5] = _result(5, eye_gap=22.0)  # the eyes placed at half their distance: face blown up 1.8x
    apply_outliers(results, reference=results[0].frame.hash)
    assert [r.status for r in results].count(FrameStatus.OUTLIER) == 1 and not is_kept(results[5])
    assert results[5].status is FrameStatus.OUTLIER and "1.8x the median size" in results[5].outlier_reason
    assert signals_of(results[5]).size == pytest.approx(120 * 40 / 22)
    results[5].verdict = Verdict.ACCEPTED  # accepted: still shown as an outlier, but kept (domain.is_kept)
    apply_outliers(results, reference=results[0].frame.hash)
    assert results[5].status is FrameStatus.OUTLIER and is_kept(results[5])
    results[5] = _result(5)  # fixed (re-registered): back to aligned, no reason
    apply_outliers(results, reference=results[0].frame.hash)
    assert all(r.status is FrameStatus.ALIGNED and r.outlier_reason is None for r in results)
    assert not math.isnan(sum(signals_of(r).residual_box for r in results))


def test_the_table_flags_an_outlier_with_its_reason_and_n_reaches_it():
    from alignimation_tui.triage import frame_rows, is_flagged, status_counts
    r = _result(3)
    r.status, r.outlier_reason = FrameStatus.OUTLIER, "face 1.8x the median size"
    row = frame_rows([r])[0]
    assert row.status == "outlier" and row.flag.startswith("⚑ outlier: face 1.8x the median size")
    assert is_flagged(row) and status_counts([row]) == {"outlier": 1}


def test_body_mode_is_judged_on_the_persons_box():
    """Body mode has no face landmarks: size, position and turn of the person's box, no shape."""
    from alignimation_tui.domain import BodySubject, Person
    results = []
    for k in range(10):
        r = triage_result(k)
        person = Person((100.0, 50.0, 300.0, 650.0), 0.99, ((0.0, 0.0),) * 17, (3.0,) * 17)
        r.subject = BodySubject(0, person, "left", ((0.0, 0.0),) * 3, (1.0,) * 3, 0.0)
        s = 2.0 if k == 4 else 1.0  # one frame registered at twice the others' scale
        r.transform = Transform(((s, 0.0, 0.0), (0.0, s, 0.0), (0.0, 0.0, 1.0)), (800, 1000), 0.5)
        r.status = FrameStatus.ALIGNED
        results.append(r)
    assert signals_of(results[0]).shape is None
    apply_outliers(results, reference=results[0].frame.hash)
    assert [r.frame.hash for r in results if r.status is FrameStatus.OUTLIER] == ["h4"]
    assert "2.0x the median size" in results[4].outlier_reason


def test_signals_of_a_turned_scaled_shifted_fit():
    """The signals in plain arithmetic, checked against the matrix they come from."""
    r = _result(0)
    a, s = math.radians(20.0), 1.7
    m = np.array([[s * math.cos(a), -s * math.sin(a), 31.0], [s * math.sin(a), s * math.cos(a), -12.0], [0, 0, 1]])
    r.transform = Transform(tuple(map(tuple, m)), (640, 480), 0.8)
    sig = signals_of(r)
    box = r.subject.box
    centre = m @ [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 1.0]
    assert sig.size == pytest.approx(s * 120)
    assert sig.centre == pytest.approx(tuple(centre[:2]))
    assert sig.turn_deg == pytest.approx(20.0)
    lm = np.asarray(r.subject.points)
    assert sig.shape == pytest.approx(np.linalg.norm((lm[3] + lm[4]) / 2 - (lm[0] + lm[1]) / 2) / 120)
    assert sig.residual_box == pytest.approx(0.8 / 100 * 480 / (s * 120))
