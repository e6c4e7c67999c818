"""A small folder's cold ``--once``: the whole process, a fresh cache each time, the MP4 written, as
a newcomer's first run meets it (issue #32: faces_jerry <= 1.5 s on the 2-core machine).

    .venv/bin/python bench/bench_cold.py                                   # faces_jerry, 5 rounds
    .venv/bin/python bench/bench_cold.py --folder ../shared/samples/faces_tony --rounds 3
    .venv/bin/python bench/bench_cold.py --against 4b2bf56                 # and that commit, interleaved

Each round runs the console script's code (``cli.console_main``, as ``alignimation-tui`` does) in a
child process with its own empty XDG folders and times it from the fork to its exit. ``--against
REV`` checks REV out into a temporary git worktree and runs it the same way in the same rounds,
taking turns (these machines are noisy: compare the two columns, not runs on different hours), and
prints the median of the rounds' ratios, of wall time and of CPU time (user + system, ffmpeg's
included: steadier than wall time where others share the machine).
Each run's own time line (where its time went) is kept; the median run's is printed. The last
line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "samples"
RUN = "import sys; from alignimation_tui.cli import console_main; sys.argv[0] = 'alignimation-tui'; console_main()"


def one_run(code_root: Path, folder: Path, work: Path) -> tuple[float, str, float]:
    """Seconds of one cold run of the code at ``code_root``, its time line, and the CPU seconds it
    used (user + system, ffmpeg's included: the run's children, waited for)."""
    env = dict(os.environ, PYTHONPATH=str(code_root))
    for name in ("CACHE", "DATA", "CONFIG"):
        env[f"XDG_{name}_HOME"] = str(work / name.lower())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUN, str(folder), "--once", "--out", str(work / "out.mp4")],
                          cwd=code_root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{code_root}: exit {done.returncode}\n{done.stderr[-2000:]}")
    line = next((ln for ln in (done.stdout + done.stderr).splitlines() if ln.startswith("time: ")), "")
    return seconds, line, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=SAMPLES / "faces_jerry")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--against", help="a git revision to run too, in the same rounds")
    args = ap.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"no folder {args.folder}")
    codes = {"this checkout": ROOT}
    with tempfile.TemporaryDirectory(prefix="bench_cold_") as tmp:
        tmp = Path(tmp)
        if args.against:
            tree = tmp / "against"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.against], cwd=ROOT, check=True)
            codes[args.against] = tree
        try:
            times: dict[str, list[float]] = {name: [] for name in codes}
            lines: dict[str, list[str]] = {name: [] for name in codes}
            cpus: dict[str, list[float]] = {name: [] for name in codes}
            for k in range(args.rounds):
                for name, root in codes.items():
                    work = tmp / f"{k}-{len(times[name])}-{abs(hash(name))}"
                    seconds, line, cpu = one_run(root, args.folder.resolve(), work)
                    times[name].append(seconds)
                    lines[name].append(line)
                    cpus[name].append(cpu)
                    print(f"round {k + 1} {name}: {seconds:.2f} s, CPU {cpu:.2f} s", flush=True)
        finally:
            if args.against:
                subprocess.run(["git", "worktree", "remove", "--force", str(tmp / "against")], cwd=ROOT)
    result = {"folder": str(args.folder), "rounds": args.rounds}
    for name in codes:
        ts = times[name]
        median_run = sorted(range(len(ts)), key=ts.__getitem__)[len(ts) // 2]
        print(f"{name}: min {min(ts):.2f} s, median {statistics.median(ts):.2f} s, max {max(ts):.2f} s; "
              f"CPU median {statistics.median(cpus[name]):.2f} s")
        print(f"  median run's {lines[name][median_run]}")
        result[name] = {"seconds": [round(t, 3) for t in ts], "median": round(statistics.median(ts), 3),
                        "cpu_seconds": [round(c, 3) for c in cpus[name]], "cpu_median": round(statistics.median(cpus[name]), 3)}
    if args.against:  # each round's pair ran back to back: their ratio is steadier than either figure
        pairs = list(zip(times["this checkout"], times[args.against]))
        cpu_pairs = list(zip(cpus["this checkout"], cpus[args.against]))
        result["ratio"] = round(statistics.median(a / b for a, b in pairs), 3)
        result["cpu_ratio"] = round(statistics.median(a / b for a, b in cpu_pairs), 3)
        print(f"this checkout / {args.against}: median of the rounds' ratios {result['ratio']:.3f} (wall), "
              f"{result['cpu_ratio']:.3f} (CPU)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
