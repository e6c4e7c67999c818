"""Entry point: ``alignimation-tui DIR`` (the app), ``DIR --once`` (headless), ``models``.

Heavy modules (torch, Textual) are imported only once we know which path runs.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

EXIT_USAGE = 2


def _default_config_path() -> Path | None:
    base = Path(os.getenv("XDG_CONFIG_HOME", "~/.config")).expanduser()
    path = base / "alignimation-tui" / "config.toml"
    return path if path.is_file() else None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alignimation-tui",
        description="Turn a folder of photos of one person into an aligned timelapse.",
        epilog="Also: `alignimation-tui models [--download]` lists (and fetches) the model weights.")
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
    table = Table("model", "present", "path", "size")
    for row in describe_models():
        table.add_row(row["model"], "yes" if row["present"] else "[red]missing[/]", row["path"],
                      "" if row["size_mb"] is None else f"{row['size_mb']} MB")
    console.print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "models":
        return _models_main(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    from .config import ConfigError, load_config, with_overrides

    def usage_error(message: str) -> int:
        print(f"alignimation-tui: error: {message}", file=sys.stderr)
        return EXIT_USAGE

    if not args.folder.is_dir():
        return usage_error(f"{args.folder} is not a folder")
    try:
        config = with_overrides(load_config(args.config or _default_config_path()), device=args.device)
    except ConfigError as exc:
        return usage_error(str(exc))
    if not (args.once or args.render_only):
        return usage_error("the interactive app is not available yet in this version; run with --once")

    from .headless import run_once
    from .models import DeviceError, ModelError
    from .pipeline import OutputError
    from .render import RenderError

    try:
        return run_once(args.folder, config, args.out, args.frames, args.json, render_only=args.render_only)
    except (ConfigError, DeviceError, OutputError, ModelError) as exc:
        return usage_error(str(exc))
    except RenderError as exc:
        print(f"alignimation-tui: cannot render: {exc}", file=sys.stderr)
        return 1
