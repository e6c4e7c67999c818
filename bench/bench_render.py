"""Render memory and speed: peak RSS and frames/s for 50 and 500 frames at 1080p.

    .venv/bin/python bench/bench_render.py                  # MP4, 50 and 500 frames, plain and full
    .venv/bin/python bench/bench_render.py --quick          # 20 and 100 frames
    .venv/bin/python bench/bench_render.py --formats mp4,webp,gif

Synthetic 1920x1080 JPEG photos (24 distinct files, used in turn), each frame with its own
similarity jitter, rendered onto a 1920x1080 canvas. Every run is a fresh child process, so each
peak is its own: ``ru_maxrss`` of the child (our process; the ffmpeg encoder is its own process
and reported apart). Two settings, compared in the same run: ``plain`` (the defaults: canvas,
black border) and ``full`` (shared crop, crossfade 1, caption, smoothing 5, hold 0.5 s at each
end).
The memory ratio (peak at the large count / peak at the small count) must stay near 1: frames
stream through. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

W, H = 1920, 1080
DISTINCT = 24


def make_photos(folder: Path) -> list[Path]:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    paths = []
    x, y = np.meshgrid(np.linspace(0, 1, W // 8), np.linspace(0, 1, H // 8))
    for i in range(DISTINCT):
        base = np.stack([90 + 120 * x, 80 + 120 * y, 160 - 80 * x * y], -1) + rng.uniform(-25, 25, (H // 8, W // 8, 3))
        img = Image.fromarray(base.clip(0, 255).astype(np.uint8)).resize((W, H), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(img)
        cx, cy = W / 2 + rng.uniform(-40, 40), H / 2 + rng.uniform(-30, 30)
        draw.ellipse((cx - 180, cy - 240, cx + 180, cy + 240), fill=(224, 172, 140))  # a face-sized blob
        draw.ellipse((cx - 90, cy - 60, cx - 40, cy - 30), fill=(40, 30, 30))
        draw.ellipse((cx + 40, cy - 60, cx + 90, cy - 30), fill=(40, 30, 30))
        path = folder / f"photo{i:02d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def settings_for(name: str):
    from alignimation_tui.render import CaptionStyle, RenderSettings

    if name == "plain":
        return RenderSettings(fps=25)
    return RenderSettings(fps=25, crop="shared", crossfade=1, hold_first=0.5, hold_last=0.5, smoothing=5,
                          caption=CaptionStyle("week {weeks} %Y-%m-%d", "bottom-left", 0.05))


def child(args) -> None:
    """One render in this process; prints one JSON line."""
    from datetime import datetime, timedelta

    from alignimation_tui.render import RenderItem, write_animation

    photos = sorted(Path(args.photos).glob("*.jpg"))
    rng = np.random.default_rng(1)
    items = []
    for k in range(args.n):
        a, s = math.radians(rng.normal(0, 1.0)), 1.06 + rng.normal(0, 0.01)
        c, si = s * math.cos(a), s * math.sin(a)
        tx, ty = rng.normal(0, 6), rng.normal(0, 6)
        m = np.array([[c, -si, W / 2 - c * W / 2 + si * H / 2 + tx], [si, c, H / 2 - si * W / 2 - c * H / 2 + ty],
                      [0, 0, 1.0]])
        p = photos[k % len(photos)]
        items.append(RenderItem(p, f"{k:04d}_{p.name}", m, hash=str(k), taken_at=datetime(2024, 1, 1) + timedelta(days=k),
                                size=(W, H)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = write_animation(items, (W, H), Path(args.out), settings_for(args.settings))
    seconds = time.perf_counter() - started
    print(json.dumps({"n": args.n, "settings": args.settings, "format": Path(args.out).suffix[1:],
                      "seconds": seconds, "photos_per_s": args.n / seconds, "frames": result.frames,
                      "frames_per_s": result.frames / seconds, "size": list(result.size), "bytes": result.bytes,
                      "rss_before_mb": before / 1024,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "encoder_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def run_child(photos: Path, out: Path, n: int, settings: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--photos", str(photos), "--out", str(out), "--n", str(n),
           "--settings", settings]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="20 and 100 frames instead of 50 and 500")
    p.add_argument("--formats", default="mp4", help="comma-separated: mp4, webp, gif (default: mp4)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--photos", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--settings", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    small, large = (20, 100) if args.quick else (50, 500)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        tmp = Path(tmp)
        (tmp / "photos").mkdir()
        make_photos(tmp / "photos")
        print(f"{DISTINCT} synthetic {W}x{H} photos; canvas {W}x{H}; one child process per run")
        for fmt in args.formats.split(","):
            for settings in ("plain", "full"):
                for n in (small, large):
                    r = run_child(tmp / "photos", tmp / f"out_{settings}_{n}.{fmt}", n, settings)
                    rows.append(r)
                    print(f"{fmt:<4} {settings:<5} {n:>4} photos -> {r['frames']:>4} frames {r['size'][0]}x{r['size'][1]}"
                          f"  {r['frames_per_s']:6.1f} frames/s  {r['photos_per_s']:6.1f} photos/s  peak RSS "
                          f"{r['peak_rss_mb']:6.0f} MB (after imports {r['rss_before_mb']:.0f} MB; encoder "
                          f"{r['encoder_peak_rss_mb']:.0f} MB)  {r['bytes'] / 1e6:.1f} MB")
    summary = {}
    for fmt in args.formats.split(","):
        for settings in ("plain", "full"):
            a, b = (next(r for r in rows if r["format"] == fmt and r["settings"] == settings and r["n"] == n)
                    for n in (small, large))
            ratio = b["peak_rss_mb"] / a["peak_rss_mb"]
            print(f"{fmt} {settings}: peak RSS {large} vs {small} photos: {ratio:.2f}x")
            summary[f"{fmt}_{settings}"] = {
                f"peak_rss_mb_{small}": round(a["peak_rss_mb"], 1), f"peak_rss_mb_{large}": round(b["peak_rss_mb"], 1),
                "rss_ratio": round(ratio, 3), f"frames_per_s_{small}": round(a["frames_per_s"], 2),
                f"frames_per_s_{large}": round(b["frames_per_s"], 2), f"photos_per_s_{large}": round(b["photos_per_s"], 2)}
        full, plain = summary[f"{fmt}_full"], summary[f"{fmt}_plain"]
        print(f"{fmt}: full settings vs plain, photos/s at {large}: "
              f"{full[f'photos_per_s_{large}'] / plain[f'photos_per_s_{large}']:.2f}x")
    print(json.dumps({"size": f"{W}x{H}", "counts": [small, large], **summary}))


if __name__ == "__main__":
    main()
