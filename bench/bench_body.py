"""Body mode, measured on the real side views of ``../shared/samples/body_standing`` (and
``body_other``): an exact check of the registration, and the detection's cost.

    .venv/bin/python bench/bench_body.py                 # 4 warps of each side view, closed form and refined
    .venv/bin/python bench/bench_body.py --warps 8 --device cuda

The exact check: each side view is warped by known random similarities (turn within +-15 degrees,
scale 0.6-1.4, shift up to 10 % of the photo) into new photos of the same size; body mode runs on
the original and its warps (the original as the reference), and each recovered transform is
compared with the truth: where the warped photo's body lands against where the original's does,
at the reference's keypoints (ear, shoulder, hip, knee, ankle, on both sides) and its person
mask's outline, in % of the body's height on the canvas. Printed per setting: median and 90th
percentile of the error, and its ratio to the error left unaligned (the warped photos as they are).

The detection's cost: BlazePose per photo at ``body.detect_size`` (decode excluded), and the
decode, per photo.

``--big N``: a whole ``--once`` (its own process, fresh cache, default config: auto mode, MP4) on N
photos at 12 MP (3024x4032, the side and front views enlarged and shifted at random), in photos/s
and peak RSS, against a plain loop that only decodes the same photos at full size in this process
(the machine's speed, as a yardstick). The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alignimation_tui.config import Config, RegisterConfig, StoreConfig  # noqa: E402
from alignimation_tui.detect.body import KEYPOINT_NAMES, BodyDetector  # noqa: E402
from alignimation_tui.modes.body import BodyConfig  # noqa: E402
from alignimation_tui.photos import open_photo  # noqa: E402
from alignimation_tui.pipeline import Pipeline  # noqa: E402
from alignimation_tui.register import apply  # noqa: E402

SAMPLES = ROOT.parent / "shared" / "samples"
CHECK_PARTS = ("ear", "shoulder", "hip", "knee", "ankle")


def random_similarity(rng, width: int, height: int) -> np.ndarray:
    """3x3: original pixels -> warped photo pixels, about the photo's centre."""
    a = np.deg2rad(rng.uniform(-15, 15))
    s = rng.uniform(0.6, 1.4)
    t = rng.uniform(-0.1, 0.1, 2) * [width, height]
    c = np.array([width / 2, height / 2])
    r = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m = np.eye(3)
    m[:2, :2], m[:2, 2] = r, c + t - r @ c
    return m


