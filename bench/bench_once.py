"""End-to-end throughput of ``--once`` (decode, detect, register, render) against a plain
per-image MTCNN loop, in the same process, on N synthetic 12 MP phone photos.

    .venv/bin/python bench/bench_once.py --quick                 # 12 photos, a few minutes on 2 cores
    .venv/bin/python bench/bench_once.py --n 50                  # the CPU figure
    .venv/bin/python bench/bench_once.py --device cuda --n 400   # the GPU figure
    .venv/bin/python bench/bench_once.py --rss-scaling 50,400    # peak RSS of ours for each N, in child processes

Photos: ``skimage.data.astronaut()`` placed by a random similarity on varied backgrounds, 4032x3024
JPEGs with EXIF dates and orientations (see synth_photos.py), written once and kept under
``--photos`` (default /tmp/bench_once_photos/seed0); a run uses the first N.

(a) Baseline, as facenet-pytorch's examples do it: for each photo, ``Image.open`` at full size
    (upright with ``exif_transpose``, so the faces are findable) and ``MTCNN.detect`` on it; detection
    only, nothing registered or rendered. It runs on the first ``--baseline-n`` photos (default: all
    on a GPU, 4 on a CPU, where one 12 MP photo takes seconds) and its rate is photos/s over those.
(b) Ours: ``headless.run_once`` on the folder, the real ``--once`` path, with an empty cache
    (XDG_CACHE_HOME/XDG_DATA_HOME in a temporary folder) and an MP4 out.

Peak RSS is the process's peak after (b), which runs first (the baseline's 12 MP tensors would
otherwise set it). Stage seconds come from ``Pipeline.stage_seconds``: decode is summed over the
decode threads (it overlaps detection), decode_wait is how long detection waited for a photo;
where the faces are found on worker threads side by side (a CPU), ``faces`` is the run's own time
for them and detect, landmarks, embed, quality, borders and colour are the workers' busy time,
summed over them; ``mode`` is auto mode's look at the folder.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from synth_photos import build_folder  # noqa: E402

STAGES = ("mode", "scan", "faces", "decode", "decode_wait", "detect", "landmarks", "quality", "borders", "embed",
          "select", "register",
          "colour", "render")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def cpu_seconds() -> float:
    """User + system CPU time of this process and its waited-for children (ffmpeg)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def link_folder(paths: list[Path], root: Path) -> Path:
    """A folder holding exactly these photos: hard links (nothing copied or modified), or copies
    across file systems. Not symbolic links: the scan does not follow links out of the folder."""
    folder = root / "photos"
    folder.mkdir()
    for p in paths:
        try:
            os.link(p, folder / p.name)
        except OSError:
            shutil.copyfile(p, folder / p.name)
    return folder


def main_alignment(config):
    """The alignment settings before the second landmark pass (issue 13): MTCNN's landmarks as
    they are, the eye-weighted 5-point fit and the semantic refinement."""
    from dataclasses import replace

    return replace(config, landmarks=replace(config.landmarks, rounds=0),
                   register=replace(config.register, landmark_weights=[1.0, 1.0, 0.5, 0.25, 0.25], refine=True))


def run_ours(paths: list[Path], device: str, before_issue_13: bool = False) -> dict:
    from alignimation_tui import headless
    from alignimation_tui.config import Config

    made = []

    class Recorded(headless.Pipeline):  # the same pipeline; we only keep hold of it for its timings
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    with tempfile.TemporaryDirectory(prefix="bench_once_") as tmp:
        root = Path(tmp)
        for var in ("XDG_CACHE_HOME", "XDG_DATA_HOME"):
            os.environ[var] = str(root / var.lower())
        folder = link_folder(paths, root)
        out = root / "out.mp4"
        original, headless.Pipeline = headless.Pipeline, Recorded
        try:
            started, cpu = time.perf_counter(), cpu_seconds()
            config = Config(device=device)
            code = headless.run_once(folder, main_alignment(config) if before_issue_13 else config, out)
            seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        finally:
            headless.Pipeline = original
        pipeline = made[0]
        statuses: dict[str, int] = {}
        for r in pipeline.results.values():
            statuses[r.status.value] = statuses.get(r.status.value, 0) + 1
        return {"seconds": seconds, "cpu_seconds": cpu, "exit_code": code, "device": pipeline.device, "statuses": statuses,
                "stages": {k: round(pipeline.stage_seconds.get(k, 0.0), 3) for k in STAGES},
                "mp4_bytes": out.stat().st_size if out.exists() else 0}


def run_baseline(paths: list[Path], device: str) -> dict:
    import numpy as np
    from facenet_pytorch import MTCNN
    from PIL import Image, ImageOps

    mtcnn = MTCNN(keep_all=True, device=device)
    found = 0
    decode_s = detect_s = 0.0
    started = time.perf_counter()
    for path in paths:
        t0 = time.perf_counter()
        img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        t1 = time.perf_counter()
        boxes, _, _ = mtcnn.detect(img, landmarks=True)
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        t2 = time.perf_counter()
        decode_s, detect_s = decode_s + t1 - t0, detect_s + t2 - t1
        found += boxes is not None and len(np.asarray(boxes)) > 0
    return {"seconds": time.perf_counter() - started, "photos": len(paths), "with_face": found,
            "decode": round(decode_s, 3), "detect": round(detect_s, 3)}


