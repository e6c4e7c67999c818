"""How still do the eyes stand? Eye-centre spread before and after alignment, per landmark weighting.

    .venv/bin/python bench/bench_eyes.py ../shared/samples/faces_serena [more folders]

Before: every photo only resized onto the canvas (long side 1080). After: the registration's
transform. Spread = sqrt(mean over both eyes of the variance of x and y across frames), in units of
the reference's inter-ocular distance on the canvas. Uses the pipeline's cache (a temp one here).
Last line: one JSON object.
"""
from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignimation_tui import register as reg  # noqa: E402
from alignimation_tui.config import Config  # noqa: E402
from alignimation_tui.pipeline import Pipeline  # noqa: E402
from alignimation_tui.store import Store  # noqa: E402

WEIGHTINGS = {
    "uniform": [1, 1, 1, 1, 1],
    "default (eyes 1, nose .5, mouth .25)": Config().register.landmark_weights,
    "eyes only": [1, 1, 0, 0, 0],
}


def spread(eyes: np.ndarray, iod: float) -> float:
    """eyes: (N, 2, 2) -> one number in inter-ocular units."""
    return float(np.sqrt(eyes.var(axis=0).sum(-1).mean()) / iod)


def measure(folder: Path, tmp: Path) -> dict:
    config = Config()
    store = Store(folder, cache_dir=str(tmp / "cache"), data_dir=str(tmp / "data"))
    out = {}
    for label, weights in WEIGHTINGS.items():
        cfg = replace(config, register=replace(config.register, landmark_weights=list(weights)))
        p = Pipeline(folder, cfg, store=store)
        p.scan()
        p.detect()
        p.select()
        ref = p.register()
        kept = p.kept()
        lm = np.stack([np.asarray(r.subject.face.landmarks) for r in kept])
        m = np.stack([np.asarray(r.transform.matrix) for r in kept])
        after = reg.apply(m, lm)[:, :2]
        iod = float(np.linalg.norm(np.diff(ref.landmarks[:2] * ref.scale, axis=0)))
        if "before" not in out:
            sizes = np.array([[max(r.detection.width, r.detection.height)] for r in kept], float)
            before = lm[:, :2] * (config.register.long_side / sizes)[:, :, None]
            out["frames"] = len(kept)
            out["before"] = spread(before, iod)
        out[label] = spread(after, iod)
        out[label + " residual_median_pct"] = float(np.median([r.transform.residual_pct for r in kept]))
    store.close()
    return out


def main() -> None:
    folders = [Path(a) for a in sys.argv[1:]] or [Path(__file__).resolve().parents[2] / "shared/samples/faces_serena"]
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        for folder in folders:
            res = measure(folder, Path(tmp) / folder.name)
            summary[folder.name] = res
            print(f"{folder.name}: {res['frames']} frames kept")
            for k, v in res.items():
                if k != "frames":
                    print(f"  {k:<45} {v:.4f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
