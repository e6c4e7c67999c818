"""Framing and borders on real photo folders, measured from the output frames.

    .venv/bin/python bench/bench_framing.py [--ruler PY] [FOLDER ...]   (default: the shared face sets)

For each folder, rendered with the default settings (a temporary cache):

* eyes: the independent ruler (``../shared/ruler/measure.py --per-frame``, MediaPipe, run by
  subprocess with its own python: ``bash ../shared/ruler/setup.sh`` prints it) finds the eyes in
  every output frame; per frame, the eye midpoint's distance from its goal (% of the width) and
  the eye distance's error against its goal fraction (%). Reported: the share of frames within
  1 % / 3 % / both, the median and 95th percentile, and the mean eye-distance bias. The same
  figures from our own detected eyes (MTCNN, through the output matrices) for comparison.
* borders: the folder copied with its levels lifted (90 + 0.6 x, so no photo pixel is black) and
  rendered with the defaults and with the old defaults (``framing = "reference"``, ``fill =
  "black"``) in the same run: the share of black pixels (all channels <= 20) in a band of 1 % of
  the short side along the edges, per frame (median, worst).
Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignimation_tui.config import Config, StoreConfig  # noqa: E402
from alignimation_tui.pipeline import Pipeline  # noqa: E402
from alignimation_tui.register import apply  # noqa: E402
from alignimation_tui.render import FRAMES_SIDECAR, read_sidecar  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEFAULT_FOLDERS = [SHARED / "samples" / n for n in ("faces_serena", "faces_jerry", "faces_tony")]
RULER = SHARED / "ruler"


def ruler_python() -> str:
    out = subprocess.run(["bash", str(RULER / "setup.sh")], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def black_border_share(path: Path, band: float = 0.01, level: int = 20) -> float:
    a = np.asarray(Image.open(path).convert("RGB"))
    h, w = a.shape[:2]
    b = max(2, round(band * min(w, h)))
    m = np.zeros((h, w), bool)
    m[:b] = m[-b:] = True
    m[:, :b] = m[:, -b:] = True
    return float((a[m].max(axis=-1) <= level).mean())


def render(folder: Path, tmp: Path, tag: str, config: Config):
    """Detect, register, render frames; returns the pipeline's kept results, framing and frame paths."""
    config = replace(config, store=StoreConfig(cache_dir=str(tmp / f"cache-{folder.name}"),
                                               data_dir=str(tmp / f"data-{folder.name}")))
    p = Pipeline(folder, config)
    try:
        p.scan()
        p.process()
        frames = tmp / f"{folder.name}-{tag}"
        p.render(tmp / f"{folder.name}-{tag}.mp4", frames)
        kept = p.kept()
        files = {f["hash"]: f["file"] for f in read_sidecar(frames / FRAMES_SIDECAR)["frames"]}
        names = [frames / files[r.frame.hash] for r in kept]
        ours = [apply(p.output_matrix(r), np.asarray(r.subject.face.landmarks[:2])) for r in kept]
        return kept, p.framing, names, ours
    finally:
        p.close()


def goal_errors(eyes: np.ndarray, framing, eye_distance: float) -> dict:
    """eyes: (N, 2, 2), image-left eye first."""
    w = framing.size[0]
    mid = np.linalg.norm(eyes.mean(axis=1) - np.asarray(framing.anchor), axis=1) / w * 100
    iod = (np.linalg.norm(eyes[:, 1] - eyes[:, 0], axis=1) / w / eye_distance - 1) * 100
    return {"frames": len(eyes), "mid_within_1pct": round(float(np.mean(mid <= 1)), 3),
            "iod_within_3pct": round(float(np.mean(np.abs(iod) <= 3)), 3),
            "both": round(float(np.mean((mid <= 1) & (np.abs(iod) <= 3))), 3),
            "mid_err_pct_median": round(float(np.median(mid)), 3), "mid_err_pct_p95": round(float(np.percentile(mid, 95)), 3),
            "iod_err_pct_mean": round(float(iod.mean()), 2), "iod_err_pct_p95_abs": round(float(np.percentile(np.abs(iod), 95)), 2)}


def lifted_copy(folder: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.glob("*.jpg")):
        img = np.asarray(Image.open(path).convert("RGB"), np.float64)
        Image.fromarray((90 + 0.6 * img).round().astype(np.uint8)).save(dest / path.name, quality=92)
    return dest


def measure(folder: Path, tmp: Path, py: str | None) -> dict:
    config = Config(device="cpu")
    kept, framing, names, ours = render(folder, tmp, "default", config)
    out: dict = {"folder": folder.name, "kept": len(kept), "size": list(framing.size)}
    eye_distance = config.render.eye_distance
    out["ours_mtcnn"] = goal_errors(np.array(ours), framing, eye_distance)
    if py:
        run = subprocess.run([py, str(RULER / "measure.py"), str(names[0].parent), "--per-frame"],
                             capture_output=True, text=True, check=True)
        ruler = json.loads(run.stdout)
        found = {f["file"]: f for f in ruler["frames"] if f.get("left_eye") is not None}
        eyes = np.array([[found[n.name]["right_eye"], found[n.name]["left_eye"]] for n in names if n.name in found])
        out["ruler"] = {**goal_errors(eyes, framing, eye_distance), "detected": len(eyes),
                        "eye_spread": ruler.get("eye_spread"), "scale_spread": ruler.get("scale_spread")}
    bright = lifted_copy(folder, tmp / f"lifted-{folder.name}")
    for tag, cfg in (("default", config),
                     ("old_default", replace(config, render=replace(config.render, framing="reference", fill="black",
                                                                    match_colour="off")))):
        _, _, bnames, _ = render(bright, tmp, tag, cfg)
        shares = [black_border_share(n) for n in bnames]
        out[f"border_black_{tag}"] = {"median": round(float(np.median(shares)), 4), "worst": round(max(shares), 4),
                                      "frames_over_1pct": int(sum(s >= 0.01 for s in shares))}
    return out


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="*", type=Path)
    ap.add_argument("--ruler", help="the ruler's python (default: from ../shared/ruler/setup.sh); 'none' to skip")
    args = ap.parse_args(argv)
    py = None if args.ruler == "none" else (args.ruler or ruler_python())
    folders = args.folders or [f for f in DEFAULT_FOLDERS if f.is_dir()]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in folders:
            r = measure(folder, Path(tmp), py)
            results.append(r)
            for who in ("ruler", "ours_mtcnn"):
                if who in r:
                    g = r[who]
                    print(f"{folder.name} {who:10s}: {g['frames']} frames, eye midpoint within 1 % of the width "
                          f"{g['mid_within_1pct']:.0%} (median {g['mid_err_pct_median']:.2f} %, p95 "
                          f"{g['mid_err_pct_p95']:.2f} %), eye distance within 3 % {g['iod_within_3pct']:.0%} "
                          f"(bias {g['iod_err_pct_mean']:+.1f} %, p95 |err| {g['iod_err_pct_p95_abs']:.1f} %), "
                          f"both {g['both']:.0%}")
            for tag in ("default", "old_default"):
                b = r[f"border_black_{tag}"]
                print(f"{folder.name} black border ({tag}): median {b['median']:.2%}, worst {b['worst']:.2%}, "
                      f"frames >= 1 %: {b['frames_over_1pct']}")
    print(json.dumps({"bench": "framing", "folders": results}))


if __name__ == "__main__":
    main(sys.argv[1:])
