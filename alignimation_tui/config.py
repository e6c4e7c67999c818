"""Typed configuration loaded from TOML. Every key, its default and its meaning: sample_config.toml.

A missing file means defaults. Any problem raises ConfigError naming the key (``detect.size``).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .modes import mode_names, mode_sections


class ConfigError(ValueError):
    def __init__(self, key: str, problem: str):
        super().__init__(f"config key '{key}': {problem}")
        self.key = key
        self.problem = problem


def _check(fn: Callable[[Any], str | None]) -> dict:
    return {"check": fn}


def _between(lo: float, hi: float) -> dict:
    return _check(lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}, got {v}")


def _one_of(*choices: str) -> dict:
    return _check(lambda v: None if v in choices else f"must be one of {', '.join(map(repr, choices))}, got {v!r}")


# For the modes' own config sections (``modes.base.Mode.config_sections``), which use the same checks.
check, between, one_of = _check, _between, _one_of


def _known_mode(v: str) -> str | None:
    names = ("auto", *mode_names())
    return None if v in names else f"must be one of {', '.join(map(repr, names))}, got {v!r}"


def _weights(v: list) -> str | None:
    if len(v) != 5 or any(not isinstance(x, (int, float)) or isinstance(x, bool) or x < 0 for x in v):
        return "must be a list of 5 non-negative numbers (left eye, right eye, nose, mouth left, mouth right)"
    if sum(v) <= 0:
        return "must not be all zero"
    return None


def _thresholds(v: list) -> str | None:
    if len(v) != 3 or any(not isinstance(x, (int, float)) or isinstance(x, bool) or not 0 < x < 1 for x in v):
        return "must be a list of 3 numbers between 0 and 1"
    return None


@dataclass(frozen=True)
class StoreConfig:
    cache_dir: str = ""
    data_dir: str = ""


@dataclass(frozen=True)
class ScanConfig:
    max_pixels: int = field(default=120_000_000, metadata=_between(1, 10**10))
    follow_symlinks: bool = False


@dataclass(frozen=True)
class DetectConfig:
    size: int = field(default=1024, metadata=_between(64, 8192))
    min_face_size: int = field(default=40, metadata=_between(8, 4096))
    thresholds: list = field(default_factory=lambda: [0.6, 0.7, 0.7], metadata=_check(_thresholds))
    min_confidence: float = field(default=0.9, metadata=_between(0.0, 1.0))
    batch_size: int = field(default=0, metadata=_between(0, 1024))
    decode_workers: int = field(default=2, metadata=_between(1, 64))


@dataclass(frozen=True)
class LandmarksConfig:
    rounds: int = field(default=2, metadata=_between(0, 10))
    mirror: bool = True
    jitter: float = field(default=0.05, metadata=_between(0.0, 0.5))
    max_faces: int = field(default=8, metadata=_between(1, 1000))


@dataclass(frozen=True)
class IdentityConfig:
    max_distance: float = field(default=0.65, metadata=_between(0.0, 4.0))
    doubt_distance: float = field(default=0.55, metadata=_between(0.0, 4.0))


@dataclass(frozen=True)
class FacingConfig:
    max_yaw_deg: float = field(default=50.0, metadata=_between(0.0, 90.0))
    min_eye_ratio: float = field(default=0.0, metadata=_between(0.0, 1.0))
    min_mouth_ratio: float = field(default=0.0, metadata=_between(0.0, 1.0))
    keep_turned: bool = False


@dataclass(frozen=True)
class RegisterConfig:
    reference: str = ""
    long_side: int = field(default=1080, metadata=_between(64, 8192))
    landmark_weights: list = field(default_factory=lambda: [1.0, 1.0, 0.0, 0.0, 0.0],
                                   metadata=_check(_weights))
    refine: bool = False
    sigma: float = field(default=0.04, metadata=_between(0.005, 0.5))
    work_size: int = field(default=64, metadata=_between(16, 256))
    iterations: int = field(default=30, metadata=_between(0, 1000))
    batch_size: int = field(default=0, metadata=_between(0, 100000))


def _fill(v: str) -> str | None:
    if v in ("black", "white", "blur") or re.fullmatch(r"#[0-9a-fA-F]{6}", v):
        return None
    return f"must be 'black', 'white', 'blur' or a colour '#rrggbb', got {v!r}"


def _caption_format(v: str) -> str | None:
    from datetime import datetime

    try:
        datetime(2024, 1, 2).strftime(v.format(index=1, count=1, name="x", date=datetime(2024, 1, 2), days=1, weeks=0))
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        return (f"is not a valid caption format ({exc}); use strftime codes like %Y-%m-%d and "
                "{index} {count} {name} {date} {days} {weeks}")
    return None


@dataclass(frozen=True)
class CaptionConfig:
    format: str = field(default="", metadata=_check(_caption_format))
    position: str = field(default="bottom-left", metadata=_one_of(
        "bottom-left", "bottom", "bottom-right", "top-left", "top", "top-right"))
    size: float = field(default=0.05, metadata=_between(0.01, 0.5))


SIZE_PRESETS = {"square": (1080, 1080), "portrait": (1080, 1350), "story": (1080, 1920),
                "landscape": (1920, 1080)}
_WXH = re.compile(r"(\d+)x(\d+)")
MIN_SIDE, MAX_SIDE = 16, 8192


def parse_size(value: str) -> tuple[int, int] | None:
    """A preset name or ``WxH`` (even sides, 16..8192) -> (width, height); None for "auto"."""
    if value == "auto":
        return None
    if value in SIZE_PRESETS:
        return SIZE_PRESETS[value]
    m = _WXH.fullmatch(value)
    if m is None:
        raise ValueError(f"must be 'auto', {', '.join(map(repr, SIZE_PRESETS))} or 'WxH' (e.g. '1080x1350'), "
                         f"got {value!r}")
    w, h = int(m[1]), int(m[2])
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE) or w % 2 or h % 2:
        raise ValueError(f"sides must be even numbers from {MIN_SIDE} to {MAX_SIDE}, got {value!r}")
    return w, h


def _output_size(v: str) -> str | None:
    try:
        parse_size(v)
    except ValueError as exc:
        return str(exc)
    return None


MORPH_EXCLUSIVE = ("cannot be combined with render.crossfade: both fill the frames between two photos "
                   "(a morph moves the face, a crossfade dissolves it); set one of them to 0")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class RenderConfig:
    output: str = ""
    fps: float = field(default=8.0, metadata=_between(0.1, 120.0))
    quality: int = field(default=20, metadata=_between(0, 51))
    preset: str = field(default="veryfast", metadata=_one_of(*X264_PRESETS))
    gif_max_width: int = field(default=480, metadata=_between(16, 8192))
    webp_quality: int = field(default=80, metadata=_between(0, 100))
    crop: str = field(default="canvas", metadata=_one_of("canvas", "shared"))
    fill: str = field(default="blur", metadata=_check(_fill))
    duration: float = field(default=0.0, metadata=_between(0.0, 86400.0))
    hold_first: float = field(default=0.0, metadata=_between(0.0, 3600.0))
    hold_last: float = field(default=0.0, metadata=_between(0.0, 3600.0))
    crossfade: int = field(default=0, metadata=_between(0, 120))
    morph: int = field(default=0, metadata=_between(0, 120))
    smoothing: int = field(default=0, metadata=_between(0, 1000))
    sidecar: bool = True
    framing: str = field(default="auto", metadata=_one_of("auto", "reference"))
    size: str = field(default="auto", metadata=_check(_output_size))
    eye_x: float = field(default=0.5, metadata=_between(0.0, 1.0))
    eye_y: float = field(default=0.42, metadata=_between(0.0, 1.0))
    eye_distance: float = field(default=0.2, metadata=_between(0.02, 0.9))
    body_height: float = field(default=0.85, metadata=_between(0.05, 2.0))
    match_colour: str = field(default="trend", metadata=_one_of("off", "brightness", "reference", "trend"))
    caption: CaptionConfig = field(default_factory=CaptionConfig)

    def __post_init__(self):
        if self.crossfade and self.morph:
            raise ConfigError("render.morph", MORPH_EXCLUSIVE)


@dataclass(frozen=True)
class WatchConfig:
    settle_seconds: float = field(default=1.0, metadata=_between(0.0, 600.0))
    auto_render: bool = False
    auto_render_delay: float = field(default=10.0, metadata=_between(0.0, 86400.0))


@dataclass(frozen=True)
class SelectConfig:
    every: str = field(default="off", metadata=_one_of("off", "day", "week", "month"))
    duplicates: bool = False
    duplicate_bits: int = field(default=4, metadata=_between(0, 32))
    burst_seconds: float = field(default=0.0, metadata=_between(0.0, 86400.0))
    min_sharpness: float = field(default=0.0, metadata=_between(0.0, 1_000_000.0))


@dataclass(frozen=True)
class PreviewConfig:
    graphics: str = field(default="auto", metadata=_one_of("auto", "kitty", "sixel", "halfblock"))


@dataclass(frozen=True)
class Config:
    mode: str = field(default="auto", metadata=_check(_known_mode))
    device: str = field(default="auto", metadata=_one_of("auto", "cpu", "cuda"))
    store: StoreConfig = field(default_factory=StoreConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    landmarks: LandmarksConfig = field(default_factory=LandmarksConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    facing: FacingConfig = field(default_factory=FacingConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    preview: PreviewConfig = field(default_factory=PreviewConfig)
    # The modes' own sections (``[body]``, ...), by name; the ones a file leaves out are defaults.
    sections: dict = field(default_factory=dict, metadata={"sections": True})

    def section(self, name: str):
        """A mode's config section (``modes.base.Mode.config_sections``): as read, or its defaults."""
        if name in self.sections:
            return self.sections[name]
        return mode_sections()[name]()


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}


