"""After one change among many photos, the subject is chosen again only where its inputs changed
(the detection, the identity's examples, the anchor), the identity's examples are made again only
when the photos they come from changed, and the fits' signals are measured again only for frames
whose transform or subject changed: the pass after each new photo in a library."""
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

    closest, measured, examples, anchors, reads = [], [], [], [], []
    real_closest, real_signals = face_mode.closest_face, outliers.signals_of
    real_prototypes, real_anchor, real_get = face_mode.prototypes, face_mode.anchor_face, pipeline.store.get_array
    monkeypatch.setattr(face_mode, "closest_face", lambda *a: closest.append(1) or real_closest(*a))
    monkeypatch.setattr(outliers, "signals_of", lambda r: measured.append(r.frame.hash) or real_signals(r))
    monkeypatch.setattr(face_mode, "prototypes", lambda *a: examples.append(1) or real_prototypes(*a))
    monkeypatch.setattr(face_mode, "anchor_face", lambda *a: anchors.append(1) or real_anchor(*a))
    monkeypatch.setattr(pipeline.store, "get_array", lambda key: reads.append(key) or real_get(key))
    turned, real_turned = [], face_mode.is_turned
    monkeypatch.setattr(face_mode, "is_turned", lambda *a: turned.append(1) or real_turned(*a))

    pipeline.process([])  # nothing changed: nothing chosen or measured again, the same objects
    assert closest == [] and measured == []
    assert all(r.subject is chosen[h] for h, r in pipeline.results.items())
    assert turned == [], "a photo's status was judged again from the same subject, verdict and settings"
    # The identity's examples are not made again from the same photos; every photo is chosen by
    # identity, so where faces usually are (the anchor) is not asked; whether a photo needs
    # detecting is answered from the descriptors read already, not from the store again.
    assert pipeline.identity_on and examples == [] and anchors == []
    assert not any(map(pipeline.needs_detection, pipeline.results.values())) and reads == []

    # Accepting a photo makes it one more example of the person: every choice by identity is made again.
    some = next(h for h, r in pipeline.results.items() if r.subject is not None)
    pipeline.set_verdict(some, Verdict.ACCEPTED)
    pipeline.process([])
    assert len(closest) >= 10 and examples == [1]
    assert 1 <= len(turned), "the accepted photo is judged again"
    again = [r.subject.face_index if r.subject else None for r in pipeline.results.values()]
    assert again == [s.face_index if s else None for s in chosen.values()]  # the same faces, chosen again