def make_folder(photo: Path, folder: Path, warps: int, rng) -> dict[str, np.ndarray]:
    """The original (dated first) and its warps; name -> truth (original -> that photo)."""
    import cv2

    img = np.asarray(Image.open(photo).convert("RGB"))
    h, w = img.shape[:2]
    truths = {"a_original.jpg": np.eye(3)}
    Image.fromarray(img).save(folder / "a_original.jpg", quality=92)
    for i in range(warps):
        m = random_similarity(rng, w, h)
        # continuous coordinates (pixel centres at +0.5) -> cv2's integer indices
        shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
        warped = cv2.warpAffine(img, (np.linalg.inv(shift) @ m @ shift)[:2], (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        name = f"b_warp{i}.jpg"
        Image.fromarray(warped).save(folder / name, quality=92)
        truths[name] = m
    return truths


def check_points(p: Pipeline, ref_name: str) -> np.ndarray:
    """The reference photo's points to compare at: its keypoints on both sides, and its mask's outline."""
    r = next(r for r in p.results.values() if r.frame.path.name == ref_name)
    person = r.subject.person
    pts = [person.keypoints[KEYPOINT_NAMES.index(f"{side}_{part}")] for part in CHECK_PARTS
           for side in ("left", "right")]
    mask = p.mode._mask(r)
    if mask is not None:
        import cv2

        contours, _ = cv2.findContours((mask >= 128).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        if contours:
            outline = max(contours, key=len)[:, 0].astype(np.float64)[::4] + 0.5
            pts.extend(outline * [r.detection.width / mask.shape[1], r.detection.height / mask.shape[0]])
    return np.asarray(pts, np.float64)


def measure(folders, refine: bool, device: str, work_size: int, iterations: int, cache: Path,
            verbose: bool = False) -> dict:
    errors, unaligned = [], []
    for folder, truths in folders:
        cfg = Config(mode="body", device=device,
                     store=StoreConfig(cache_dir=str(cache), data_dir=str(cache / "data")),
                     register=replace(RegisterConfig(), reference="a_original.jpg", refine=refine,
                                      work_size=work_size, iterations=iterations),
                     sections={"body": BodyConfig()})
        p = Pipeline(folder, cfg)
        try:
            p.scan()
            p.detect()
            p.select()
            ref = p.register()
            pts = check_points(p, "a_original.jpg")
            rs = {r.frame.path.name: r for r in p.results.values()}
            m_ref = np.asarray(rs["a_original.jpg"].transform.matrix)
            on_canvas = apply(m_ref, pts)
            height = np.ptp(on_canvas[:, 1])
            for name, truth in truths.items():
                if name == "a_original.jpg":
                    continue
                r = rs[name]
                if r.transform is None:
                    print(f"  {folder.name}/{name}: {r.status.value} ({r.error})", file=sys.stderr)
                    errors.append(np.inf)
                    continue
                got = apply(np.asarray(r.transform.matrix) @ truth, pts)
                errors.append(np.sqrt(np.mean(np.sum((got - on_canvas) ** 2, 1))) / height * 100)
                if verbose:
                    print(f"  {folder.name}/{name}: {errors[-1]:.2f} %", file=sys.stderr)
                as_is = apply(m_ref @ truth, pts)
                unaligned.append(np.sqrt(np.mean(np.sum((as_is - on_canvas) ** 2, 1))) / height * 100)
        finally:
            p.close()
    e, u = np.array(errors), np.array(unaligned)
    return {"median_pct": float(np.median(e)), "p90_pct": float(np.percentile(e, 90)), "max_pct": float(e.max()),
            "unaligned_median_pct": float(np.median(u)), "ratio_to_unaligned": float(np.median(e) / np.median(u)),
            "n": int(len(e))}


def detection_cost(photos: list[Path], size: int) -> dict:
    det = BodyDetector(mask_size=BodyConfig().mask_size)
    decode, detect = [], []
    for path in photos:
        t0 = time.perf_counter()
        d = open_photo(path, max_side=size, resize_within=1.3)
        t1 = time.perf_counter()
        det.detect_one(d)
        t2 = time.perf_counter()
        decode.append(t1 - t0)
        detect.append(t2 - t1)
    return {"detect_ms": 1000 * float(np.median(detect)), "decode_ms": 1000 * float(np.median(decode)),
            "photos": len(photos)}


def big_once(n: int, tmp: Path, rng) -> dict:
    import resource
    import subprocess

    folder = tmp / "big"
    folder.mkdir()
    sources = sorted((SAMPLES / "body_standing").glob("*.JPG"))
    for i in range(n):
        img = Image.open(sources[i % len(sources)]).convert("RGB").resize((3024, 4032), Image.Resampling.BILINEAR)
        dx, dy = rng.integers(-150, 150, 2)
        img = img.transform(img.size, Image.Transform.AFFINE, (1, 0, int(dx), 0, 1, int(dy)))
        img.save(folder / f"week{i:03d}.jpg", quality=90)
    t = time.perf_counter()
    for path in sorted(folder.iterdir()):
        Image.open(path).load()
    decode = time.perf_counter() - t
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp / "bigcache"), "XDG_DATA_HOME": str(tmp / "bigdata")}
    t = time.perf_counter()
    command = Path(sys.executable).with_name("alignimation-tui")  # the installed command, as a user runs it
    subprocess.run([str(command), str(folder), "--once", "--out", str(tmp / "big.mp4")],
                   check=True, env=env, capture_output=True)
    once = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"photos": n, "once_s": once, "photos_per_s": n / once, "decode_only_photos_per_s": n / decode,
            "ratio_to_decode_only": (n / once) / (n / decode), "peak_rss_mb": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--warps", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=Path, default=SAMPLES)
    ap.add_argument("--verbose", action="store_true", help="each warp's error on stderr")
    ap.add_argument("--big", type=int, default=0, help="also time --once on this many 12 MP photos")
    args = ap.parse_args()
    sides = sorted((args.samples / "body_standing").glob("*_side_*")) + sorted((args.samples / "body_other").glob("*_side_*"))
    if not sides:
        sys.exit(f"no side views under {args.samples}")
    rng = np.random.default_rng(args.seed)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folders = []
        for i, photo in enumerate(sides):
            folder = tmp / f"set{i}"
            folder.mkdir()
            folders.append((folder, make_folder(photo, folder, args.warps, rng)))
        cost = detection_cost(sides, BodyConfig().detect_size)
        print(f"detection: {cost['detect_ms']:.0f} ms a photo at {BodyConfig().detect_size} px "
              f"(decode {cost['decode_ms']:.0f} ms), {cost['photos']} photos")
        out["detection"] = cost
        if args.big:
            big = big_once(args.big, tmp, rng)
            print(f"--once on {big['photos']} photos at 12 MP: {big['once_s']:.1f} s, {big['photos_per_s']:.2f} photos/s "
                  f"({big['ratio_to_decode_only']:.2f}x a plain full-size decode loop's "
                  f"{big['decode_only_photos_per_s']:.2f}); peak RSS {big['peak_rss_mb']:.0f} MB")
            out["big"] = big
        for label, refine, work, iters in (("closed form", False, 64, 0), ("refined 64 px", True, 64, 30),
                                           ("refined 128 px", True, 128, 30), ("refined 128 px x60", True, 128, 60)):
            t = time.perf_counter()
            res = measure(folders, refine, args.device, work, iters, tmp / "cache", args.verbose)
            res["seconds"] = time.perf_counter() - t
            out[label] = res
            print(f"{label:20s} median {res['median_pct']:.2f} %  p90 {res['p90_pct']:.2f} %  max {res['max_pct']:.2f} % "
                  f"of the body height; unaligned {res['unaligned_median_pct']:.1f} %; ratio {res['ratio_to_unaligned']:.3f} "
                  f"({res['n']} warps, {res['seconds']:.1f} s)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
