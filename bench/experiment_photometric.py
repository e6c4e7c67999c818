"""Candidate 3 of issue 13, as an experiment (not in the pipeline): image-driven groupwise
refinement on top of the default landmark alignment, measured with the ruler.

    .venv/bin/python bench/experiment_photometric.py [FOLDER...] [--bound 0.03]

For each folder: the default pipeline aligns every photo; each kept frame's eye region (a square
of 3 inter-ocular distances around the reference's eye centre on the canvas, at 96 px) is cut from
the photo through its transform, made lighting-robust (grey, local contrast normalised: minus a
Gaussian blur, over the local standard deviation) and weighted towards the eye and brow band. Then,
as in congealing, every frame gets a small similarity correction (about the eye centre) that
brings it onto the weighted mean of all frames, two rounds of 60 Adam steps, all frames in one
batch (kornia). The correction is bounded (tanh): shift at most ``--bound`` inter-ocular distances,
rotation 1.5 degrees, scale 2 %. The ruler measures the frames before and after. Last line: JSON.
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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench_accuracy import FOLDERS, RULER, ruler_python  # noqa: E402

from alignimation_tui.config import Config  # noqa: E402
from alignimation_tui.domain import Transform  # noqa: E402
from alignimation_tui.photos import open_photo  # noqa: E402
from alignimation_tui.pipeline import Pipeline  # noqa: E402

SIZE = 96


def lcn(x, sigma: float = 4.0):
    import kornia

    g = x.mean(1, keepdim=True)
    k = int(2 * round(3 * sigma) + 1)
    mu = kornia.filters.gaussian_blur2d(g, (k, k), (sigma, sigma))
    d = g - mu
    sd = kornia.filters.gaussian_blur2d(d * d, (k, k), (sigma, sigma)).sqrt()
    return d / (sd + 0.1 * sd.mean())


def crops_and_frames(p: Pipeline, kept, centre, iod):
    """Each kept frame's eye region on the canvas (SIZE px, 3 IOD wide), and matrices canvas->crop."""
    import torch
    from kornia.geometry.transform import warp_affine

    side = 3.0 * iod
    s = SIZE / side
    to_crop = np.array([[s, 0, SIZE / 2 - s * centre[0]], [0, s, SIZE / 2 - s * centre[1]], [0, 0, 1.0]])
    out = []
    for r in kept:
        photo = open_photo(r.frame.path, max_side=1024)
        sx, sy = photo.scale_xy
        img = torch.from_numpy(np.array(photo.image)).permute(2, 0, 1).float()[None] / 255
        m = to_crop @ np.asarray(r.transform.matrix) @ np.diag([1 / sx, 1 / sy, 1.0])
        out.append(warp_affine(img, torch.tensor(m[:2], dtype=torch.float32)[None], (SIZE, SIZE), align_corners=True))
    return torch.cat(out), to_crop


def congeal(crops, bound_shift_px: float, rounds: int = 2, steps: int = 60):
    """(N, 3, S, S) crops -> (N, 3, 3) corrections in crop pixels (about the centre)."""
    import torch
    from kornia.geometry.transform import warp_affine

    x = lcn(crops)
    ys = torch.linspace(-1, 1, SIZE)[:, None]
    xs = torch.linspace(-1, 1, SIZE)[None, :]
    # Eye and brow band: the eyes sit on the centre row; the band reaches up to the brows.
    w = (torch.exp(-((ys + 0.08) / 0.2) ** 2) * torch.exp(-(xs / 0.6) ** 2))[None, None]
    n = len(x)
    c = (SIZE - 1) / 2
    params = torch.zeros(n, 4, requires_grad=True)

    def mats(p):
        a = torch.tanh(p[:, 0]) * np.radians(1.5)
        sc = torch.exp(torch.tanh(p[:, 1]) * 0.02)
        tx, ty = torch.tanh(p[:, 2]) * bound_shift_px, torch.tanh(p[:, 3]) * bound_shift_px
        co, si = sc * torch.cos(a), sc * torch.sin(a)
        row0 = torch.stack([co, -si, c - co * c + si * c + tx], -1)
        row1 = torch.stack([si, co, c - si * c - co * c + ty], -1)
        return torch.stack([row0, row1], 1)

    for _ in range(rounds):
        with torch.no_grad():
            template = warp_affine(x, mats(params), (SIZE, SIZE), align_corners=True).mean(0, keepdim=True)
        opt = torch.optim.Adam([params], lr=0.05)
        for _ in range(steps):
            opt.zero_grad()
            warped = warp_affine(x, mats(params), (SIZE, SIZE), align_corners=True)
            loss = (w * (warped - template) ** 2).mean()
            loss.backward()
            opt.step()
    m = mats(params.detach()).double().numpy()
    full = np.tile(np.eye(3), (n, 1, 1))
    full[:, :2] = m
    return full


def measure(ruler: str, frames: Path) -> dict:
    out = subprocess.run([ruler, str(RULER / "measure.py"), str(frames)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="*", type=Path, default=FOLDERS)
    ap.add_argument("--bound", type=float, default=0.03, help="largest shift, in inter-ocular distances")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    ruler = ruler_python()
    rows = []
    for folder in args.folders:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for var in ("XDG_CACHE_HOME", "XDG_DATA_HOME"):
                os.environ[var] = str(root / var.lower())
            p = Pipeline(folder, Config())
            p.scan(), p.detect(), p.select()
            ref = p.register()
            kept = p.kept()
            with contextlib.redirect_stderr(io.StringIO()):
                p.render(root / "a.mp4", root / "before")
            eyes = np.asarray(ref.landmarks[:2]) * ref.scale
            centre, iod = eyes.mean(0), float(np.linalg.norm(eyes[1] - eyes[0]))
            crops, to_crop = crops_and_frames(p, kept, centre, iod)
            corr = congeal(crops, args.bound * iod * SIZE / (3.0 * iod))
            for r, dm in zip(kept, corr):
                m = np.linalg.inv(to_crop) @ dm @ to_crop @ np.asarray(r.transform.matrix)
                r.transform = Transform(tuple(tuple(float(v) for v in row) for row in m), r.transform.canvas,
                                        r.transform.residual_pct)
            with contextlib.redirect_stderr(io.StringIO()):
                p.render(root / "b.mp4", root / "after")
            before, after = measure(ruler, root / "before"), measure(ruler, root / "after")
            moved = np.abs(corr[:, :2, 2]).max() * 3.0 / SIZE
            p.close()
        row = {"folder": folder.name, "kept": len(kept), "bound_iod": args.bound,
               "spread_before": before["eye_spread"], "spread_after": after["eye_spread"],
               "err_max_before": before["eye_err_max"], "err_max_after": after["eye_err_max"],
               "largest_shift_iod": round(float(moved), 4)}
        rows.append(row)
        print(row, flush=True)
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
