"""A photo library: the figures of issue #32 at 1,000 and 10,000 cached photos, in one command.

1. The app opened on N cached photos until the table is full (every row in its final state),
   from building the app to the last row shown (the app's modules imported before the clock; a
   cached folder loads no model). Target at 10,000: <= 1 s.
2. One new photo among N cached ones, from the moment it is handed to the app's worker (as the
   watcher hands a photo that stopped growing) until its row says `aligned` in the table, against
   the same in a folder that holds only the reference; the two apps take turns in one process.
   Target: ratio <= 1.5.
3. `--once` on N cached photos with nothing new (the whole process; the animation is up to date).
   Target at 10,000: <= 10 s.
4. Peak RSS (the child's ru_maxrss) of 3 and of 1 at each size: flat in the number of photos. The app's
   is given at the table's fill and once its worker holds the whole state (the record's open
   rebuilds it after the first draw).

Every figure is measured in a child process of its own (so its peak RSS is its own). The photos
(480x360, the astronaut on varied backgrounds) and their caches are made once with ``--prepare``
(``--once`` on each folder: roughly 10 photos/s here, so 10,000 take about 20 minutes; run it in
the background) and kept in ``--keep`` (default /tmp/alignimation-library):

    nohup .venv/bin/python bench/bench_library.py --prepare > /tmp/library-prepare.log 2>&1 &
    .venv/bin/python bench/bench_library.py [--sizes 1000,10000] [--repeat 3] [--opens 3]

Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_KEEP = Path("/tmp/alignimation-library")
ALONE = 1  # the folder that holds the reference alone


def environment(keep: Path) -> dict[str, str]:
    """The caches, decisions and config of the library's folders live under ``keep``."""
    env = dict(os.environ)
    for name in ("CACHE", "DATA", "CONFIG"):
        env[f"XDG_{name}_HOME"] = str(keep / "xdg" / name.lower())
    return env


def folder_of(keep: Path, n: int) -> Path:
    return keep / f"lib-{n}"


def output_of(keep: Path, n: int) -> Path:
    return keep / "out" / f"lib-{n}.mp4"


def write_photo(path: Path, seed: int, day: int) -> Path:
    from bench_incremental import photo  # noqa: E402  (bench/ is on sys.path when run as a script)

    return photo(path, np.random.default_rng(seed), day)


def make_photos(folder: Path, n: int) -> None:
    """Photo ``i`` is the same whatever ``n`` (its own seed): resumable, and a folder of 1,000 holds
    the first 1,000 of 10,000. Day ``i`` after 2020-01-01: the reference is photo 0."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"p{i:05d}.jpg"
        if not path.exists():
            tmp = folder / f".p{i:05d}.partial.jpg"
            write_photo(tmp, i, i)
            tmp.replace(path)


def once_command(keep: Path, n: int) -> list[str]:
    return [sys.executable, "-m", "alignimation_tui", "--once", str(folder_of(keep, n)), "--out", str(output_of(keep, n))]


def prepare(keep: Path, sizes: list[int]) -> None:
    (keep / "out").mkdir(parents=True, exist_ok=True)
    for n in [ALONE, *sizes]:
        done = keep / f"lib-{n}.complete"
        if done.exists():
            continue
        started = time.perf_counter()
        make_photos(folder_of(keep, n), n)
        print(f"lib-{n}: photos made in {time.perf_counter() - started:.0f} s", flush=True)
        started = time.perf_counter()
        subprocess.run(once_command(keep, n), env=environment(keep), cwd=ROOT, check=True)
        print(f"lib-{n}: first --once (detecting all, rendering) in {time.perf_counter() - started:.0f} s", flush=True)
        done.touch()


# the children ---------------------------------------------------------------------------------
def run_child(argv: list[str], keep: Path) -> tuple[dict, float, int]:
    """As ``child``, with the child's own peak RSS from ``wait4`` (KiB on Linux)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=environment(keep), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # communicate would reap the child (losing its rusage): read, then wait4 ourselves
    chunks: dict[str, bytes] = {}

    def drain(name, stream):
        chunks[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(name, s)) for name, s in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = chunks["out"].decode(errors="replace"), chunks["err"].decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n{err[-3000:]}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    result["stderr_tail"] = err.strip().splitlines()[-6:]
    return result, seconds, usage.ru_maxrss


async def open_app(folder: Path) -> dict:
    """Child: the app opened on ``folder`` until the table is full (the app's modules imported
    before the clock; a cached folder loads no model, so torch is not imported: said in the result),
    then kept open until its worker holds the whole state and is idle (after a record's open, the
    state is rebuilt after the first draw): the peak RSS at the table's fill is reported apart from
    the child's whole peak, which includes that state."""
    from alignimation_tui.config import Config
    from alignimation_tui.tui.app import AlignimationApp

    n = sum(1 for p in folder.iterdir() if p.suffix == ".jpg")
    started = time.perf_counter()
    app = AlignimationApp(folder, Config(), watch=False)
    built = time.perf_counter() - started
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, app, lambda: table_full(app, n), 0.005, "its table was full")
        seconds = time.perf_counter() - started
        full_rss = peak_rss_kib()
        await until(pilot, app, lambda: worker_idle(app, n), 0.05, "its worker held the whole state")
        await pilot.press("q")
    return {"open_seconds": round(seconds, 3), "built_seconds": round(built, 3), "rows": n,
            "torch_imported": "torch" in sys.modules, "full_rss_kib": full_rss}


