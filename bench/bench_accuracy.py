"""Alignment accuracy by an independent ruler: ``--once`` on folders, each candidate setting, and
MediaPipe's eyes measured on the aligned frames (../shared/ruler, its own venv, by subprocess; the
project never imports MediaPipe).

    .venv/bin/python bench/bench_accuracy.py                                # shared face folders, every candidate
    .venv/bin/python bench/bench_accuracy.py DIR [DIR...] --candidates default,main

Per folder and candidate: kept (photos in the output / photos), turned (by the facing rule), eye
spread (the ruler's headline, in inter-ocular distances), eye_err_max, and the seconds per photo of
each step the candidate touches (detect = MTCNN, landmarks = the second landmark pass, register = the fit), from
``Pipeline.stage_seconds`` of the same run, each run with an empty cache. The last line is one JSON
object. Candidates are settings only (the [landmarks], [register] and [facing] config sections),
the same for every folder.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from alignimation_tui import headless  # noqa: E402
from alignimation_tui.config import Config  # noqa: E402

SHARED = HERE.parent.parent / "shared"
RULER = SHARED / "ruler"
FOLDERS = [SHARED / "samples" / n for n in ("faces_serena", "faces_jerry", "faces_tony")]
EYES = [1.0, 1.0, 0.0, 0.0, 0.0]
EYES_STRONG = [1.0, 1.0, 0.1, 0.05, 0.05]
MAIN_WEIGHTS = [1.0, 1.0, 0.5, 0.25, 0.25]

# name -> (landmarks settings, register settings[, facing settings]); None = the defaults. "main" is
# the alignment before the second pass (and its facing rule).
CANDIDATES = {
    "main": (dict(rounds=0), dict(landmark_weights=MAIN_WEIGHTS, refine=True), dict(max_yaw_deg=35.0)),
    "eyes-fit": (dict(rounds=0), dict(landmark_weights=EYES, refine=False)),
    "redetect": (dict(rounds=3, mirror=False, jitter=0.0), dict(landmark_weights=EYES, refine=False)),
    "mirror": (dict(rounds=1, mirror=True, jitter=0.0), dict(landmark_weights=EYES, refine=False)),
    "jitter": (dict(rounds=1, mirror=False, jitter=0.05), dict(landmark_weights=EYES, refine=False)),
    "redetect+mirror": (dict(rounds=3, mirror=True, jitter=0.0), dict(landmark_weights=EYES, refine=False)),
    "redetect+mirror+jitter": (dict(rounds=3, mirror=True, jitter=0.05), dict(landmark_weights=EYES, refine=False)),
    "all-2rounds": (dict(rounds=2, mirror=True, jitter=0.05), dict(landmark_weights=EYES, refine=False)),
    "all+eyes-strong-fit": (dict(rounds=3, mirror=True, jitter=0.05), dict(landmark_weights=EYES_STRONG, refine=False)),
    "all+eyes-fit+refine": (dict(rounds=3, mirror=True, jitter=0.05), dict(landmark_weights=EYES, refine=True)),
    "all+main-fit": (dict(rounds=3, mirror=True, jitter=0.05), dict(landmark_weights=MAIN_WEIGHTS, refine=True)),
    "all-1round": (dict(rounds=1, mirror=True, jitter=0.05), dict(landmark_weights=EYES, refine=False)),
    "redetect2+mirror": (dict(rounds=2, mirror=True, jitter=0.0), dict(landmark_weights=EYES, refine=False)),
    "default": (None, None),
}
STEPS = ("detect", "landmarks", "register")


def ruler_python() -> str:
    out = subprocess.run(["bash", str(RULER / "setup.sh")], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def config_for(name: str, device: str = "auto") -> Config:
    lm, rg, *facing = CANDIDATES[name]
    c = Config(device=device)
    if facing:
        c = replace(c, facing=replace(c.facing, **facing[0]))
    if lm is not None:
        c = replace(c, landmarks=replace(c.landmarks, **lm))
    if rg is not None:
        c = replace(c, register=replace(c.register, **rg))
    return c


def run_candidate(folder: Path, name: str, ruler: str, device: str = "auto") -> dict:
    made = []

    class Recorded(headless.Pipeline):  # the same pipeline; kept only for its timings
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    with tempfile.TemporaryDirectory(prefix="bench_accuracy_") as tmp:
        root = Path(tmp)
        for var in ("XDG_CACHE_HOME", "XDG_DATA_HOME"):
            os.environ[var] = str(root / var.lower())
        frames = root / "frames"
        original, headless.Pipeline = headless.Pipeline, Recorded
        try:
            started = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):  # --once's own progress and summary
                headless.run_once(folder, config_for(name, device), root / "out.mp4", frames_dir=frames)
            seconds = time.perf_counter() - started
        finally:
            headless.Pipeline = original
        p = made[0]
        photos = len(p.results)
        kept = len(p.kept())
        turned = sum(r.status.value == "turned" for r in p.results.values())
        measured = subprocess.run([ruler, str(RULER / "measure.py"), str(frames)], capture_output=True, text=True)
        if measured.returncode != 0:
            raise SystemExit(f"ruler failed on {folder}:\n{measured.stderr[-2000:]}")
        m = json.loads(measured.stdout.strip().splitlines()[-1])
    per_photo = {k: round(p.stage_seconds.get(k, 0.0) / max(photos, 1), 4) for k in STEPS}
    return {"folder": folder.name, "candidate": name, "photos": photos, "kept": kept, "turned": turned,
            "ruler_found": m.get("n_detected"), "eye_spread": m.get("eye_spread"),
            "eye_err_max": m.get("eye_err_max"), "eye_err_median": m.get("eye_err_median"),
            "s_per_photo": per_photo, "seconds": round(seconds, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="*", type=Path, default=FOLDERS)
    ap.add_argument("--candidates", default=",".join(CANDIDATES),
                    help=f"comma-separated, from {', '.join(CANDIDATES)} (default: all)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = ap.parse_args()
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    for n in names:
        if n not in CANDIDATES:
            raise SystemExit(f"unknown candidate {n!r}; choose from {', '.join(CANDIDATES)}")
    ruler = ruler_python()
    rows = []
    print(f"{'folder':<14} {'candidate':<24} {'kept':>7} {'turned':>6} {'spread':>7} {'err_max':>7} "
          + " ".join(f"{s + ' s/ph':>14}" for s in STEPS), flush=True)
    for folder in args.folders:
        for name in names:
            row = run_candidate(folder, name, ruler, args.device)
            rows.append(row)
            print(f"{row['folder']:<14} {name:<24} {row['kept']:>3}/{row['photos']:<3} {row['turned']:>6} "
                  f"{row['eye_spread']:>7.4f} {row['eye_err_max']:>7.4f} "
                  + " ".join(f"{row['s_per_photo'][s]:>14.4f}" for s in STEPS), flush=True)
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
