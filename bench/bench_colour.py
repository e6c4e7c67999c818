"""Steady exposure and colour: frame-to-frame change of the face region's mean luminance and
colour in the output, with ``render.match_colour`` off, "trend" and "reference".

    .venv/bin/python bench/bench_colour.py [FOLDER ...]     (default: the three shared face sets)

Each folder is detected and registered once (a temporary cache), then rendered three times from
the same store with only ``match_colour`` changed (nothing is detected or registered again). In
every output frame the face region is the same box around the framing's eye goal (0.7 inter-ocular
distances either side, 0.2 above the eyes to 1.2 below); luminance is Rec. 709 Y of the sRGB levels
(0-255), colour the chromaticity (r, g) = (R, G) / (R + G + B) x 100. Change = mean over consecutive
frames of |difference|. Ratios are against "off" in the same run; the reference frame's largest
pixel difference from "off" shows it is left as it is. Last line: one JSON object.
"""
from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignimation_tui.config import Config, StoreConfig  # noqa: E402
from alignimation_tui.pipeline import Pipeline  # noqa: E402
from alignimation_tui.render import FRAMES_SIDECAR, read_sidecar  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
DEFAULT_FOLDERS = [SAMPLES / n for n in ("faces_serena", "faces_jerry", "faces_tony")]
MODES = ("off", "trend", "reference")


def face_stats(path: Path, anchor, unit: float) -> tuple[float, np.ndarray]:
    a = np.asarray(Image.open(path).convert("RGB"), np.float64)
    x0, x1 = int(anchor[0] - 0.7 * unit), int(anchor[0] + 0.7 * unit)
    y0, y1 = int(anchor[1] - 0.2 * unit), int(anchor[1] + 1.2 * unit)
    region = a[max(0, y0):y1, max(0, x0):x1].reshape(-1, 3).mean(axis=0)
    lum = float(region @ [0.2126, 0.7152, 0.0722])
    return lum, region[:2] / region.sum() * 100


def changes(values: list) -> float:
    v = np.asarray(values, np.float64)
    d = np.abs(np.diff(v, axis=0))
    return float((d if d.ndim == 1 else np.linalg.norm(d, axis=1)).mean())


def measure(folder: Path, tmp: Path) -> dict:
    base = Config(device="cpu", store=StoreConfig(cache_dir=str(tmp / "cache"), data_dir=str(tmp / "data")))
    out: dict = {"folder": folder.name}
    frames: dict[str, list[Path]] = {}
    for how in MODES:
        p = Pipeline(folder, replace(base, render=replace(base.render, match_colour=how)))
        try:
            p.scan()
            p.process()
            frames_dir = tmp / folder.name / how
            p.render(tmp / folder.name / f"{how}.mp4", frames_dir)
            kept = p.kept()
            fr = p.framing
            files = {f["hash"]: f["file"] for f in read_sidecar(frames_dir / FRAMES_SIDECAR)["frames"]}
            names = [frames_dir / files[r.frame.hash] for r in kept]
            stats = [face_stats(n, fr.anchor, fr.unit) for n in names]
            ref_k = next(k for k, r in enumerate(kept) if r.frame.hash == p.reference.hash)
        finally:
            p.close()
        frames[how] = names
        out[how] = {"photos": len(names), "luminance_change": round(changes([s[0] for s in stats]), 3),
                    "colour_change": round(changes([s[1] for s in stats]), 4)}
    for how in MODES[1:]:
        o = out[how]
        o["luminance_ratio"] = round(o["luminance_change"] / out["off"]["luminance_change"], 3)
        o["colour_ratio"] = round(o["colour_change"] / out["off"]["colour_change"], 3)
        ref_off = np.asarray(Image.open(frames["off"][ref_k]), np.int16)
        ref_on = np.asarray(Image.open(frames[how][ref_k]), np.int16)
        o["reference_max_diff"] = int(np.abs(ref_off - ref_on).max())
    return out


def main(argv: list[str]) -> None:
    folders = [Path(a) for a in argv] or [f for f in DEFAULT_FOLDERS if f.is_dir()]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in folders:
            r = measure(folder, Path(tmp))
            results.append(r)
            line = "  ".join(f"{how}: dY {r[how]['luminance_change']:.2f}" +
                             (f" ({r[how]['luminance_ratio']:.2f}x), d(r,g) {r[how]['colour_ratio']:.2f}x, "
                              f"ref max diff {r[how]['reference_max_diff']}" if how != "off" else
                              f", d(r,g) {r[how]['colour_change']:.3f}")
                             for how in MODES)
            print(f"{folder.name} ({r['off']['photos']} frames): {line}")
    print(json.dumps({"bench": "colour", "folders": results}))


if __name__ == "__main__":
    main(sys.argv[1:])