async def until(pilot, app, done, pause: float, what: str) -> None:
    """Wait until ``done()``; a child whose app closed first (a stop signal: SIGTERM closes it as
    ``q`` does) ends, saying so, instead of waiting for ever."""
    while not done():
        if app.return_code is not None:
            raise SystemExit(f"the app closed (exit {app.return_code}) before {what}")
        await pilot.pause(pause)


def peak_rss_kib() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker_idle(app, n: int) -> bool:
    """The worker holds every photo's state (the record's rebuild or the scan done) and has nothing to do."""
    driver, state = app.driver, app.state
    return (driver._checked is None and len(driver.pipeline.results) == n and driver.pipeline.framing is not None
            and state is not None and not state.busy and state.queue == 0)


def table_full(app, n: int) -> bool:
    return (len(app.rows) == n and app.table.row_count == n and not app.rows_pending  # cheap first
            and all(r.status not in ("queued", "detecting") for r in app.rows.values()))


async def new_photos(folders: list[Path], repeat: int, rounds: int) -> dict:
    """Child: per folder, the seconds from handing a new photo to the worker until its row says
    `aligned` in the table, ``repeat`` photos per open, the folders taking turns ``rounds`` times.
    Each open first brings one photo in untimed (the models load then: the open of a cached folder
    loads none). The new photos are removed afterwards (their cache entries stay: each is new)."""
    from alignimation_tui.config import Config
    from alignimation_tui.tui.app import AlignimationApp
    from alignimation_tui.tui.driver import PhotoReady

    times: dict[str, list[float]] = {str(f): [] for f in folders}
    made: list[Path] = []
    salt = time.time_ns() % 1_000_000_000
    try:
        for rnd in range(rounds):
            for folder in folders:
                n = sum(1 for p in folder.iterdir() if p.suffix == ".jpg")
                app = AlignimationApp(folder, Config(), watch=False)
                async with app.run_test(size=(160, 45)) as pilot:
                    await until(pilot, app, lambda: table_full(app, n), 0.01, "its table was full")
                    for k in range(repeat + 1):
                        # after every photo of the library: the reference stays photo 0
                        path = folder / f"zz-new-{rnd}-{k}.jpg"
                        write_photo(path, salt + 1000 * rnd + k, 40_000 + 10 * rnd + k)
                        made.append(path)
                        seen = Seen(path.name)
                        shown = shown_aligned(app, seen)
                        started = time.perf_counter()
                        app.driver.submit(PhotoReady(path))
                        await asyncio.wait_for(shown.wait(), 300)
                        del app.show_rows  # (the class's again)
                        if k:  # the first loads the models
                            times[str(folder)].append(time.perf_counter() - started)
                    await pilot.press("q")
    finally:
        for path in made:
            path.unlink(missing_ok=True)
    return {"seconds": times}


def shown_aligned(app, seen: "Seen") -> asyncio.Event:
    """An event set as soon as the table shows the new photo's row `aligned`: asked each time the app
    shows rows, not polled (a poll every few milliseconds, each making the screen refresh, kept the
    event loop half busy, and the worker, which shares the interpreter with it, waited for it)."""
    shown = asyncio.Event()
    show_rows = app.show_rows

    def showing(rows) -> None:
        show_rows(rows)
        if seen.aligned(app):
            shown.set()
    app.show_rows = showing
    return shown


class Seen:
    """Whether the new photo's row says `aligned` in the table. Its row is looked for among all
    once, when a new row arrives; then by its key alone (a poll over 10,000 rows every few
    milliseconds took a tenth of the time it measured)."""

    def __init__(self, name: str):
        self.name, self.hash, self.rows = name, None, 0

    def aligned(self, app) -> bool:
        if self.hash is None:
            if len(app.rows) == self.rows:
                return False
            self.rows = len(app.rows)
            self.hash = next((h for h, row in app.rows.items() if row.name == self.name), None)
            if self.hash is None:
                return False
        row = app.rows[self.hash]
        if row.status in ("failed", "no_subject"):
            raise SystemExit(f"{self.name}: {row.status}")
        return row.status == "aligned" and self.hash in app.table.rows and not app.rows_pending \
            and str(app.table.get_cell(self.hash, "status")) == "aligned"


# the parent -----------------------------------------------------------------------------------
def said_up_to_date(result: dict) -> bool:
    return any("up to date" in line for line in result["stderr_tail"])


