"""When each picture is shown: frame rate or total duration, holds on the first and last photo,
and crossfades between consecutive photos."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ..config import ConfigError

MAX_FPS = 120.0


@dataclass(frozen=True)
class Step:
    """One distinct picture: photo ``a`` (blended towards ``b`` by ``alpha``), shown for ``repeat`` frames."""

    a: int
    b: int | None
    alpha: float
    repeat: int


@dataclass(frozen=True)
class Timing:
    fps: float
    hold_first: int  # extra frames
    hold_last: int
    crossfade: int
    photos: int

    @property
    def distinct(self) -> int:
        """Distinct pictures: each photo once and the blends between them (GIF and WebP frames)."""
        return self.photos + max(0, self.photos - 1) * self.crossfade

    @property
    def frames(self) -> int:
        """Frames at the constant rate (MP4): holds repeat the first and last picture."""
        return self.distinct + self.hold_first + self.hold_last

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    def steps(self) -> Iterator[Step]:
        n, fade = self.photos, self.crossfade
        for i in range(n):
            repeat = 1 + (self.hold_first if i == 0 else 0) + (self.hold_last if i == n - 1 else 0)
            yield Step(i, None, 0.0, repeat)
            if i < n - 1:
                for k in range(1, fade + 1):
                    yield Step(i, i + 1, k / (fade + 1), 1)


def plan_timing(photos: int, fps: float, duration: float = 0.0, hold_first: float = 0.0,
                hold_last: float = 0.0, crossfade: int = 0) -> Timing:
    """``duration`` > 0 sets the whole animation's length (holds included) and overrides ``fps``."""
    if duration > 0:
        moving = duration - hold_first - hold_last
        if moving <= 0:
            raise ConfigError("render.duration", f"{duration:g} s must be longer than render.hold_first + "
                              f"render.hold_last ({hold_first + hold_last:g} s)")
        fps = (photos + max(0, photos - 1) * crossfade) / moving
        if fps > MAX_FPS:
            raise ConfigError("render.duration", f"{duration:g} s is too short for {photos} photos: it would "
                              f"need {fps:.0f} frames per second (at most {MAX_FPS:g})")
    return Timing(fps, round(hold_first * fps), round(hold_last * fps), crossfade, photos)
