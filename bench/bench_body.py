"""Body-mode detection cost per photo: Mask R-CNN + Keypoint R-CNN, ours against torchvision's
default input size, in the same process.

    .venv/bin/python bench/bench_body.py                    # 4 photos, CPU
    .venv/bin/python bench/bench_body.py --device cuda --photos 32

* ours: photos decoded at ``--size`` (800) px on the long side, models built to keep that size
  (``models.build_*``), ``--batch`` photos per call, as ``BodyDetector`` runs them (masks resized
  and matched to the keypoint people included).
* baseline: torchvision's default transform (short side 800, long side up to 1333: a 4:3 photo
  runs at 1067 x 800), one photo at a time, models alone.

Random weights: the real COCO weights cannot be downloaded here, and the networks cost the same
whatever their weights (random heads keep the maximum number of detections, so the mask and
keypoint heads run at their worst case). Photos: 4:3, the astronaut photo with noise.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignimation_tui.detect.body import BodyDetector  # noqa: E402
from alignimation_tui.models import build_keypoint_detector, build_person_segmenter  # noqa: E402
from alignimation_tui.photos import Decoded  # noqa: E402


def photos(n: int, long_side: int) -> list[Decoded]:
    from skimage import data

    rng = np.random.default_rng(0)
    base = np.asarray(Image.fromarray(data.astronaut()).resize((long_side, long_side * 3 // 4)), np.int16)
    out = []
    for _ in range(n):
        noisy = np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
        out.append(Decoded(Image.fromarray(noisy), 4032, 3024))  # as if decoded from a 12 MP photo
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_ours(pics, size, batch, device, repeat):
    det = BodyDetector(build_person_segmenter(size).eval().to(device), build_keypoint_detector(size).eval().to(device),
                       device, batch, mask_size=256)
    det.detect(pics[:1])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        det.detect(pics)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best / len(pics)


def time_baseline(pics, device, repeat):
    from torchvision.models.detection import keypointrcnn_resnet50_fpn, maskrcnn_resnet50_fpn

    from alignimation_tui.models import _freeze_batch_norm

    seg = _freeze_batch_norm(maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)).eval().to(device)
    kp = _freeze_batch_norm(keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None)).eval().to(device)
    tensors = [torch.from_numpy(np.array(p.image)).permute(2, 0, 1).float().div(255).to(device) for p in pics]
    with torch.inference_mode():
        seg(tensors[:1]), kp(tensors[:1])  # warm-up
        best = float("inf")
        for _ in range(repeat):
            sync(device)
            t = time.perf_counter()
            for x in tensors:
                seg([x]), kp([x])
            sync(device)
            best = min(best, time.perf_counter() - t)
    return best / len(pics)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pics = photos(args.photos, args.size)
    ours = time_ours(pics, args.size, args.batch, args.device, args.repeat)
    base = time_baseline(photos(args.photos, 1067), args.device, args.repeat)
    print(f"device {args.device}, {torch.get_num_threads()} CPU threads, {args.photos} photos")
    print(f"ours      {args.size} px long side, batch {args.batch}: {ours:.2f} s/photo")
    print(f"baseline  torchvision default size (1067x800), one by one: {base:.2f} s/photo")
    print(f"speed-up  {base / ours:.2f}x")
    print(json.dumps({"device": args.device, "threads": torch.get_num_threads(), "photos": args.photos,
                      "size": args.size, "batch": args.batch, "ours_s_per_photo": round(ours, 3),
                      "baseline_s_per_photo": round(base, 3), "speedup": round(base / ours, 2)}))


if __name__ == "__main__":
    main()