def mib(kib: int) -> float:
    return kib / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, default=DEFAULT_KEEP)
    ap.add_argument("--sizes", default="1000,10000", help="library sizes, comma-separated (the last: the targets)")
    ap.add_argument("--prepare", action="store_true", help="make the photos and their caches (slow; resumable)")
    ap.add_argument("--opens", type=int, default=3, help="app opens per size (median)")
    ap.add_argument("--onces", type=int, default=2, help="--once runs per size (median)")
    ap.add_argument("--repeat", type=int, default=3, help="new photos per app open")
    ap.add_argument("--rounds", type=int, default=2, help="app opens per folder for the new photos")
    ap.add_argument("--child", choices=["open", "new"], help=argparse.SUPPRESS)
    ap.add_argument("folders", nargs="*", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--code", type=Path, help="with --child new: the code tree to measure (another commit's worktree)")
    args = ap.parse_args()
    if args.code is not None:
        sys.path.insert(0, str(args.code.resolve()))
    keep = args.keep.resolve()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child == "open":
        print(json.dumps(asyncio.run(open_app(args.folders[0]))))
        return
    if args.child == "new":
        print(json.dumps(asyncio.run(new_photos(args.folders, args.repeat, args.rounds))))
        return
    if args.prepare:
        prepare(keep, sizes)
        return
    missing = [n for n in [ALONE, *sizes] if not (keep / f"lib-{n}.complete").exists()]
    if missing:
        raise SystemExit(f"not prepared: {missing}; run with --prepare first (see --help)")

    me = [sys.executable, str(Path(__file__).resolve())]
    report: dict = {"sizes": sizes}
    for n in sizes:
        folder = folder_of(keep, n)
        opens, open_rss, full_rss = [], [], []
        for _ in range(args.opens):
            result, _, rss = run_child([*me, "--child", "open", str(folder)], keep)
            opens.append(result["open_seconds"])
            open_rss.append(rss)
            full_rss.append(result["full_rss_kib"])
        # untimed: the animation brought up to date (a change of the code can change what it holds)
        result, seconds, _ = run_child(once_command(keep, n), keep)
        if not said_up_to_date(result):
            print(f"{n:>6} cached: the animation was written again first ({seconds:.0f} s, not timed)", flush=True)
        onces, once_rss, tail = [], [], []
        up_to_date = True
        for _ in range(args.onces):
            result, seconds, rss = run_child(once_command(keep, n), keep)
            onces.append(seconds)
            once_rss.append(rss)
            tail = result["stderr_tail"]
            up_to_date = up_to_date and said_up_to_date(result)
        report[n] = {"open_s": round(statistics.median(opens), 2), "opens": opens,
                     "open_rss_mib": round(mib(max(open_rss))), "full_rss_mib": round(mib(max(full_rss))),
                     "once_s": round(statistics.median(onces), 2),
                     "onces": [round(s, 2) for s in onces], "once_rss_mib": round(mib(max(once_rss))),
                     "once_up_to_date": up_to_date}
        print(f"{n:>6} cached: app table full in {report[n]['open_s']:.2f} s (median of {len(opens)}: "
              f"{', '.join(f'{s:.2f}' for s in opens)}), peak RSS {report[n]['full_rss_mib']} MiB then, "
              f"{report[n]['open_rss_mib']} MiB with the state rebuilt; "
              f"--once nothing new {report[n]['once_s']:.2f} s ({', '.join(f'{s:.2f}' for s in onces)}; "
              f"{'up to date' if up_to_date else 'RENDERED: ' + ' | '.join(tail)}), peak RSS "
              f"{report[n]['once_rss_mib']} MiB", flush=True)
    big = sizes[-1]
    alone, among = folder_of(keep, ALONE), folder_of(keep, big)
    result, _, _ = run_child([*me, "--child", "new", "--repeat", str(args.repeat), "--rounds", str(args.rounds),
                              str(alone), str(among)], keep)
    small, large = result["seconds"][str(alone)], result["seconds"][str(among)]
    ratio = statistics.median(large) / statistics.median(small)
    print(f"a new photo to aligned in the table: {statistics.median(small) * 1000:.0f} ms alone, "
          f"{statistics.median(large) * 1000:.0f} ms among {big}  ->  ratio {ratio:.2f} (target <= 1.5; "
          f"medians of {len(small)}: alone {', '.join(f'{s * 1000:.0f}' for s in small)}; among "
          f"{', '.join(f'{s * 1000:.0f}' for s in large)} ms)", flush=True)
    report["new_photo_ms_alone"] = round(statistics.median(small) * 1000)
    report["new_photo_ms_among"] = round(statistics.median(large) * 1000)
    report["new_photo_ratio"] = round(ratio, 2)
    first, last = report[sizes[0]], report[big]
    if len(sizes) > 1:
        print(f"RSS {big} / {sizes[0]}: app at the table's fill {last['full_rss_mib'] / first['full_rss_mib']:.2f}, "
              f"with its state {last['open_rss_mib'] / first['open_rss_mib']:.2f}, "
              f"--once {last['once_rss_mib'] / first['once_rss_mib']:.2f}")
    print(f"targets at {big}: table full {last['open_s']:.2f} s (<= 1), new photo ratio {ratio:.2f} (<= 1.5), "
          f"--once nothing new {last['once_s']:.2f} s (<= 10)")
    print(json.dumps({str(k): v for k, v in report.items()}))


if __name__ == "__main__":
    main()
