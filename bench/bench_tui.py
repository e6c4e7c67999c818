"""How responsive the app stays while detection runs.

Opens the app (headless, through Textual's test driver, so the event loop does its real work) on
a folder of N photos with a cold cache and measures the event loop's delay with a 50 ms timer
until every photo is processed. The baseline is the same app idle on the same folder (now
cached) for as long: the noise floor of this machine. Prints max / p99 delay for both; last line
one JSON object.

    .venv/bin/python bench/bench_tui.py [--n 50] [--folder DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_folder(root: Path, n: int, source: Path | None) -> Path:
    folder = root / "photos"
    folder.mkdir()
    if source is not None:
        photos = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        for i in range(n):
            shutil.copy(photos[i % len(photos)], folder / f"{i:03d}_{photos[i % len(photos)].name}")
            if i >= len(photos):  # a copy must not be the same photo (same hash): touch one byte of EXIF-free tail
                with (folder / f"{i:03d}_{photos[i % len(photos)].name}").open("ab") as fh:
                    fh.write(bytes([i % 256]))
        return folder
    from tests.conftest import save_with_date, similarity, warped_astronaut
    rng = np.random.default_rng(0)
    for i in range(n):
        m = similarity(rng.uniform(-15, 15), rng.uniform(0.8, 1.2), 64 + rng.uniform(-30, 30), 60 + rng.uniform(-30, 30))
        save_with_date(warped_astronaut(m), folder / f"{i:03d}.jpg", datetime(2024, 1, 1) + timedelta(days=i))
    return folder


async def measure(folder: Path, idle_s: float | None) -> dict:
    from alignimation_tui.config import Config
    from alignimation_tui.tui.app import AlignimationApp

    app = AlignimationApp(folder, Config())
    delays: list[float] = []
    async with app.run_test(size=(160, 45)) as pilot:
        expected = time.monotonic() + 0.05

        def tick():
            nonlocal expected
            now = time.monotonic()
            if app.rows:  # from the first table fill on (start-up is measured by bench_incremental)
                delays.append(max(0.0, now - expected))
            expected = now + 0.05

        app.set_interval(0.05, tick)
        started = time.monotonic()
        while True:
            await pilot.pause(0.2)
            s = app.state
            done = (s is not None and not s.busy and s.queue == 0 and app.rows
                    and all(r.status not in ("queued", "detecting") for r in app.rows.values()))
            elapsed = time.monotonic() - started
            if (idle_s is None and done) or (idle_s is not None and elapsed >= idle_s):
                break
        await pilot.press("q")
    d = np.array(delays) * 1000
    return {"seconds": round(elapsed, 1), "ticks": len(d), "max_ms": round(float(d.max()), 1),
            "p99_ms": round(float(np.percentile(d, 99)), 1), "median_ms": round(float(np.median(d)), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--folder", type=Path, help="photos to copy (default: synthetic astronauts)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(root / "cache")
        os.environ["XDG_DATA_HOME"] = str(root / "data")
        folder = make_folder(root, args.n, args.folder)
        busy = asyncio.run(measure(folder, None))
        idle = asyncio.run(measure(folder, busy["seconds"]))
    print(f"processing {args.n} photos: {busy['seconds']} s, event-loop delay max {busy['max_ms']} ms, "
          f"p99 {busy['p99_ms']} ms, median {busy['median_ms']} ms")
    print(f"idle baseline, same time : event-loop delay max {idle['max_ms']} ms, p99 {idle['p99_ms']} ms, "
          f"median {idle['median_ms']} ms")
    print(json.dumps({"n": args.n, "busy": busy, "idle": idle, "cpus": os.cpu_count(),
                      "max_ratio_vs_idle": round(busy["max_ms"] / max(idle["max_ms"], 1.0), 2)}))


if __name__ == "__main__":
    main()