def _coerce(key: str, want: type, value: Any) -> Any:
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and want is not bool:
        raise ConfigError(key, f"must be {_TYPE_NAMES[want]}, got {value!r}")
    if not isinstance(value, want):
        raise ConfigError(key, f"must be {_TYPE_NAMES[want]}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, table: dict, prefix: str) -> Any:
    known = {f.name: f for f in fields(cls) if not f.metadata.get("sections")}
    extra = mode_sections() if cls is Config else {}
    for key in table:
        if key in extra:
            continue
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, [*known, *extra], n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(prefix + key, f"unknown key{hint}")
    values = {}
    for name, f in known.items():
        if name not in table:
            continue
        key, value = prefix + name, table[name]
        if is_dataclass(f.default_factory):
            if not isinstance(value, dict):
                raise ConfigError(key, "must be a table ([section])")
            values[name] = _build(f.default_factory, value, key + ".")
            continue
        want = f.type if isinstance(f.type, type) else \
            {"int": int, "float": float, "str": str, "bool": bool, "list": list}[f.type]
        value = _coerce(key, want, value)
        problem = f.metadata.get("check", lambda v: None)(value)
        if problem:
            raise ConfigError(key, problem)
        values[name] = value
    sections = {}
    for name, section in extra.items():
        if name in table:
            if not isinstance(table[name], dict):
                raise ConfigError(prefix + name, "must be a table ([section])")
            built = _build(section, table[name], f"{prefix}{name}.")
            if built != section():  # kept only when it differs: a config equals another with the same values
                sections[name] = built
    if sections:
        values["sections"] = sections
    return cls(**values)


def load_config(path: Path | None) -> Config:
    """Read a TOML config; None or a missing default location means all defaults."""
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise ConfigError("--config", f"no such file: {path}")
    import tomllib  # (a run without a config file never needs it)

    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    return _build(Config, table, "")


def as_table(config: Config) -> dict:
    """``config`` as the TOML table it reads back from: every key, the modes' sections included."""
    table = asdict(config)
    table.pop("sections")
    return table | {name: asdict(config.section(name)) for name in mode_sections()}


def with_overrides(config: Config, **top: Any) -> Config:
    """Apply command-line flags (only those given) on top of the file's values."""
    given = {k: v for k, v in top.items() if v is not None}
    for key, value in given.items():
        problem = next(f for f in fields(Config) if f.name == key).metadata.get("check", lambda v: None)(value)
        if problem:
            raise ConfigError("--" + key, problem)
    return replace(config, **given)
