"""What a new photo among N cached ones pays beyond its own detection: the passes over every frame
(choosing the subjects, registering from stored transforms, the outlier check, the selection, the
framing, then the table's flags and rows), as the app's worker makes them after each photo.

Each size's folder is opened as the app's worker has it (scanned, every stored transform read,
the rows made once); then the passes are run ``--repeat`` times with nothing new, and the least
CPU time of the thread (``time.thread_time``: a busy host slows it less than the clock) is kept,
per part. ``--against REV`` runs commit REV, checked out into a temporary git worktree, in a child
process of its own, taking turns with this tree ``--rounds`` times (compare the two columns).

The folders are bench_library's (``bench/bench_library.py --prepare`` makes them):

    .venv/bin/python bench/bench_passes.py [--sizes 1000,10000] [--repeat 20] [--rounds 2] [--against REV]

Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_KEEP = Path("/tmp/alignimation-library")
PARTS = ("select", "register", "outliers", "selection", "framing", "flags", "rows")


def measure(folder: Path, repeat: int) -> dict[str, float]:
    """Child: the least thread CPU milliseconds of each part of a pass over ``folder``'s frames."""
    sys.path.insert(0, os.getcwd())  # the tree to measure (the child's working directory)
    from alignimation_tui import curate, outliers
    from alignimation_tui import pipeline as pipeline_module
    from alignimation_tui.config import Config
    from alignimation_tui.pipeline import Pipeline
    from alignimation_tui.tui import driver as driver_module

    spent: collections.Counter = collections.Counter()

    def timed(owner, name: str, part: str) -> None:
        real = getattr(owner, name)

        @functools.wraps(real)
        def wrapper(*args, **kwargs):
            started = time.thread_time()
            try:
                return real(*args, **kwargs)
            finally:
                spent[part] += time.thread_time() - started
        setattr(owner, name, wrapper)

    timed(pipeline_module.Pipeline, "select", "select")
    timed(pipeline_module.Pipeline, "register", "register")  # (all of it: the parts below are taken out)
    timed(outliers, "apply_outliers", "outliers")
    timed(curate, "apply_selection", "selection")
    timed(pipeline_module.Pipeline, "plan_framing", "framing")
    timed(driver_module, "outlier_flags", "flags")
    timed(driver_module.Driver, "_changed", "rows")

    class Screen:  # the worker posts to the app; nothing listens here
        def post_message(self, message) -> None:
            pass

    p = Pipeline(folder, Config())
    driver = driver_module.Driver(Screen(), p)
    p.scan(exclude={p.default_output()})
    p.process([], compute=False)
    driver._changed()  # the rows made once, as the app's open makes them
    p.process([])
    driver._changed()
    best: dict[str, float] = collections.defaultdict(lambda: float("inf"))
    for _ in range(repeat):
        spent.clear()
        started = time.thread_time()
        p.process([])
        driver._changed()
        spent["total"] = time.thread_time() - started
        spent["register"] -= spent["outliers"] + spent["selection"] + spent["framing"]
        spent["rows"] -= spent["flags"]
        for part, seconds in spent.items():
            best[part] = min(best[part], seconds)
    driver.close()
    return {part: round(best[part] * 1000, 1) for part in (*PARTS, "total")}


def environment(keep: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("CACHE", "DATA", "CONFIG"):
        env[f"XDG_{name}_HOME"] = str(keep / "xdg" / name.lower())
    return env


def run_child(tree: Path, folder: Path, repeat: int, keep: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(folder),
                           "--repeat", str(repeat)], cwd=tree, env=environment(keep), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, default=DEFAULT_KEEP)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=20, help="passes per child (the least is kept)")
    ap.add_argument("--rounds", type=int, default=2, help="children per tree and size, taking turns")
    ap.add_argument("--against", metavar="REV", help="also measure this commit, taking turns")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.repeat)))
        return
    keep = args.keep.resolve()
    sizes = [int(s) for s in args.sizes.split(",")]
    missing = [n for n in sizes if not (keep / f"lib-{n}.complete").exists()]
    if missing:
        raise SystemExit(f"not prepared: {missing}; run bench/bench_library.py --prepare first")
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"this tree": ROOT}
        if args.against:
            old = Path(scratch) / "against"
            subprocess.run(["git", "worktree", "add", "--detach", str(old), args.against], cwd=ROOT, check=True,
                           capture_output=True)
            trees[args.against] = old
        try:
            report: dict = {}
            for n in sizes:
                folder = keep / f"lib-{n}"
                runs: dict[str, list[dict]] = {name: [] for name in trees}
                for _ in range(args.rounds):
                    for name, tree in trees.items():
                        runs[name].append(run_child(tree, folder, args.repeat, keep))
                report[n] = {name: {part: min(r[part] for r in results) for part in (*PARTS, "total")}
                             for name, results in runs.items()}
                for name, parts in report[n].items():
                    line = ", ".join(f"{part} {parts[part]:.1f}" for part in PARTS)
                    print(f"{n:>6} frames, {name:>10}: a pass {parts['total']:.1f} ms of CPU ({line})", flush=True)
                if args.against:
                    print(f"{n:>6} frames: this tree / {args.against} = "
                          f"{report[n]['this tree']['total'] / report[n][args.against]['total']:.2f}", flush=True)
        finally:
            if args.against:
                subprocess.run(["git", "worktree", "remove", "--force", str(trees[args.against])], cwd=ROOT,
                               capture_output=True)
    print(json.dumps({str(k): v for k, v in report.items()}))


if __name__ == "__main__":
    main()