def rss_scaling(sizes: list[int], args) -> list[dict]:
    """Run only ours for each N in a child process; each reports its own peak RSS."""
    rows = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--child-ours", "--n", str(n), "--device", args.device,
               "--photos", str(args.photos)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"child for N={n} failed:\n{out.stderr[-3000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"N={n:4d}: ours {row['photos_per_s']:.2f} photos/s, peak RSS {row['peak_rss_mb']:.0f} MB",
              flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--n", type=int, default=50, help="photos in the folder (default 50)")
    ap.add_argument("--quick", action="store_true", help="12 photos, baseline on 2")
    ap.add_argument("--baseline-n", type=int, help="photos the baseline runs on (default: all on a GPU, 4 on a CPU)")
    ap.add_argument("--photos", type=Path, default=Path(tempfile.gettempdir()) / "bench_once_photos" / "seed0",
                    help="where the synthetic photos are kept between runs")
    ap.add_argument("--rss-scaling", help="comma-separated Ns: peak RSS of ours for each, in child processes")
    ap.add_argument("--child-ours", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--compare-alignment", action="store_true",
                    help="also run ours with the alignment before the second landmark pass (same process), "
                         "and report the ratio")
    args = ap.parse_args()

    import torch

    from alignimation_tui.models import choose_device

    device = choose_device(args.device)
    n = 12 if args.quick else args.n
    t = time.perf_counter()
    paths = build_folder(args.photos, max(n, max(map(int, args.rss_scaling.split(","))) if args.rss_scaling else 0))
    made = time.perf_counter() - t
    if args.child_ours:
        ours = run_ours(paths[:n], device)
        print(json.dumps({"n": n, "photos_per_s": n / ours["seconds"], "peak_rss_mb": round(peak_rss_mb(), 1),
                          "cpu_ms_per_photo": round(1000 * ours["cpu_seconds"] / n, 1),
                          "stages": ours["stages"], "statuses": ours["statuses"]}))
        return
    if args.rss_scaling:
        rows = rss_scaling([int(v) for v in args.rss_scaling.split(",")], args)
        print(json.dumps({"device": device, "rss_scaling": rows}))
        return
    print(f"{n} photos 4032x3024 in {args.photos} ({made:.0f} s to make the missing ones); device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs", flush=True)

    # (b) first, so the peak RSS is ours; a warm-up on 2 photos loads kernels and code paths once.
    run_ours(paths[:2], device)
    ours = run_ours(paths[:n], device)
    ours_rss = peak_rss_mb()
    ours_rate = n / ours["seconds"]
    print(f"ours     : {ours_rate:6.2f} photos/s  ({n} photos in {ours['seconds']:.1f} s, exit {ours['exit_code']}, "
          f"{ours['statuses']}), peak RSS {ours_rss:.0f} MB", flush=True)
    print(f"  CPU time {ours['cpu_seconds']:.1f} s = {1000 * ours['cpu_seconds'] / n:.0f} ms per photo "
          f"(all threads and ffmpeg; {os.getloadavg()[0]:.1f} load average: other programs share these cores)",
          flush=True)
    print("  stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in ours["stages"].items()), flush=True)
    print("  per photo (ms): " + ", ".join(f"{k} {1000 * v / n:.0f}" for k, v in ours["stages"].items()), flush=True)
    before = None
    if args.compare_alignment:
        before = run_ours(paths[:n], device, before_issue_13=True)
        again = run_ours(paths[:n], device)  # ours again: the load on the machine changes over time
        before_rate, again_rate = n / before["seconds"], n / again["seconds"]
        print(f"ours, alignment before the second pass: {before_rate:6.2f} photos/s; ours again: {again_rate:6.2f} "
              f"photos/s; ratio (mean of ours) / before = {(ours_rate + again_rate) / 2 / before_rate:.2f}", flush=True)
        print("  before, per photo (ms): " + ", ".join(f"{k} {1000 * v / n:.0f}" for k, v in before["stages"].items()),
              flush=True)
        before = {"photos_per_s": round(before_rate, 3), "ours_again_photos_per_s": round(again_rate, 3),
                  "stages": before["stages"], "statuses": before["statuses"]}

    bn = min(n, args.baseline_n or (2 if args.quick else (n if device == "cuda" else 4)))
    base = run_baseline(paths[:1], device)  # warm-up
    base = run_baseline(paths[:bn], device)
    base_rate = bn / base["seconds"]
    print(f"baseline : {base_rate:6.2f} photos/s  ({bn} photos in {base['seconds']:.1f} s: decode {base['decode']:.1f} s, "
          f"MTCNN {base['detect']:.1f} s; {base['with_face']}/{bn} with a face), detection only", flush=True)
    print(f"speedup  : {ours_rate / base_rate:.1f}x (ours end to end vs baseline detection only)", flush=True)
    print(json.dumps({
        "ours_photos_per_s": round(ours_rate, 3), "baseline_photos_per_s": round(base_rate, 3),
        "speedup": round(ours_rate / base_rate, 2), "device": device, "peak_rss_mb": round(ours_rss, 1),
        "stages": ours["stages"], "n": n, "baseline_n": bn,
        "ours_cpu_ms_per_photo": round(1000 * ours["cpu_seconds"] / n, 1),
        "baseline_stages": {"decode": base["decode"], "detect": base["detect"]},
        "peak_rss_mb_after_baseline": round(peak_rss_mb(), 1),
        **({"alignment_before_second_pass": before} if before else {}),
    }))


if __name__ == "__main__":
    main()
