"""``--once``: the whole pipeline without a screen. Progress and the summary go to stderr; with
``--json``, one JSON object per photo goes to stdout (a path that is not UTF-8: see ``names``).
No Textual import here.

Ctrl+C, SIGTERM and SIGHUP end the run with one line and exit 128 + the signal's number (130,
143, 129), as shells report them: whatever was detected is in the cache (each photo's result is
stored as it is done), ffmpeg is ended and partial outputs are removed by the render's own clean-up,
decisions are on disk already, and the next run goes on from there. A render that fails (a full disk, ffmpeg failing)
ends with one line and exit 1; the previous output stays."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config
from .curate import subject_sharpness
from .domain import FrameResult, FrameStatus
from .folders import FolderError, reason
from .names import json_safe, path_fields, printable
from .pipeline import Pipeline, check_output_place
from .render import RenderError
from .render.staging import remove_abandoned

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK, EXIT_NOTHING_ALIGNED, EXIT_USAGE = 0, 1, 2
EXIT_RENDER_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl+C; SIGTERM 143, SIGHUP 129
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, taken as Ctrl+C is; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(exc: KeyboardInterrupt) -> int:
    return 128 + getattr(exc, "signum", signal.SIGINT)


def say(line: str) -> None:
    """One plain line on stderr, never wrapped."""
    sys.stderr.write(printable(line) + "\n")
    sys.stderr.flush()


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM and SIGHUP (a logout, ``kill``, a closed SSH session) end the run as Ctrl+C does
    (only the main thread can take signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, interrupt) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupted_line(pipeline: Pipeline | None) -> str:
    readable = [r for r in (pipeline.results.values() if pipeline is not None else ())
                if not r.extra.get("unreadable")]
    done = sum(r.detection is not None for r in readable)
    return f"interrupted: {done} of {len(readable)} photos detected and cached; run again to go on"


def frame_json(r: FrameResult, output_matrix=None, mode_fields: dict | None = None) -> dict:
    """``transform``: the registration (photo -> the reference's canvas); ``output_transform``: the
    matrix the render uses (photo -> output, framing included); ``mode_fields``: the mode's own
    (``Mode.report``: face mode's faces and identity distance, body mode's persons and side)."""
    s = r.subject.facing if r.subject is not None else None
    sharp = subject_sharpness(r)
    return json_safe({
        **path_fields(r.frame.path),
        "hash": r.frame.hash,
        "date": r.frame.taken_at.isoformat(),
        "date_source": r.frame.date_source,
        "status": r.status.value,
        "verdict": r.verdict.value,
        "scores": {"eye_ratio": s.eye_ratio, "mouth_ratio": s.mouth_ratio, "yaw_deg": s.yaw_deg} if s else None,
        "confidence": r.subject.confidence if r.subject is not None else None,
        "faces": None,
        "identity_distance": None,
        "residual_pct": r.transform.residual_pct if r.transform else None,
        "transform": [list(row) for row in r.transform.matrix] if r.transform else None,
        "output_transform": None if output_matrix is None else [[float(v) for v in row] for row in output_matrix],
        "nudge": r.nudge.to_json() if r.nudge is not None else None,
        "sharpness": None if sharp is None else round(sharp, 2),
        "dhash": f"{r.quality.dhash:016x}" if r.quality is not None else None,
        "skipped": r.skip_reason,
        "outlier": r.outlier_reason,
        "unsure": r.doubts if r.status in (FrameStatus.ALIGNED, FrameStatus.SKIPPED) else None,
        "error": r.error,
    } | (mode_fields or {}))


def _progress(console: Console):
    """A progress bar on a terminal; into a log file or a pipe, plain lines (``PlainProgress``)."""
    if not console.is_terminal:
        return PlainProgress(console)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[name]}"), console=console, transient=True)


class PlainProgress:
    """Progress for a log (a cron job, a CI log): a plain line, never a control sequence, each time
    a task passes another ``STEP`` of its total or ``EVERY`` seconds have gone by, and when it ends:
    ``detecting 12/120 (10 %) IMG_0012.jpg``. The same calls as rich's ``Progress``."""

    STEP = 0.1
    EVERY = 10.0

    def __init__(self, console: Console):
        self.console = console
        self.tasks: dict[int, dict] = {}
        self._next = 0

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def remove_task(self, task: int) -> None:
        self.tasks.pop(task, None)

    def add_task(self, description: str, total: int | None = None, name: str = "") -> int:
        task, self._next = self._next, self._next + 1
        self.tasks[task] = {"description": description, "total": total or 0, "done": 0, "said": -1.0,
                            "at": time.monotonic(), "name": name}
        return task

    def update(self, task: int, advance: int = 0, completed: int | None = None, name: str | None = None) -> None:
        t = self.tasks[task]
        t["done"] = completed if completed is not None else t["done"] + advance
        t["name"] = name if name is not None else t["name"]
        total, share = t["total"], (t["done"] / t["total"] if t["total"] else 1.0)
        if total and (share - t["said"] >= self.STEP or t["done"] >= total
                      or time.monotonic() - t["at"] >= self.EVERY) and share > t["said"]:
            t["said"], t["at"] = share, time.monotonic()
            self.console.print(f"{t['description']} {t['done']}/{total} ({share:.0%}) {t['name']}".rstrip(),
                               markup=False, highlight=False, soft_wrap=True)


def import_rich_soon() -> threading.Thread:
    """rich (30-40 ms of imports) imported on a thread of its own, beside the first look at the
    photos (whose threads wait for OpenCV and the JPEG decoder most of the time), instead of
    before it, on the run's only busy core; ``_console`` and the summary import it as ever (the
    same module: they wait for this import if it is still under way)."""
    def work() -> None:
        import rich.console  # noqa: F401
        import rich.table  # noqa: F401

    thread = threading.Thread(target=work, name="import rich", daemon=True)
    thread.start()
    return thread


def _console() -> Console:
    """stderr; when it is not a terminal (a log file, a pipe), lines are never wrapped, so a path
    stays whole on its line. No emoji codes: a photo named ``a:smile:b.jpg`` is printed as it is."""
    from rich.console import Console

    console = Console(stderr=True, emoji=False)
    if not console.is_terminal:
        console = Console(stderr=True, soft_wrap=True, width=100_000, emoji=False)
    return console


def no_photos_line(folder: Path) -> str:
    from .scan import readable_suffixes

    order = [".jpg", ".jpeg", ".png", ".heic"]
    suffixes = [s for s in order if s in readable_suffixes()] + sorted(readable_suffixes() - set(order))
    return f"no photos in {folder} (looked for {', '.join(suffixes)})"


def since_process_start() -> float | None:
    """Seconds since this process started (Linux: its start time in /proc, 10 ms steps), so the
    time line counts Python's start and the imports too; None where that cannot be read."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


# The stages the time line names, in the order a run meets them; each is timed on the run's own
# thread, so with the start they add up to the run (decoding runs beside them, on its threads:
# what the run waited for it is "waiting for photos"). Where face detection ran on worker threads
# side by side ("faces": the run's own time for it), its stages are the workers' busy time,
# summed, and named inside it.
_TIME_LINE = (("mode", "choosing the mode"), ("scan", "scan"), ("models", "models"),
              ("decode_wait", "waiting for photos"), ("detect", "detection"), ("landmarks", "landmarks"),
              ("embed", "identity"), ("quality borders colour", "measures"), ("select register", "registration"),
              ("render", "render"))
_SIDE_BY_SIDE = ("detect", "landmarks", "embed", "quality borders colour")


def time_line(pipeline: Pipeline, started: float | None, total: float | None) -> str | None:
    """Where a run's time went: "time: 1.4 s — start 0.35, choosing the mode 0.10, ...". ``started``:
    seconds from the process's start to the run's; ``total``: to its end. Stages under 5 ms are not named."""
    if total is None:
        return None
    parts = [f"start {started:.2f}"] if started is not None else []
    stages = pipeline.stage_seconds
    side_by_side = "faces" in stages
    inside = []
    taken = getattr(pipeline, "looked_taken", 0)
    for keys, label in _TIME_LINE:
        seconds = sum(stages.get(k, 0.0) for k in keys.split())
        if keys == "mode" and taken:  # the faces stage did not look for these again
            parts.append(f"{label} {seconds:.2f} (faces found there in {taken} photos, kept)")
        elif side_by_side and keys in _SIDE_BY_SIDE:
            if not inside:
                parts.append("")  # the faces' place, filled below
                at = len(parts) - 1
            inside.append(f"{label} {seconds:.2f}")
        elif seconds >= 0.005:
            parts.append(f"{label} {seconds:.2f}")
    if inside:
        parts[at] = f"faces {stages['faces']:.2f} (threads side by side, busy in {', '.join(inside)})"
    return f"time: {total:.2f} s since the process started — " + ", ".join(parts)


def _summary(console: Console, pipeline: Pipeline, out: Path | None, written: int, seconds: float,
             started: float | None = None) -> None:
    results = list(pipeline.results.values())
    counts = Counter(r.status.value for r in results)
    console.print(f"{printable(str(pipeline.folder))} — {len(results)} photos in {seconds:.1f} s",
                  soft_wrap=True, markup=False, highlight=False)  # its own line: a table title wraps
    line = time_line(pipeline, started, since_process_start())
    if line is not None:
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    console.print(f"mode: {pipeline.mode_label}", soft_wrap=True, markup=False, highlight=False)
    from rich.table import Table

    table = Table()
    for col in ("status", "photos"):
        table.add_column(col)
    for status in FrameStatus:
        if counts.get(status.value):
            table.add_row(status.value, str(counts[status.value]))
    console.print(table)
    problems = [r for r in results if r.status in (FrameStatus.FAILED, FrameStatus.NO_SUBJECT, FrameStatus.TURNED,
                                                   FrameStatus.STRANGER, FrameStatus.OUTLIER)]
    for r in problems[:50]:
        facing = r.subject.facing if r.subject is not None else None
        why = r.error or r.outlier_reason or (f"yaw {facing.yaw_deg:+.0f}°" if facing is not None else "")
        console.print(f"  [yellow]{r.status.value:<10}[/] {printable(r.frame.path.name)}: {printable(why)}")
    if len(problems) > 50:
        console.print(f"  … and {len(problems) - 50} more (use --json for all)")
    skipped = [r for r in results if r.status is FrameStatus.SKIPPED]
    if skipped:
        console.print(f"  [blue]skipped[/]    {len(skipped)} photo(s) by the selection ([select]), e.g. "
                      f"{printable(skipped[0].frame.path.name)}: {printable(skipped[0].skip_reason)} (use --json for all)")
    if pipeline.reference is not None:
        framing = pipeline.framing
        console.print(f"reference: {printable(pipeline.results[pipeline.reference.hash].frame.path.name)}, canvas "
                      f"{pipeline.reference.canvas[0]}x{pipeline.reference.canvas[1]}; output "
                      f"{framing.size[0]}x{framing.size[1]}, framed by {framing.style}")
    done = pipeline.last_render
    if out is not None and written and done is not None and done.unchanged:
        console.print(f"[green]{printable(str(out))} is up to date[/] ({written} photos, {done.frames} frames: "
                      "nothing that changes it changed since it was written)", soft_wrap=True)
    elif out is not None and written and done is not None:
        w, h = done.size
        extra = f", sidecar {done.sidecar.name}" if done.sidecar else ""
        console.print(f"[green]wrote {printable(str(out))}[/] ({written} photos, {done.frames} frames, {w}x{h}, "
                      f"{_megabytes(done.bytes)}{extra})", soft_wrap=True)  # a path is never cut in two
    elif out is not None and written:
        console.print(f"[green]wrote {printable(str(out))}[/] ({written} frames)", soft_wrap=True)


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


def folder_unreadable(folder: Path, exc: OSError) -> FolderError:
    return FolderError(f"cannot read the photo folder {printable(str(folder))}: {reason(exc)}", Path(folder))


def check_folder_readable(folder: Path) -> None:
    """``FolderError`` in one line when the photo folder cannot be listed (permission denied...)."""
    try:
        with os.scandir(folder) as entries:
            next(entries, None)
    except OSError as exc:
        raise folder_unreadable(folder, exc) from None


def run_once(folder: Path, config: Config, out: Path | None, frames_dir: Path | None = None,
             as_json: bool = False, render_only: bool = False) -> int:
    """``render_only``: no detection, no registration; photos with nothing stored are named and left
    out, and when nothing at all is stored the run exits 2 saying so."""
    pipeline = None
    started = since_process_start()
    try:
        with sigterm_as_interrupt():
            if out is not None:  # before auto mode looks at a photo
                check_output_place(folder, out)
            check_folder_readable(folder)
            import_rich_soon()
            pipeline = Pipeline(folder, config, look=not render_only)
            try:
                return _run(pipeline, config, out, frames_dir, as_json, render_only, started)
            finally:
                pipeline.close()
    except KeyboardInterrupt as exc:
        say(interrupted_line(pipeline))
        return exit_code(exc)


def _run(pipeline: Pipeline, config: Config, out: Path | None, frames_dir: Path | None,
         as_json: bool, render_only: bool, process_started: float | None = None) -> int:
    console = _console()
    started = time.perf_counter()
    out = out or pipeline.default_output()
    for folder in (out.parent, frames_dir):  # what a killed run left there (its writer is gone)
        if folder is not None:
            remove_abandoned(folder)
    failed: RenderError | None = None
    with _progress(console) as bar:
        if render_only:
            missing = pipeline.restore(exclude={out})
            pipeline.check_output(out)
            for line in missing[:20]:
                console.print(f"[yellow]left out[/] {printable(line)}")
            if len(missing) > 20:
                console.print(f"  … and {len(missing) - 20} more")
            if missing:
                console.print(f"[yellow]{len(missing)} photo(s) left out[/]: run without --render-only to "
                              "detect and align them")
            if not pipeline.kept():
                console.print("[red]nothing stored to render[/]: run once without --render-only first "
                              "(with the same config)")
                return EXIT_USAGE
        else:
            try:
                results = pipeline.scan(exclude={out})
            except OSError as exc:  # the folder went unreadable since the check above
                raise folder_unreadable(pipeline.folder, exc) from None
            if not results:
                say(no_photos_line(pipeline.folder))
                return EXIT_NOTHING_ALIGNED
            pipeline.check_output(out)
            todo = [r for r in results if pipeline.needs_detection(r)]  # asked once a photo (a store read)
            detecting = len(todo)
            task = None
            if detecting:
                task = bar.add_task("detecting", total=detecting, name="")  # shown while the models load
                pipeline.warm_up()  # the models (and torch) now, while the bar says so
            pipeline.process(todo, progress=lambda r: task is None or bar.update(task, advance=1,
                                                                                  name=printable(r.frame.path.name)))
            if task is not None:
                bar.remove_task(task)  # done: the render's bar alone from here
        for notice in pipeline.notices:
            console.print(f"[cyan]note:[/] {printable(notice)}")
        kept = pipeline.kept()
        written = 0
        if kept:
            task = bar.add_task("rendering", total=len(kept), name=printable(out.name))
            try:
                written = pipeline.render(out, frames_dir, progress=lambda n: bar.update(task, completed=n))
            except RenderError as exc:  # the per-photo results still stand: --json prints them
                failed = exc
            else:
                for notice in pipeline.last_render.notices:
                    console.print(f"[cyan]note:[/] {printable(notice)}")
    if as_json:
        for r in pipeline.results.values():
            output = pipeline.output_matrix(r) if r.transform is not None and pipeline.framing else None
            fields = {"mode": pipeline.mode.name, "mode_auto": pipeline.mode_choice is not None,
                      **pipeline.mode.report(r)}
            sys.stdout.write(json.dumps(frame_json(r, output, fields)) + "\n")
        sys.stdout.flush()
    if failed is not None:
        say(f"alignimation-tui: cannot render: {failed}")
        return EXIT_RENDER_FAILED
    _summary(console, pipeline, out, written, time.perf_counter() - started, process_started)
    if not written:
        console.print(f"[red]nothing could be aligned[/]: no photo has a usable {pipeline.mode.subject_word}")
        return EXIT_NOTHING_ALIGNED
    return EXIT_OK
