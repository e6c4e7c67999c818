"""The second landmark pass is cached apart from the detection: a fit setting re-registers from
cached landmarks (nothing decoded), a second-pass setting decodes again but runs no MTCNN
detection, and the refined landmarks are what the fit uses."""
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np

from alignimation_tui.config import Config
from alignimation_tui.detect import landmarks as landmarks_mod
from alignimation_tui.pipeline import Pipeline
from alignimation_tui.store import Store
from tests.conftest import save_with_date, similarity, warped_astronaut


def run(folder, store, config):
    p = Pipeline(folder, config, store=store)
    p.scan()
    decoded = p.detect()
    p.select()
    p.register()
    return p, decoded


def test_settings_changes_redo_only_what_they_change(tmp_path, count_detections, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, (angle, scale) in enumerate([(0, 1.0), (8, 0.9), (-6, 1.1)]):
        save_with_date(warped_astronaut(similarity(angle, scale, 64, 60)), folder / f"p{i}.jpg",
                       datetime(2024, 1, 1) + timedelta(days=i))
    passes = []
    original = landmarks_mod.second_pass

    def counting(onet, photos, *a, **k):
        passes.append(len(photos))
        return original(onet, photos, *a, **k)

    monkeypatch.setattr(landmarks_mod, "second_pass", counting)
    store = Store(folder, cache_dir=str(tmp_path / "cache"), data_dir=str(tmp_path / "data"))
    config = Config(device="cpu")

    p, decoded = run(folder, store, config)
    assert decoded == 3 and sum(count_detections) == 3 and sum(passes) == 3
    raw = [store.get_json(f"faces:{r.frame.hash}:{p.mode.detect_fp}") for r in p.results.values()]
    for r, cached in zip(p.results.values(), raw):  # the fit uses the refined landmarks, not MTCNN's
        assert r.subject.face.landmarks != tuple(tuple(v) for v in cached["faces"][0]["landmarks"])
        moved = np.abs(np.array(r.subject.face.landmarks) - np.array(cached["faces"][0]["landmarks"])).max()
        assert 0 < moved < 10
    first = {h: r.transform.matrix for h, r in p.results.items()}

    # A fit setting: new transforms from cached landmarks; nothing decoded, nothing detected.
    count_detections.clear(), passes.clear()
    fit = replace(config, register=replace(config.register, landmark_weights=[1.0, 1.0, 0.5, 0.2, 0.2]))
    p, decoded = run(folder, store, fit)
    assert decoded == 0 and count_detections == [] and passes == []
    assert any(r.transform.matrix != first[h] for h, r in p.results.items() if h != p.reference.hash)

    # A second-pass setting: the photos are decoded again for the pass, MTCNN does not run.
    lm = replace(config, landmarks=replace(config.landmarks, jitter=0.0))
    p, decoded = run(folder, store, lm)
    assert decoded == 3 and count_detections == [] and sum(passes) == 3
    assert all(r.transform is not None for r in p.results.values())

    # Off: MTCNN's own landmarks, straight from the cached detection.
    passes.clear()
    off = replace(config, landmarks=replace(config.landmarks, rounds=0))
    p, decoded = run(folder, store, off)
    assert decoded == 0 and count_detections == [] and passes == []
    for r, cached in zip(p.results.values(), raw):
        assert r.subject.face.landmarks == tuple(tuple(v) for v in cached["faces"][0]["landmarks"])
    store.close()
