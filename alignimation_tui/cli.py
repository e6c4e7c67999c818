"""Entry point: ``alignimation-tui DIR`` (the app), ``DIR --once`` (headless), ``models``.

Heavy modules (torch, Textual) are imported only once we know which path runs.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# numpy's OpenBLAS on one thread (unless the person says otherwise), set before numpy is imported:
# our matrices are small (3x3 warps, 5-point fits, a few hundred descriptors), and its pool's
# thread, spinning after each call, took 0.04 s of CPU from the detection workers in a small
# folder's cold run on two cores (a thread per core, for nothing).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

EXIT_USAGE = 2


def _default_config_path() -> Path | None:
    base = Path(os.getenv("XDG_CONFIG_HOME", "~/.config")).expanduser()
    path = base / "alignimation-tui" / "config.toml"
    return path if path.is_file() else None


def _parser() -> argparse.ArgumentParser:
    from .modes import mode_names

    p = argparse.ArgumentParser(
        prog="alignimation-tui",
        description="Turn a folder of photos of one person into an aligned timelapse.",
        epilog="Also: `alignimation-tui demo [DIR] [--once]` writes a folder of sample photos and opens it; "
               "`alignimation-tui models [--download]` lists (and fetches) the model weights.")
    p.add_argument("folder", type=Path, help="the folder of photos")
    p.add_argument("--once", action="store_true", help="run headless: detect, align, render, exit")
    p.add_argument("--config", type=Path, help="TOML config (default: ~/.config/alignimation-tui/config.toml "
                   "if present; see sample_config.toml)")
    p.add_argument("--render-only", action="store_true",
                   help="render again from what is stored (no detection, no registration; implies --once); "
                   "photos with nothing stored are named and left out")
    p.add_argument("--out", type=Path, help="animation to write, .mp4, .gif or .webp (default: ./FOLDER-timelapse.mp4)")
    p.add_argument("--frames", type=Path, metavar="DIR", help="also write every aligned frame into DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object per photo on stdout")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where models run (default: auto)")
    p.add_argument("--mode", choices=("auto", *mode_names()), help="register by face landmarks or by the person's "
                   "mask and body keypoints (default: face)")
    return p


def _models_main(argv: list[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    from .models import ModelError, describe_models, download_missing

    p = argparse.ArgumentParser(prog="alignimation-tui models", description="List or fetch model weights.")
    p.add_argument("--download", action="store_true", help="download the missing weights")
    args = p.parse_args(argv)
    console = Console()
    if args.download:
        try:
            for path in download_missing():
                console.print(f"downloaded {path}")
        except ModelError as exc:
            Console(stderr=True).print(f"[red]error:[/] {exc}")
            return 1
    table = Table("model", "present", "size")
    table.add_column("path", overflow="fold")
    for row in describe_models():
        table.add_row(row["model"], "yes" if row["present"] else "[red]missing[/]",
                      "" if row["size_mb"] is None else f"{row['size_mb']} MB", row["path"])
    console.print(table)
    return 0


def _demo_main(argv: list[str]) -> int:
    from .demo import DemoError, write_demo

    p = argparse.ArgumentParser(
        prog="alignimation-tui demo",
        description="Write a small folder of sample photos (a public-domain portrait under varied turns, "
        "sizes, orientations and dates, and one photo with no face) and open the app on it; with --once, "
        "render it headless. Any other option is passed on as for `alignimation-tui DIR`.")
    p.add_argument("folder", type=Path, nargs="?", default=Path("alignimation-demo"),
                   help="where to write the photos (default: ./alignimation-demo)")
    args, rest = p.parse_known_args(argv)
    try:
        photos = write_demo(args.folder)
    except (DemoError, OSError) as exc:
        print(f"alignimation-tui demo: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {len(photos)} sample photos to {args.folder}", file=sys.stderr)
    return main([str(args.folder), *rest])


def _run_app(folder: Path, config, usage_error) -> int:
    from .folders import FolderError
    from .models import DeviceError, ModelError

    try:
        from .tui.app import AlignimationApp
    except ImportError as exc:  # Textual is a dependency, but say plainly if it is broken
        return usage_error(f"the interactive app cannot start ({exc}); use --once")
    if not sys.stdout.isatty():
        return usage_error("the interactive app needs a terminal; use --once in scripts")
    try:
        AlignimationApp(folder, config).run()
    except (DeviceError, ModelError, FolderError) as exc:  # before the screen: the cache folder, the device
        return usage_error(str(exc))
    return 0


def console_main() -> None:
    """The command's entry point: ``main``, then the exit without the interpreter's teardown.
    Once torch is imported, tearing its modules down took 0.4-1.3 s after the work was done (a
    tenth of a 30-photo body run); without it, numpy's, OpenCV's and the rest took 0.05 s (of a
    small folder's 0.3 s run from its cache). Everything a run writes is closed by then. The exit
    handlers still run (logging's flush among them) and the standard streams are flushed first."""
    code = main()
    import atexit

    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said anyway
        pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before any photo was read (importing torch takes seconds)
        print("interrupted: nothing was changed", file=sys.stderr)
        return 130


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "models":
        return _models_main(argv[1:])
    if argv and argv[0] == "demo":
        return _demo_main(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    from .config import ConfigError, load_config, with_overrides
    from .names import printable

    def usage_error(message: str) -> int:
        print(f"alignimation-tui: error: {printable(message)}", file=sys.stderr)
        return EXIT_USAGE

    if not args.folder.is_dir():
        return usage_error(f"{args.folder} is not a folder")
    try:
        config = with_overrides(load_config(args.config or _default_config_path()), device=args.device, mode=args.mode)
    except ConfigError as exc:
        return usage_error(str(exc))
    from .models import DeviceError, ModelError, require_models

    try:  # before anything is created or written: no cache folder, no output
        require_models(config.mode)
    except ModelError as exc:
        return usage_error(str(exc))
    if not (args.once or args.render_only):
        return _run_app(args.folder, config, usage_error)

    from .folders import FolderError
    from .models import collector_paused, freeze_long_lived

    # Importing makes objects that stay (60-80 collector passes there freed nothing): imported with
    # the collector off, and put out of its sight before it is on again (else its first pass would
    # look through them all at once: 10-20 ms).
    with collector_paused():
        from .headless import run_once
        from .pipeline import OutputError
        from .render import RenderError

        freeze_long_lived()

    try:
        return run_once(args.folder, config, args.out, args.frames, args.json, render_only=args.render_only)
    except (ConfigError, DeviceError, OutputError, ModelError, FolderError) as exc:
        return usage_error(str(exc))
    except RenderError as exc:
        print(f"alignimation-tui: cannot render: {printable(str(exc))}", file=sys.stderr)
        return 1
