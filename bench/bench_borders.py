"""Padding is not picture: how many output frames show a flat black band at their edge, with the
photos' borders found (``borders.py``) against the same render with them ignored (as before).

    .venv/bin/python bench/bench_borders.py [FOLDER ...]     (default: the three shared face sets)

Each folder is detected and registered once (a temporary cache), then rendered twice from the same
store with the default settings (``--frames``): with each photo's picture box, and with every
picture box dropped (the whole photo is picture). In every output frame, a row or column in the
outer 12 % of the frame is a black band when every pixel of it is at most 24 levels (grey) and
their standard deviation at most 3 levels: flat, as padding is (a dark background is noisy).
Also: how many photos have a border found, and the seconds finding them took. Last line: one JSON
object.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignimation_tui.config import Config, StoreConfig  # noqa: E402
from alignimation_tui.pipeline import Pipeline  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
DEFAULT_FOLDERS = [SAMPLES / n for n in ("faces_serena", "faces_jerry", "faces_tony")]
OUTER = 0.12
BLACK, FLAT = 24, 3.0


def bands(path: Path) -> int:
    """Black-band rows plus columns in the outer ``OUTER`` of one frame."""
    a = np.asarray(Image.open(path).convert("L"), np.float64)
    h, w = a.shape
    rows = np.flatnonzero((a.max(axis=1) <= BLACK) & (a.std(axis=1) <= FLAT))
    cols = np.flatnonzero((a.max(axis=0) <= BLACK) & (a.std(axis=0) <= FLAT))
    return int(((rows < h * OUTER) | (rows >= h * (1 - OUTER))).sum()
               + ((cols < w * OUTER) | (cols >= w * (1 - OUTER))).sum())


def measure(folder: Path, tmp: Path) -> dict:
    config = Config(device="cpu", store=StoreConfig(cache_dir=str(tmp / "cache"), data_dir=str(tmp / "data")))
    out: dict = {"folder": folder.name}
    p = Pipeline(folder, config)
    try:
        p.scan()
        p.process()
        pictures = {h: r.picture for h, r in p.results.items()}
        out["photos"] = len(pictures)
        out["with_border"] = sum(1 for h, b in pictures.items() if b is not None and p.results[h].detection
                                 and b.trims(p.results[h].detection.width, p.results[h].detection.height))
        out["border_seconds"] = round(p.stage_seconds.get("borders", 0.0), 3)
        for how in ("ignored", "found"):
            for h, r in p.results.items():
                r.picture = pictures[h] if how == "found" else None
            frames = tmp / folder.name / how
            p.render(tmp / folder.name / f"{how}.mp4", frames)
            counts = {f.name: bands(f) for f in sorted(frames.glob("*.jpg"))}
            banded = {n: c for n, c in counts.items() if c}
            out[how] = {"frames": len(counts), "frames_with_band": len(banded),
                        "worst": sorted(banded.items(), key=lambda kv: -kv[1])[:3]}
    finally:
        p.close()
    return out


def main(argv: list[str]) -> None:
    folders = [Path(a) for a in argv] or [f for f in DEFAULT_FOLDERS if f.is_dir()]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in folders:
            r = measure(folder, Path(tmp))
            results.append(r)
            print(f"{folder.name}: {r['with_border']} of {r['photos']} photos have a border "
                  f"({r['border_seconds']:.2f} s to find); frames with a flat black band in the outer 12 %: "
                  f"{r['found']['frames_with_band']} of {r['found']['frames']} (borders ignored: "
                  f"{r['ignored']['frames_with_band']}); worst {r['found']['worst']}")
    print(json.dumps({"bench": "borders", "folders": results}))


if __name__ == "__main__":
    main(sys.argv[1:])
