"""Steady exposure and colour: frame-to-frame change of the face region's mean luminance and
colour in the output, with ``render.match_colour`` off, "brightness", "trend" and "reference", and
how far each photo's own colour (its chroma) is changed.

    .venv/bin/python bench/bench_colour.py [FOLDER ...] [--no-mixed]
    (default: the three shared face sets, and a mixed copy of faces_tony)

The mixed folder is made in a temporary folder (never in ../shared): faces_tony with every third
photo replaced by its greyscale copy and one by a sepia copy, as twenty years of selfies mix them.

Each folder is detected and registered once (a temporary cache), then rendered three times from
the same store with only ``match_colour`` changed (nothing is detected or registered again). In
every output frame the face region is the same box around the framing's eye goal (0.7 inter-ocular
distances either side, 0.2 above the eyes to 1.2 below); luminance is Rec. 709 Y of the sRGB levels
(0-255), colour the chromaticity (r, g) = (R, G) / (R + G + B) x 100. Change = mean over consecutive
frames of |difference|. Ratios are against "off" in the same run; the reference frame's largest
pixel difference from "off" shows it is left as it is. Chroma: the mean over the face region of
max(R, G, B) - min(R, G, B) in levels; per mode, the grey copies' largest mean chroma, the largest
ratio of a frame's chroma to its "off" chroma (frames whose "off" chroma is at least 2 levels),
and the sepia copy's mean R - B. Last line: one JSON object.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignimation_tui.config import Config, StoreConfig  # noqa: E402
from alignimation_tui.pipeline import Pipeline  # noqa: E402
from alignimation_tui.render import FRAMES_SIDECAR, read_sidecar  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
DEFAULT_FOLDERS = [SAMPLES / n for n in ("faces_serena", "faces_jerry", "faces_tony")]
MODES = ("off", "brightness", "trend", "reference")
GREY_EVERY = 3  # the mixed folder: every third photo greyscale
SEPIA = (1.07, 0.86, 0.62)  # the sepia copy's channel factors on its grey


def mixed_copy(source: Path, tmp: Path) -> tuple[Path, set[str], str]:
    """``source``'s photos copied into ``tmp``, every GREY_EVERY-th as greyscale, one as sepia."""
    folder = tmp / f"{source.name}_mixed"
    folder.mkdir(parents=True)
    grey, sepia = set(), ""
    for k, path in enumerate(sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))):
        if k % GREY_EVERY == 1:
            ImageOps.grayscale(Image.open(path)).convert("RGB").save(folder / path.name, quality=95)
            grey.add(path.name)
        elif k % GREY_EVERY == 2 and not sepia:
            g = np.asarray(ImageOps.grayscale(Image.open(path)), np.float64)[..., None] * SEPIA
            Image.fromarray(np.clip(g, 0, 255).astype(np.uint8)).save(folder / path.name, quality=95)
            sepia = path.name
        else:
            shutil.copy2(path, folder / path.name)
    return folder, grey, sepia


def face_stats(path: Path, anchor, unit: float) -> tuple[float, np.ndarray, float, float]:
    a = np.asarray(Image.open(path).convert("RGB"), np.float64)
    x0, x1 = int(anchor[0] - 0.7 * unit), int(anchor[0] + 0.7 * unit)
    y0, y1 = int(anchor[1] - 0.2 * unit), int(anchor[1] + 1.2 * unit)
    pixels = a[max(0, y0):y1, max(0, x0):x1].reshape(-1, 3)
    region = pixels.mean(axis=0)
    lum = float(region @ [0.2126, 0.7152, 0.0722])
    chroma = float((pixels.max(axis=1) - pixels.min(axis=1)).mean())
    return lum, region[:2] / region.sum() * 100, chroma, float(region[0] - region[2])


def changes(values: list) -> float:
    v = np.asarray(values, np.float64)
    d = np.abs(np.diff(v, axis=0))
    return float((d if d.ndim == 1 else np.linalg.norm(d, axis=1)).mean())


def measure(folder: Path, tmp: Path, grey: set[str] = frozenset(), sepia: str = "") -> dict:
    base = Config(device="cpu", store=StoreConfig(cache_dir=str(tmp / "cache"), data_dir=str(tmp / "data")))
    out: dict = {"folder": folder.name}
    frames: dict[str, list[Path]] = {}
    chroma: dict[str, list[float]] = {}
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
        chroma[how] = [s[2] for s in stats]
        out[how] = {"photos": len(names), "luminance_change": round(changes([s[0] for s in stats]), 3),
                    "colour_change": round(changes([s[1] for s in stats]), 4),
                    "chroma_mean": round(float(np.mean(chroma[how])), 2)}
        is_grey = [r.frame.path.name in grey for r in kept]
        if any(is_grey):
            out[how]["grey_chroma_max"] = round(max(c for c, g in zip(chroma[how], is_grey) if g), 2)
        if sepia:
            out[how]["sepia_r_minus_b"] = round(next(s[3] for s, r in zip(stats, kept) if r.frame.path.name == sepia), 1)
    for how in MODES[1:]:
        ratios = [c / o for c, o in zip(chroma[how], chroma["off"]) if o >= 2.0]
        out[how]["chroma_ratio_max"] = round(max(ratios), 3) if ratios else None
        o = out[how]
        o["luminance_ratio"] = round(o["luminance_change"] / out["off"]["luminance_change"], 3)
        o["colour_ratio"] = round(o["colour_change"] / out["off"]["colour_change"], 3)
        ref_off = np.asarray(Image.open(frames["off"][ref_k]), np.int16)
        ref_on = np.asarray(Image.open(frames[how][ref_k]), np.int16)
        o["reference_max_diff"] = int(np.abs(ref_off - ref_on).max())
    return out


def main(argv: list[str]) -> None:
    mixed = "--no-mixed" not in argv
    argv = [a for a in argv if a != "--no-mixed"]
    folders = [Path(a) for a in argv] or [f for f in DEFAULT_FOLDERS if f.is_dir()]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(f, set(), "") for f in folders]
        tony = SAMPLES / "faces_tony"
        if mixed and tony.is_dir():
            runs.append(mixed_copy(tony, Path(tmp)))
        for folder, grey, sepia in runs:
            r = measure(folder, Path(tmp), grey, sepia)
            results.append(r)
            line = "  ".join(f"{how}: dY {r[how]['luminance_change']:.2f}" +
                             (f" ({r[how]['luminance_ratio']:.2f}x), d(r,g) {r[how]['colour_ratio']:.2f}x, "
                              f"ref max diff {r[how]['reference_max_diff']}, chroma up to "
                              f"{r[how]['chroma_ratio_max']}x off" if how != "off" else
                              f", d(r,g) {r[how]['colour_change']:.3f}")
                             for how in MODES)
            print(f"{folder.name} ({r['off']['photos']} frames): {line}")
            if grey:
                print(f"  {len(grey)} greyscale copies, their largest mean chroma: " + ", ".join(
                    f"{how} {r[how].get('grey_chroma_max')}" for how in MODES) + f"; sepia copy R-B: " +
                    ", ".join(f"{how} {r[how].get('sepia_r_minus_b')}" for how in MODES))
    print(json.dumps({"bench": "colour", "folders": results}))


if __name__ == "__main__":
    main(sys.argv[1:])
