"""render.morph: how sharp the in-between frames stay against a crossfade, and what they cost.

    .venv/bin/python bench/bench_morph.py [FOLDER ...]      (default: the three shared face sets)
    .venv/bin/python bench/bench_morph.py --n 3 --sheet morph_sheet.png --cost-photos 40

Per folder: detected and registered once (a temporary cache), then rendered from the same store
as MP4s with the default settings (quality 20, fill blur, colour trend) three times, in this
process: plain, ``crossfade = N`` and ``morph = N``. Every frame is decoded back.

* Sharpness of the middle in-between of each pair: variance of the Laplacian (grey) of the central
  half of the frame (the middle half of its width and of its height) over the mean of the two
  photos' own figures; median over pairs. A cross-dissolve of two faces whose mouths, chins and
  hair lines differ halves the contrast there; a morph that lines them up keeps it.
* Frames: photos + (photos - 1) x N (no holds by default) and the smallest mean difference
  between neighbouring frames (every frame must differ from its neighbour).
* Cost: seconds of each render (after a first render that measures the colour statistics; plain
  twice, before and after, averaged) and the ratio morph / plain in the same process; milliseconds per
  in-between frame (the pair's correspondence shared out over its N frames, plus the frame's own
  warp) measured on the rendered photos, wall time and, on one thread, CPU time (which the other
  processes on a shared machine do not inflate). ``--cost-photos 40``: the same ratio on 40 synthetic
  12 MP phone photos (bench/synth_photos.py, kept in ``--photos``) rendered at 1080x1080, where
  decoding a photo dominates as it does for real photos.
* ``--sheet``: a contact sheet of one pair (the first folder's median pair): crossfade on top,
  morph below, photo, N in-betweens, photo.

The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from alignimation_tui.config import Config, StoreConfig  # noqa: E402
from alignimation_tui.pipeline import Pipeline  # noqa: E402

SAMPLES = ROOT.parent / "shared" / "samples"
DEFAULT_FOLDERS = [SAMPLES / n for n in ("faces_jerry", "faces_serena", "faces_tony")]


def sharpness(frame: np.ndarray) -> float:
    import cv2

    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float64)
    h, w = grey.shape
    return float(cv2.Laplacian(grey[h // 4:3 * h // 4, w // 4:3 * w // 4], cv2.CV_64F).var())


def decode(path: Path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    reader = imageio.get_reader(path)
    try:
        return [np.asarray(f) for f in reader]
    finally:
        reader.close()


def middle_figures(frames: list[np.ndarray], n: int) -> list[float]:
    """Per pair: the middle in-between's sharpness over the mean of its two photos'."""
    step = n + 1
    out = []
    for k in range(0, len(frames) - step, step):
        own = (sharpness(frames[k]) + sharpness(frames[k + step])) / 2
        out.append(sharpness(frames[k + step // 2]) / own if n % 2 else
                   (sharpness(frames[k + n // 2]) + sharpness(frames[k + n // 2 + 1])) / 2 / own)
    return out


def neighbour_difference(frames: list[np.ndarray]) -> float:
    return min(float(np.abs(a.astype(np.int16) - b).mean()) for a, b in zip(frames, frames[1:]))


def in_between_ms(frames: list[np.ndarray], n: int, pairs: int = 6) -> dict:
    """Correspondence per pair and warp per frame, on the rendered photos (every (n+1)th frame)."""
    from alignimation_tui.render.morph import correspond

    photos = frames[::n + 1]
    pick = np.linspace(0, len(photos) - 2, min(pairs, len(photos) - 1)).round().astype(int)
    pair_s, frame_s = [], []
    for k in pick:
        t0 = time.perf_counter()
        pair = correspond(photos[k], photos[k + 1])
        t1 = time.perf_counter()
        for j in range(1, n + 1):
            pair.frame(j / (n + 1))
        pair_s.append(t1 - t0)
        frame_s.append((time.perf_counter() - t1) / n)
    pair_ms, frame_ms = 1000 * statistics.median(pair_s), 1000 * statistics.median(frame_s)
    # The same work on one thread, as CPU time: what it costs whatever else the machine is doing.
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        cpu = []
        for k in pick:
            t0 = time.thread_time()
            pair = correspond(photos[k], photos[k + 1])
            for j in range(1, n + 1):
                pair.frame(j / (n + 1))
            cpu.append((time.thread_time() - t0) / n)
    finally:
        cv2.setNumThreads(threads)
    return {"correspondence_ms_per_pair": round(pair_ms, 1), "warp_ms_per_frame": round(frame_ms, 1),
            "ms_per_in_between": round(pair_ms / n + frame_ms, 1),
            "cpu_ms_per_in_between_one_thread": round(1000 * statistics.median(cpu), 1),
            "size": list(frames[0].shape[1::-1])}


def render(p: Pipeline, out: Path, **render_keys) -> float:
    p.config = replace(p.config, render=replace(p.config.render, **render_keys))
    started = time.perf_counter()
    p.render(out)
    return time.perf_counter() - started


def sheet(rows: list[list[np.ndarray]], path: Path, scale: float = 1 / 3) -> None:
    h, w = rows[0][0].shape[:2]
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
    grid = np.concatenate([np.concatenate([np.asarray(Image.fromarray(f).resize(small, Image.Resampling.LANCZOS))
                                           for f in row], 1) for row in rows], 0)
    Image.fromarray(grid).save(path)


def measure_folder(folder: Path, tmp: Path, n: int) -> tuple[dict, dict]:
    config = Config(device="cpu", store=StoreConfig(cache_dir=str(tmp / "cache"), data_dir=str(tmp / "data")))
    p = Pipeline(folder, config)
    try:
        p.scan()
        p.process()
        out = tmp / folder.name
        out.mkdir()
        render(p, out / "warm.mp4", crossfade=0, morph=0)  # measures and caches the colour statistics
        seconds = {"plain": render(p, out / "plain.mp4", crossfade=0, morph=0),
                   "crossfade": render(p, out / "crossfade.mp4", crossfade=n, morph=0),
                   "morph": render(p, out / "morph.mp4", crossfade=0, morph=n)}
        seconds["plain"] = (seconds["plain"] + render(p, out / "plain.mp4", crossfade=0, morph=0)) / 2
        photos = p.last_render.photos
    finally:
        p.close()
    frames = {k: decode(out / f"{k}.mp4") for k in ("crossfade", "morph")}
    figures = {k: middle_figures(v, n) for k, v in frames.items()}
    row = {"folder": folder.name, "photos": photos, "frames": len(frames["morph"]),
           "frames_expected": photos + (photos - 1) * n,
           "min_neighbour_difference": round(neighbour_difference(frames["morph"]), 2),
           "sharpness_crossfade": round(statistics.median(figures["crossfade"]), 3),
           "sharpness_morph": round(statistics.median(figures["morph"]), 3),
           "render_s": {k: round(v, 2) for k, v in seconds.items()},
           "render_ratio_morph_over_plain": round(seconds["morph"] / seconds["plain"], 2),
           **in_between_ms(frames["morph"], n)}
    row["sharpness_gain"] = round(row["sharpness_morph"] - row["sharpness_crossfade"], 3)
    gains = [m - c for m, c in zip(figures["morph"], figures["crossfade"])]
    k = sorted(range(len(gains)), key=gains.__getitem__)[len(gains) // 2]  # the median pair
    pair = slice(k * (n + 1), (k + 1) * (n + 1) + 1)
    return row, {"pair": k, "rows": [frames["crossfade"][pair], frames["morph"][pair]]}


def phone_photos(folder: Path, count: int) -> list[tuple[Path, np.ndarray]]:
    """``count`` synthetic 12 MP photos and their transforms (astronaut pixels -> upright photo),
    written once into ``folder`` and kept (the transforms in matrices.json beside them)."""
    from synth_photos import write_photo

    folder.mkdir(parents=True, exist_ok=True)
    index = folder / "matrices.json"
    known = json.loads(index.read_text()) if index.is_file() else {}
    out = []
    for i in range(count):
        path = folder / f"IMG_{i:05d}.jpg"
        if path.name not in known or not path.is_file():
            known[path.name] = write_photo(path, i).tolist()
            index.write_text(json.dumps(known))
        out.append((path, np.array(known[path.name])))
    return out


def cost_on_phone_photos(count: int, photos_dir: Path, tmp: Path, n: int) -> dict:
    """Plain vs morph render of ``count`` synthetic 12 MP photos onto 1080x1080, same process
    (plain twice, before and after, averaged)."""
    from alignimation_tui.render import RenderItem, RenderSettings, write_animation

    # astronaut pixels -> output: the face's middle (226, 128) near the frame's centre, 2x
    out_from_face = np.array([[2.0, 0, 540 - 2 * 226], [0, 2.0, 500 - 2 * 128], [0, 0, 1]])
    items = [RenderItem(path, path.name, out_from_face @ np.linalg.inv(m), hash=str(i))
             for i, (path, m) in enumerate(phone_photos(photos_dir, count))]
    seconds, frames = {}, {}
    for name, settings in (("plain", RenderSettings()), ("morph", RenderSettings(morph=n)),
                           ("plain_again", RenderSettings())):
        started = time.perf_counter()
        frames[name] = write_animation(items, (1080, 1080), tmp / f"phone_{name}.mp4", settings).frames
        seconds[name] = time.perf_counter() - started
    plain = (seconds["plain"] + seconds["plain_again"]) / 2
    return {"photos": count, "size": [1080, 1080], "plain_s": round(plain, 2), "morph_s": round(seconds["morph"], 2),
            "frames": [frames["plain"], frames["morph"]], "ratio_morph_over_plain": round(seconds["morph"] / plain, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path)
    ap.add_argument("--n", type=int, default=3, help="in-between frames (crossfade and morph), default 3")
    ap.add_argument("--sheet", type=Path, default=Path("bench_morph_sheet.png"), help="contact sheet PNG")
    ap.add_argument("--cost-photos", type=int, default=0, help="also time N synthetic 12 MP photos (e.g. 40)")
    ap.add_argument("--photos", type=Path, default=Path(tempfile.gettempdir()) / "bench_morph_photos",
                    help="where the synthetic photos are kept between runs")
    args = ap.parse_args()
    folders = args.folders or [f for f in DEFAULT_FOLDERS if f.is_dir()]
    rows, result = [], {"n": args.n}
    with tempfile.TemporaryDirectory(prefix="bench-morph-") as tmp:
        tmp = Path(tmp)
        for k, folder in enumerate(folders):
            row, pair = measure_folder(folder, tmp / str(k), args.n)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if k == 0:
                sheet(pair["rows"], args.sheet)
                result["sheet"] = {"path": str(args.sheet), "folder": folder.name, "pair": pair["pair"] + 1}
        if args.cost_photos:
            result["phone_photos"] = cost_on_phone_photos(args.cost_photos, args.photos, tmp, args.n)
            print(json.dumps(result["phone_photos"]), flush=True)
    result["folders"] = rows
    print(json.dumps(result))


if __name__ == "__main__":
    main()
