"""Incremental work stays incremental.

(a) The time to bring one new photo to `aligned` (add, detect, choose, register: what the app's
    worker does when the watcher reports a photo) in a folder with 0 and with --cached cached
    photos, as a ratio (target <= 1.5); and of that, the bookkeeping over all the frames that
    every arrival repeats (choose, register from the cache, outliers, selection, framing).
(b) The time to open the app on --open cached frames until the table is full, every row in its
    final state (target < 2 s); torch is imported before the clock starts (every start pays it,
    whatever the folder).

Synthetic photos: the astronaut on varied backgrounds at 480x360, so the setup (detecting them
all once) takes a minute or two on a CPU. Last line: one JSON object.

    .venv/bin/python bench/bench_incremental.py [--cached 500] [--open 1000] [--repeat 5]

``--keep DIR`` keeps the photos and caches in DIR (made on the first run, reused after: the
setup is then paid once); ``--only-open`` measures (b) alone, ``--opens N`` opens N times (median).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import save_with_date, similarity, warped_astronaut  # noqa: E402


def photo(path: Path, rng, day: int) -> Path:
    m = similarity(rng.uniform(-12, 12), rng.uniform(0.8, 1.2), 64 + rng.uniform(-40, 40), 60 + rng.uniform(-40, 40))
    img = warped_astronaut(m).resize((480, 360))
    return save_with_date(img, path, datetime(2020, 1, 1) + timedelta(days=day))


def make_folder(folder: Path, n: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        photo(folder / f"p{i:04d}.jpg", rng, i)
    return folder


def new_photo_seconds(folders: list[Path], repeat: int, seed: int) -> tuple[list[list[float]], list[list[float]]]:
    """Per folder, the seconds to bring each of ``repeat`` new photos to aligned, and the seconds
    of the bookkeeping alone (``process([])``: choose, register from the cache, outliers, selection,
    framing; what every arrival, verdict or pin repeats over all the frames), ``3 * repeat`` times.
    The folders take turns, so a change in the machine's load hits them alike."""
    from alignimation_tui.config import Config
    from alignimation_tui.pipeline import Pipeline

    pipelines = [Pipeline(folder, Config()) for folder in folders]
    try:
        for pipeline in pipelines:
            pipeline.scan()
            pipeline.process()  # everything cached (or computed now, before timing)
            pipeline.warm_up()  # the app's worker has its models loaded already
        rng = np.random.default_rng(seed)
        times: list[list[float]] = [[] for _ in folders]
        for k in range(repeat):
            for pipeline, spent in zip(pipelines, times):
                path = photo(pipeline.folder / f"new{k}.jpg", rng, 5000 + k)
                started = time.perf_counter()
                r = pipeline.add_path(path)
                pipeline.sort_results()
                pipeline.process([r])
                spent.append(time.perf_counter() - started)
                assert r.status.value == "aligned", (r.status, r.error)
        books: list[list[float]] = [[] for _ in folders]
        for _ in range(3 * repeat):
            for pipeline, spent in zip(pipelines, books):
                started = time.perf_counter()
                pipeline.process([])
                spent.append(time.perf_counter() - started)
        return times, books
    finally:
        for pipeline in pipelines:
            pipeline.close()


async def open_app_seconds(folder: Path) -> tuple[float, int]:
    import torch  # noqa: F401  (imported by every start whatever the folder: ~2 s here, not timed)

    from alignimation_tui.config import Config
    from alignimation_tui.tui.app import AlignimationApp

    started = time.perf_counter()
    app = AlignimationApp(folder, Config())
    async with app.run_test(size=(160, 45)) as pilot:
        n = sum(1 for _ in folder.iterdir())
        while not (len(app.rows) == n and app.table.row_count == n
                   and all(r.status not in ("queued", "detecting") for r in app.rows.values())):
            await pilot.pause(0.01)
        seconds = time.perf_counter() - started
        await pilot.press("q")
    return seconds, n


def open_big(root: Path, args) -> tuple[float, int]:
    """(b): the seconds to open the app on ``args.open`` cached frames (the median of ``args.opens``).
    The folder is made (and detected, untimed) unless ``--keep`` holds it complete already."""
    big, done = root / "big", root / f"big-{args.open}.complete"
    first = "made before"
    if not done.exists():
        if big.exists():
            import shutil
            shutil.rmtree(big)
        make_folder(big, args.open, 3)
        t0 = time.perf_counter()
        asyncio.run(open_app_seconds(big))  # first open: detects everything (setup, not timed)
        first = f"first open, detecting all: {time.perf_counter() - t0:.0f} s"
        done.touch()
    times = []
    for _ in range(args.opens):
        seconds, n = asyncio.run(open_app_seconds(big))
        times.append(seconds)
    seconds = statistics.median(times)
    print(f"open the app on {n} cached frames until the table is full: {seconds:.2f} s "
          f"(median of {len(times)}: {', '.join(f'{t:.2f}' for t in times)}; {first})")
    return seconds, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cached", type=int, default=500)
    ap.add_argument("--open", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="keep photos and caches here and reuse them (setup paid once)")
    ap.add_argument("--only-open", action="store_true", help="measure (b) alone")
    ap.add_argument("--opens", type=int, default=1, help="open the app this many times (median)")
    args = ap.parse_args()
    if args.keep is not None and not args.only_open:
        ap.error("--keep goes with --only-open ((a) needs photos the cache has never seen)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.keep is not None:
            root = args.keep.resolve()
            root.mkdir(parents=True, exist_ok=True)
        os.environ["XDG_CACHE_HOME"] = str(root / "cache")
        os.environ["XDG_DATA_HOME"] = str(root / "data")
        if args.only_open:
            seconds, n = open_big(root, args)
            print(json.dumps({"open_seconds": round(seconds, 2), "open_frames": n}))
            return
        empty = make_folder(root / "empty", 1, 1)  # just the reference
        full = make_folder(root / "full", args.cached, 2)
        t0 = time.perf_counter()
        (small, large), books = new_photo_seconds([empty, full], args.repeat, 10)
        setup = time.perf_counter() - t0
        ratio = statistics.median(large) / statistics.median(small)
        print(f"one new photo to aligned: {statistics.median(small) * 1000:.0f} ms with 1 photo, "
              f"{statistics.median(large) * 1000:.0f} ms with {args.cached} cached  ->  ratio {ratio:.2f} "
              f"(median of {args.repeat}; setup {setup:.0f} s)")
        book_ms = [statistics.median(b) * 1000 for b in books]
        print(f"  of which the bookkeeping over every frame (nothing new): {book_ms[0]:.1f} ms with 1 photo + "
              f"{args.repeat}, {book_ms[1]:.1f} ms with {args.cached} + {args.repeat} (median of {3 * args.repeat})")

        seconds, n = open_big(root, args)
    print(json.dumps({"new_photo_ms_0": round(statistics.median(small) * 1000, 1),
                      "new_photo_ms_cached": round(statistics.median(large) * 1000, 1), "cached": args.cached,
                      "ratio": round(ratio, 2), "bookkeeping_ms_cached": round(book_ms[1], 1),
                      "open_seconds": round(seconds, 2), "open_frames": n}))


if __name__ == "__main__":
    main()
