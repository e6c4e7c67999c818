"""x264's CPU time, file size and SSIM for each encoder choice, on real timelapse frames.

    .venv/bin/python bench/bench_encoder.py                       # the sample folders and 12 MP photos
    .venv/bin/python bench/bench_encoder.py --crossfade 0 --folders ../shared/samples/faces_tony

The frames are what ``--once --frames`` writes for each folder (the real pipeline, 1080x1080 face
framing; a fresh cache in a temporary folder), read back as RGB, then laid out by the render's own
timing with ``--crossfade`` blend frames between photos (as the render blends them). Each
candidate encodes the same frames through the render's ffmpeg writer (``writers._Ffmpeg``) at
CRF 20, two x264 threads, three times; the lowest CPU time (ffmpeg's, from ``RUSAGE_CHILDREN``)
counts. SSIM is ffmpeg's, in YUV 4:2:0, of the decoded file against the frames. Ratios are against
ours (what the render chooses for these frames, first row: with or without B-frames) and ``slow``,
in the same run. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from alignimation_tui.render.writers import CUT_LOOKAHEAD, x264_params  # noqa: E402  (after the path above)

SAMPLES = HERE.parent.parent / "shared" / "samples"
# (label, preset, extra x264 params), after ours: what the render chooses for the frames (its
# ``PRESET_TUNING``, and B-frames where ``writers.b_frames_pay`` finds they pay), the first row.
CANDIDATES = [("ours with B-frames", "veryfast", x264_params("veryfast", b_frames=True)),
              ("ours without B-frames", "veryfast", x264_params("veryfast", b_frames=False)),
              ("ours without B-frames, x264's look-ahead", "veryfast",
               x264_params("veryfast", b_frames=False).replace(":" + CUT_LOOKAHEAD, "")),
              ("veryfast", "veryfast", None),
              ("veryfast me=dia subme=1 no 8x8 inter", "veryfast", "me=dia:subme=1:partitions=i8x8,i4x4"),
              ("superfast", "superfast", None),
              ("faster", "faster", None),
              ("slow", "slow", None)]


def our_choice(photos: list[np.ndarray], crossfade: int) -> tuple[str, str, str]:
    """The render's own choice for these photos (its first ones, as many as it looks at)."""
    from alignimation_tui.render.writers import b_frames_pay, look_ahead_photos

    h, w = photos[0].shape[:2]
    pay = b_frames_pay(photos[:look_ahead_photos((w, h))], crossfade)
    return f"ours ({'with' if pay else 'without'} B-frames)", "veryfast", x264_params("veryfast", pay)


def frames_for(folder: Path, work: Path) -> Path:
    """``--once --frames`` on ``folder`` with a fresh cache: the aligned frames as JPEGs."""
    out = work / "frames" / folder.name
    if not out.is_dir():
        env = dict(os.environ, XDG_CACHE_HOME=str(work / "cache"), XDG_DATA_HOME=str(work / "data"),
                   PYTHONPATH=str(HERE.parent))
        subprocess.run([sys.executable, "-m", "alignimation_tui", str(folder), "--once", "--frames", str(out),
                        "--out", str(work / f"{folder.name}.mp4")], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def photos_of(frames_dir: Path) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(frames_dir.glob("*.jpg"))]


def sequence(pics: list[np.ndarray], crossfade: int, fps: float = 8.0) -> list[np.ndarray]:
    import cv2

    from alignimation_tui.render.timing import plan_timing

    out = []
    for step in plan_timing(len(pics), fps, crossfade=crossfade).steps():
        frame = pics[step.a] if step.b is None else cv2.addWeighted(pics[step.a], 1 - step.alpha, pics[step.b],
                                                                    step.alpha, 0.0)
        out += [frame] * step.repeat
    return out


def encode(frames: list[np.ndarray], preset: str, params: str | None, out: Path) -> tuple[float, int]:
    """ffmpeg's CPU seconds and the file's bytes."""
    from alignimation_tui.render.writers import _Ffmpeg

    h, w = frames[0].shape[:2]
    writer = _Ffmpeg(out, (w, h), 8.0, "libx264",
                     ["-crf", "20", "-preset", preset, *(["-x264-params", params] if params else []),
                      "-threads", "2", "-movflags", "+faststart"], macro_block_size=2)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    writer.start()
    for f in frames:
        writer.add(f)
    staged = writer.finish()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.replace(staged.path, out)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), out.stat().st_size


def ssim(frames: list[np.ndarray], path: Path, work: Path) -> float:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    raw = work / "source.rgb"
    with open(raw, "wb") as f:
        for frame in frames:
            f.write(np.ascontiguousarray(frame).tobytes())
    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-i", str(path), "-f", "rawvideo",
                        "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "8", "-i", str(raw), "-lavfi",
                        "[0:v]format=yuv420p[a];[1:v]format=yuv420p[b];[a][b]ssim", "-f", "null", "-"],
                       capture_output=True, text=True)
    raw.unlink()
    return float(re.search(r"All:([0-9.]+)", r.stderr).group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folders", nargs="*", type=Path,
                    help="photo folders (default: the three face sample folders and 30 of bench_once's 12 MP photos)")
    ap.add_argument("--crossfade", default="0,3", help="comma-separated blend frames between photos (default 0,3)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_encoder_"))
    folders = args.folders
    if not folders:
        from bench_once import link_folder
        from synth_photos import build_folder

        photos = build_folder(Path(tempfile.gettempdir()) / "bench_once_photos" / "seed0", 30)[:30]
        twelve = link_folder(photos, work).rename(work / "12mp")  # hard links: the scan follows no link out
        folders = [SAMPLES / f"faces_{n}" for n in ("tony", "serena", "jerry") if (SAMPLES / f"faces_{n}").is_dir()]
        folders.append(twelve)
    results = []
    for folder in folders:
        photos = photos_of(frames_for(folder.resolve(), work))
        for crossfade in map(int, args.crossfade.split(",")):
            frames = sequence(photos, crossfade)
            rows = []
            for label, preset, params in [our_choice(photos, crossfade), *CANDIDATES]:
                out = work / "encoded.mp4"
                cpu = min(encode(frames, preset, params, out)[0] for _ in range(3))
                rows.append({"candidate": label, "cpu_ms_per_frame": round(1000 * cpu / len(frames), 1),
                             "bytes": out.stat().st_size, "ssim": ssim(frames, out, work)})
            ours, slow = rows[0], rows[-1]
            h, w = frames[0].shape[:2]
            print(f"== {folder.name}, crossfade {crossfade}: {len(frames)} frames {w}x{h}", flush=True)
            for r in rows:
                r["cpu_vs_ours"] = round(r["cpu_ms_per_frame"] / ours["cpu_ms_per_frame"], 2)
                r["size_vs_ours"] = round(r["bytes"] / ours["bytes"], 2)
                r["size_vs_slow"] = round(r["bytes"] / slow["bytes"], 2)
                print(f"  {r['candidate']:42s} CPU {r['cpu_ms_per_frame']:6.1f} ms/frame ({r['cpu_vs_ours']:.2f}x)  "
                      f"size {r['bytes'] / 1024:6.0f} kB ({r['size_vs_ours']:.2f}x ours, {r['size_vs_slow']:.2f}x slow)"
                      f"  SSIM {r['ssim']:.4f}", flush=True)
            results.append({"folder": folder.name, "crossfade": crossfade, "frames": len(frames), "rows": rows})
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
