"""After one change among many photos, the subject is chosen again only where its inputs changed
(the detection, the identity's examples, the anchor), and the fits' signals are measured again
only for frames whose transform or subject changed: the pass after each new photo in a library."""
from __future__ import annotations

import shutil

from alignimation_tui import outliers
from alignimation_tui.config import Config
from alignimation_tui.domain import Verdict
from alignimation_tui.modes import face as face_mode
from alignimation_tui.pipeline import Pipeline


def test_choices_and_signals_are_made_again_only_for_what_changed(samples, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted((samples / "faces_serena").glob("*.jpg"))[:12]:
        shutil.copy(p, folder / p.name)
    pipeline = Pipeline(folder, Config())
    pipeline.scan()
    pipeline.process()
    chosen = {h: r.subject for h, r in pipeline.results.items()}
    assert sum(s is not None for s in chosen.values()) >= 10

    closest, measured = [], []
    real_closest, real_signals = face_mode.closest_face, outliers.signals_of
    monkeypatch.setattr(face_mode, "closest_face", lambda *a: closest.append(1) or real_closest(*a))
    monkeypatch.setattr(outliers, "signals_of", lambda r: measured.append(r.frame.hash) or real_signals(r))

    pipeline.process([])  # nothing changed: nothing chosen or measured again, the same objects
    assert closest == [] and measured == []
    assert all(r.subject is chosen[h] for h, r in pipeline.results.items())

    # Accepting a photo makes it one more example of the person: every choice by identity is made again.
    some = next(h for h, r in pipeline.results.items() if r.subject is not None)
    pipeline.set_verdict(some, Verdict.ACCEPTED)
    pipeline.process([])
    assert len(closest) >= 10
    again = [r.subject.face_index if r.subject else None for r in pipeline.results.values()]
    assert again == [s.face_index if s else None for s in chosen.values()]  # the same faces, chosen again
