"""From render items to a finished animation: plan the geometry and the timing, then stream.

At most two composed pictures are alive at a time (the current photo and the next, for a
crossfade or a morph), plus the one or two being composed ahead in a worker thread while the
encoder works; an MP4 first holds its first few photos (``writers.look_ahead_photos``) to choose
its B-frames from them, and its workers compose as many more ahead while the encoder starts.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from ..colour import ColourGain
from ..config import MORPH_EXCLUSIVE, ConfigError
from ..cores import usable_cores
from ..folders import folder_error, out_of_space, reason
from ..names import json_safe, path_fields, printable
from ..nudge import Nudge, nudged
from ..photos import decode_ahead, upright_size
from .frame import CaptionStyle, caption_text, compose_array, decode_for, draw_caption
from .geometry import coverages, shared_crop, smooth_matrices
from .sidecar import FRAMES_SIDECAR, SIDECAR_VERSION, sidecar_path, stage_json
from .staging import Staged, folder_locked, remove_abandoned
from .timing import Timing, plan_timing
from .writers import (BLENDS_THAT_PAY, OUTPUT_SUFFIXES, WriteFailed, b_frames_pay, find_ffmpeg_soon,
                      look_ahead_photos, open_writer)

OUTPUT_KEY = "render.output (or --out)"
MORPH_KEY = "render.morph"
FRAMES_KEY = "--frames"
# A write that failed for want of room or of a working disk: the render failed (exit 1), the
# folder itself is fine. Any other OSError says the folder cannot be used (exit 2, names the key).
WRITE_ERRNOS = {errno.EIO}

# Below this share of the canvas, a shared crop gets a notice naming the photo that limits it.
SMALL_CROP = 0.5
# A photo covering more of the frame than this counts as covering all of it (edge rounding).
FULL_COVER = 0.999


# Bumped whenever the same photos, transforms and settings give different pictures (a new warp,
# a new encoder default): a render written by an earlier revision is then never taken as up to date.
RENDER_REVISION = 5  # 2: OpenCV's warp and decode into arrays; 3: x264's veryfast without 8x8 inter partitions;
# 4: a solid fill keeps its colour (the colour match corrects the photo, not the border); 5: a photo
# smaller than the frame is colour-corrected before the warp, and an MP4's frames go to x264 in
# yuv420p made by OpenCV (ffmpeg's conversion, within a level or two)


class RenderError(Exception):
    pass


@dataclass(frozen=True)
class RenderItem:
    """One kept photo. In body mode with a background other than "keep", ``mask`` is the person's
    uint8 soft mask over the upright original; the background is replaced after the warp."""

    path: Path
    name: str
    matrix: np.ndarray  # 3x3, upright original pixels -> canvas pixels
    hash: str = ""
    taken_at: datetime | None = None
    size: tuple[int, int] | None = None  # upright original size; read from the file when None
    info: dict = field(default_factory=dict)  # verdict, status, residual_pct...: copied to the sidecar
    mask: np.ndarray | None = None
    background: str = "keep"
    feather_px: float = 0.0
    colour: ColourGain | None = None  # render.match_colour's correction, applied before the background
    nudge: Nudge | None = None  # the person's correction, in output space (nudge.py)
    anchor: np.ndarray | None = None  # two points (upright original) the nudge is anchored on
    picture: tuple[float, float, float, float] | None = None  # the photo without its flat borders (borders.py)


@dataclass(frozen=True)
class RenderSettings:
    fps: float = 8.0
    quality: int = 20
    preset: str = "veryfast"  # x264's, MP4 only
    gif_max_width: int = 480
    webp_quality: int = 80
    crop: str = "canvas"  # "canvas" | "shared"
    fill: str = "black"  # black | white | blur | #rrggbb
    caption: CaptionStyle | None = None
    duration: float = 0.0
    hold_first: float = 0.0
    hold_last: float = 0.0
    crossfade: int = 0
    morph: int = 0  # in-between frames that move the face (morph.py); exclusive with crossfade
    smoothing: int = 0
    sidecar: bool = True
    max_pixels: int = 120_000_000
    framing: dict = field(default_factory=dict)  # the framing settings, for the sidecar
    match_colour: str = "off"  # for the sidecar; the gains themselves come with the items

    def __post_init__(self):
        if self.crossfade and self.morph:
            raise ConfigError(MORPH_KEY, MORPH_EXCLUSIVE)

    @classmethod
    def from_config(cls, config) -> "RenderSettings":
        rc = config.render
        cap = rc.caption
        return cls(fps=rc.fps, quality=rc.quality, preset=rc.preset, gif_max_width=rc.gif_max_width, webp_quality=rc.webp_quality,
                   crop=rc.crop, fill=rc.fill,
                   caption=CaptionStyle(cap.format, cap.position, cap.size) if cap.format else None,
                   duration=rc.duration, hold_first=rc.hold_first, hold_last=rc.hold_last,
                   crossfade=rc.crossfade, morph=rc.morph, smoothing=rc.smoothing, sidecar=rc.sidecar,
                   max_pixels=config.scan.max_pixels, match_colour=rc.match_colour,
                   framing={"framing": rc.framing, "size": rc.size, "eye_x": rc.eye_x, "eye_y": rc.eye_y,
                            "eye_distance": rc.eye_distance, "body_height": rc.body_height})


@dataclass(frozen=True)
class Layout:
    """Where every photo goes on the output picture."""

    matrices: list[np.ndarray]  # upright original -> output pixels
    size: tuple[int, int]
    crop: tuple[int, int, int, int] | None  # x, y, width, height on the registration canvas
    notices: list[str]


@dataclass(frozen=True)
class RenderResult:
    out: Path
    photos: int
    frames: int  # frames in the animation (MP4: at the constant rate; GIF/WebP: distinct pictures)
    size: tuple[int, int]
    bytes: int
    sidecar: Path | None
    notices: list[str]
    unchanged: bool = False  # the file already held exactly this render: nothing was written (``up_to_date``)


def plan_layout(items: list[RenderItem], canvas: tuple[int, int], settings: RenderSettings) -> Layout:
    matrices = smooth_matrices([np.asarray(i.matrix, np.float64) for i in items], settings.smoothing, canvas)
    # The nudge left-multiplies the final matrix. The shared crop below is a translation and the
    # nudge is anchored on the face, so nudging here equals nudging after the crop, and the crop
    # then covers the nudged frames.
    matrices = [nudged(m, i.nudge, i.anchor) for m, i in zip(matrices, items)]
    pictures, sizes = _pictures(items, matrices)  # what is picture (no padding) decides what is covered
    if settings.crop != "shared":
        return Layout(matrices, canvas, None, _fill_notices(items, pictures, sizes, canvas, settings.fill))
    crop = shared_crop(pictures, sizes, canvas)
    share = 0.0 if crop is None else crop.width * crop.height / (canvas[0] * canvas[1])
    if share < SMALL_CROP:  # never a sliver: keep the whole frame and fill what a photo does not cover
        worst = min(range(len(items)), key=coverages(pictures, sizes, canvas).__getitem__)
        filled = "its blurred copy" if settings.fill == "blur" else settings.fill
        notices = [f"the area every photo covers is {share:.0%} of the frame, too little to crop to; "
                   f"{items[worst].name} limits it most. The whole frame is kept, filled with {filled} "
                   "where a photo does not reach (reject that photo to crop)"]
        return Layout(matrices, canvas, None, notices)
    notices = []
    return Layout([crop.shift @ m for m in matrices], (crop.width, crop.height),
                  (crop.x, crop.y, crop.width, crop.height), notices)


def _pictures(items: list[RenderItem], matrices: list[np.ndarray]) -> tuple[list[np.ndarray], list[tuple]]:
    """Per item, the matrix and size of its picture box (the photo without its flat borders) as a
    photo of its own: the matrix from the box's own pixels, the box's size."""
    out_m, out_s = [], []
    for item, m in zip(items, matrices):
        size = item.size or upright_size(item.path)
        if item.picture is None:
            out_m.append(m)
            out_s.append(size)
            continue
        x0, y0, x1, y1 = item.picture
        out_m.append(m @ np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]]))
        out_s.append((x1 - x0, y1 - y0))
    return out_m, out_s


def _fill_notices(items: list[RenderItem], matrices: list[np.ndarray], sizes: list[tuple[int, int]],
                  canvas: tuple[int, int], fill: str) -> list[str]:
    """Which photo limits the frame most: the one that covers the least of it."""
    covered = coverages(matrices, sizes, canvas)
    worst = min(range(len(items)), key=covered.__getitem__)
    if covered[worst] > FULL_COVER:
        return []
    short = sum(c <= FULL_COVER for c in covered)
    how = "its blurred copy" if fill == "blur" else f"{fill}"
    return [f"{short} of {len(items)} photos do not cover the whole frame (filled with {how}); "
            f"{items[worst].name} limits it most: it covers {covered[worst]:.0%} of the frame"]


def _captions(items: list[RenderItem], style: CaptionStyle | None) -> list[str]:
    if style is None:
        return [""] * len(items)
    first = next((i.taken_at for i in items if i.taken_at is not None), None)
    return [caption_text(style.format, index=k + 1, count=len(items), taken_at=i.taken_at, first=first,
                         name=i.name) for k, i in enumerate(items)]


def frame_file_name(index: int, item: RenderItem) -> str:
    """The aligned frame's file name: the photo's own stem (bytes kept, even when not UTF-8)."""
    return f"{index:05d}_{item.path.stem or Path(item.name).stem}.jpg"


class _Outputs:
    """Everything one render writes, staged under names no other run can take (``staging``) and
    renamed into place only when all of it is complete: the previous animation, sidecar and frames
    stay until then, and ``discard()`` removes every partial file of this render (on any failure,
    Ctrl+C included) and nothing else. Partial files left by a killed run are removed first."""

    def __init__(self, out: Path, frames_dir: Path | None):
        self.out, self.frames_dir = out, frames_dir
        self.staged: list[tuple[Staged, Path]] = []  # (partial file, final path)
        self.frames_staged: Staged | None = None
        self.writer = None

    @property
    def frames_partial(self) -> Path | None:
        return None if self.frames_staged is None else self.frames_staged.path

    def fault(self, exc: OSError, frames: bool = False) -> Exception:
        """An OSError while writing, as the error to raise."""
        folder, key, what = ((self.frames_dir, FRAMES_KEY, "write the aligned frames into") if frames else
                             (self.out.parent, OUTPUT_KEY, "write the animation into"))
        if isinstance(exc, WriteFailed) or out_of_space(exc) or exc.errno in WRITE_ERRNOS:
            kept = (f"the previous {printable(self.out.name)} is untouched" if self.out.exists()
                    else "no file was left behind")
            return RenderError(f"cannot write {printable(str(self.out))}: {reason(exc)}; {kept}")
        return folder_error(exc, what, folder, key)

    def open_folders(self) -> None:
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.fault(exc) from None
        remove_abandoned(self.out.parent)
        if self.frames_dir is not None:
            try:
                self.frames_dir.mkdir(parents=True, exist_ok=True)
                remove_abandoned(self.frames_dir)
                self.frames_staged = Staged.folder(self.frames_dir)
            except OSError as exc:
                raise self.fault(exc, frames=True) from None

    def save_frame(self, img: Image.Image | np.ndarray, name: str) -> None:
        try:
            (Image.fromarray(img) if isinstance(img, np.ndarray) else img).save(self.frames_partial / name, quality=92)
        except OSError as exc:
            raise self.fault(exc, frames=True) from None

    def stage(self, partial: Staged, final: Path) -> None:
        self.staged.append((partial, final))

    def stage_sidecars(self, data: dict) -> Path:
        sidecar = sidecar_path(self.out)
        try:
            self.stage(stage_json(sidecar, data), sidecar)
        except OSError as exc:
            raise self.fault(exc) from None
        if self.frames_partial is not None:
            try:
                target = self.frames_partial / FRAMES_SIDECAR
                stage_json(target, data).commit(target)
            except OSError as exc:
                raise self.fault(exc, frames=True) from None
        return sidecar

    def commit(self) -> None:
        """Rename everything into place: frames first, the animation and its sidecar last, under a
        lock on their folders, so two renders of one path never mix their files (the last wins)."""
        with folder_locked(*([self.frames_dir] if self.frames_dir is not None else []), self.out.parent):
            if self.frames_staged is not None:
                try:
                    for name in sorted(os.listdir(self.frames_partial)):
                        os.replace(self.frames_partial / name, self.frames_dir / name)
                    self.frames_staged.discard()  # now empty
                except OSError as exc:
                    raise self.fault(exc, frames=True) from None
                self.frames_staged = None
            while self.staged:
                partial, final = self.staged[0]
                try:
                    partial.commit(final)
                except OSError as exc:
                    raise self.fault(exc) from None
                self.staged.pop(0)

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.abort()
        for partial, _ in self.staged:
            partial.discard()
        self.staged = []
        if self.frames_staged is not None:
            self.frames_staged.discard()
            self.frames_staged = None


def render_workers() -> int:
    """Threads that decode and warp frames side by side (Pillow releases the GIL): half the cores,
    2 to 8. A close framing of a small face decodes the whole photo, so on a many-core GPU machine
    two threads left the render the slowest stage by far."""
    return max(2, min(8, usable_cores(unknown=2) // 2))


def encoder_threads(workers: int) -> int:
    """x264's threads beside ``workers`` composing threads: the cores they leave, at least two
    where there are two cores (x264's own choice, 1.5 per core, counts the cores as if it had
    them to itself). Small photos compose in a few milliseconds and leave one x264 thread the
    slowest step (tony's 40 photos: 2.6 s with one thread, 1.8 s with two, 2.0 s with three);
    12 MP photos framed close keep the composing threads busy either way."""
    cores = usable_cores(unknown=2)
    return max(min(2, cores), cores - workers)


class _Unreadable(Exception):
    """Photo ``index`` could not be read at render time (deleted meanwhile, damaged)."""

    def __init__(self, index: int, error: str):
        super().__init__(error)
        self.index, self.error = index, error


def write_animation(items: list[RenderItem], canvas: tuple[int, int], out: Path, settings: RenderSettings,
                    frames_dir: Path | None = None, progress: Callable[[int], None] = lambda n: None,
                    workers: int | None = None) -> RenderResult:
    """Write ``items`` (in date order) to ``out`` (.mp4, .gif or .webp), optionally every aligned
    photo as a JPEG into ``frames_dir``, and the sidecar(s). ``progress(n)``: photos done.

    A photo that cannot be read (deleted before or while the render reads it, damaged since) is
    left out with a notice naming it, and the render goes on without it (started again when the
    photo was found missing midway: what was written so far is discarded)."""
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise RenderError(f"output {out} must end in {', '.join(OUTPUT_SUFFIXES)}")
    left_out: dict[str, list[str]] = {}  # why -> the photos
    items = list(items)
    for item in list(items):
        why = _unreadable(item.path)
        if why is not None:
            items.remove(item)
            left_out.setdefault(why, []).append(printable(item.name))
    while True:
        if not items:
            raise RenderError(f"no frames to render: {'; '.join(_left_out_lines(left_out))}" if left_out
                              else "no frames to render")
        try:
            result = _write(items, canvas, out, settings, frames_dir, progress, workers)
        except _Unreadable as exc:
            item = items.pop(exc.index)
            left_out.setdefault(exc.error, []).append(printable(item.name))
            continue
        if left_out:
            result = replace(result, notices=[*_left_out_lines(left_out), *result.notices])
        return result


def _unreadable(path: Path) -> str | None:
    """Why the photo at ``path`` cannot be read now (before decoding it), or None."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return "the file is gone"
    except OSError as exc:  # "permission denied", …
        return reason(exc)
    return None


def _left_out_lines(left_out: dict[str, list[str]], named: int = 3) -> list[str]:
    """One line per reason, naming a few photos: a folder moved away is one line, not one per photo."""
    lines = []
    for why, names in left_out.items():
        if len(names) == 1:
            lines.append(f"{names[0]} left out of this render: {why}")
        else:
            shown = ", ".join(names[:named]) + (", …" if len(names) > named else "")
            lines.append(f"{len(names)} photos left out of this render: {why} ({shown})")
    return lines


def _write(items: list[RenderItem], canvas: tuple[int, int], out: Path, settings: RenderSettings,
           frames_dir: Path | None, progress: Callable[[int], None], workers: int | None) -> RenderResult:
    layout = plan_layout(items, canvas, settings)
    timing = plan_timing(len(items), settings.fps, settings.duration, settings.hold_first,
                         settings.hold_last, settings.crossfade or settings.morph)
    captions = _captions(items, settings.caption)
    key = render_key(items, layout, timing, settings, captions, out.suffix.lower())
    if frames_dir is None and key is not None:
        done = up_to_date(out, key, lambda: sidecar_head(layout, timing, settings, out),
                          lambda: sidecar_frames(items, layout, captions, None))
        if done is not None:
            progress(len(items))
            return RenderResult(out, len(items), _frames_in_file(timing, out), layout.size, done, sidecar_path(out),
                                layout.notices, unchanged=True)
    if out.suffix.lower() in (".mp4", ".webp"):
        find_ffmpeg_soon()  # beside the first frames composed
    morpher = None
    if settings.morph:
        from .morph import Morpher

        morpher = Morpher(captions, settings.caption)
    outputs = _Outputs(out, frames_dir)
    outputs.open_folders()

    def picture(k: int) -> tuple[Image.Image | np.ndarray, Image.Image | np.ndarray | None]:
        """The picture shown for photo ``k``, and for the morph the same without its caption (None
        otherwise): RGB arrays straight from the warp, Pillow images where a background or a
        caption is drawn."""
        item = items[k]
        # The decode goes into this worker's scratch buffer: the composed picture is new pixels.
        img = compose_array(decode_for(item.path, layout.matrices[k], settings.max_pixels, item.size, scratch=True),
                            layout.matrices[k], layout.size, settings.fill, item.picture,
                            gain=item.colour.apply if item.colour is not None else None)
        if item.mask is not None and item.background != "keep":
            from ..background import replace_background

            img = replace_background(Image.fromarray(img), item.mask, layout.matrices[k],
                                     item.size or upright_size(item.path), item.background, item.feather_px)
        plain = img
        if settings.caption is not None:
            img = Image.fromarray(img) if isinstance(img, np.ndarray) else img.copy()
            draw_caption(img, captions[k], settings.caption)
        return img, (plain if morpher is not None else None)  # the morph alone needs it

    n_workers = workers or render_workers()
    # An MP4 chooses its B-frames from its first photos, composed ahead and held till then
    # (``hold``); while it chooses and the encoder starts (20-30 ms), the workers go on composing
    # as many more, instead of idling with one done each.
    hold = (look_ahead_photos(layout.size) if out.suffix.lower() == ".mp4" and len(items) >= 3
            and timing.crossfade < BLENDS_THAT_PAY else 0)

    def pictures() -> Iterator[tuple[Image.Image, Image.Image]]:
        for k, shown, error in decode_ahead(list(range(len(items))), picture, n_workers, ahead=n_workers + hold):
            if error is not None:
                raise _Unreadable(k, error)
            if frames_dir is not None:
                outputs.save_frame(shown[0], frame_file_name(k + 1, items[k]))
            progress(k + 1)
            yield shown

    sidecar = None
    try:
        source = composed = pictures()
        try:
            ahead = list(islice(source, hold))  # (the B-frames' choice: ``hold`` above)
            b_frames = b_frames_pay([shown for shown, _ in ahead], timing.crossfade)
            source = _replay(ahead, composed)
            outputs.writer = writer = open_writer(out, layout.size, timing.fps, quality=settings.quality,
                                                  webp_quality=settings.webp_quality,
                                                  gif_max_width=settings.gif_max_width, preset=settings.preset,
                                                  threads=encoder_threads(n_workers), b_frames=b_frames,
                                                  in_betweens=timing.crossfade > 0)
            writer.start()  # registered first: whatever happens from here, discard() cleans up
            current, following, index = next(source), None, 0
            for step in timing.steps():
                if step.a != index:  # moved on to the next photo
                    current, following, index = following if following is not None else next(source), None, step.a
                if step.b is None:
                    writer.add(current[0], step.repeat)
                else:
                    if following is None:
                        following = next(source)
                    if morpher is not None:
                        writer.add(morpher.frame(index, current[1], following[1], step.alpha), step.repeat)
                    else:
                        writer.add(_blend(current[0], following[0], step.alpha), step.repeat)
            encoded = writer.finish()
            outputs.stage(encoded, out)
        except OSError as exc:
            raise outputs.fault(exc) from None
        finally:
            composed.close()  # an interrupted render leaves no decode thread behind
        outputs.writer = None
        if settings.sidecar:
            data = sidecar_data(items, layout, timing, settings, out, captions, frames_dir)
            written = os.stat(encoded.path)
            data.update(render_key=key, bytes=written.st_size, mtime_ns=written.st_mtime_ns)
            sidecar = outputs.stage_sidecars(data)
        outputs.commit()
    except BaseException:
        outputs.discard()
        raise
    return RenderResult(out, len(items), _frames_in_file(timing, out), layout.size, os.path.getsize(out), sidecar,
                        layout.notices)


def _replay(ahead: list, rest: Iterator) -> Iterator:
    """``ahead``, emptied as it goes (nothing held once shown), then ``rest``."""
    while ahead:
        yield ahead.pop(0)
    yield from rest


def _frames_in_file(timing: Timing, out: Path) -> int:
    """MP4: every frame at the constant rate; GIF and WebP: each distinct picture once (a repeat
    is one frame shown longer)."""
    return timing.frames if out.suffix.lower() == ".mp4" else timing.distinct


def render_key(items: list[RenderItem], layout: Layout, timing: Timing, settings: RenderSettings,
               captions: list[str], suffix: str) -> str | None:
    """A digest of everything that decides the file's bytes: each photo's content hash, output
    matrix, picture box, colour gains, background and mask, its caption; the layout, the timing,
    every render and encoder setting, and ``RENDER_REVISION``. None when a photo's content is not
    known by its hash (nothing can then be taken as unchanged)."""
    if any(not item.hash for item in items):
        return None
    digest = hashlib.sha256()

    def feed(value) -> None:
        digest.update(json.dumps(value, sort_keys=True, default=repr).encode("utf-8"))
        digest.update(b"\0")

    feed({"revision": RENDER_REVISION, "suffix": suffix, "size": list(layout.size), "crop": layout.crop,
          "timing": asdict(timing), "settings": asdict(settings)})
    for item, matrix, caption in zip(items, layout.matrices, captions):
        feed([item.hash, np.round(np.asarray(matrix, np.float64), 9).tolist(), item.picture,
              list(item.colour.gains) if item.colour is not None else None, item.background, item.feather_px, caption])
        if item.mask is not None and item.background != "keep":
            digest.update(hashlib.blake2b(np.ascontiguousarray(item.mask), digest_size=16).digest())
    return digest.hexdigest()


def up_to_date(out: Path, key: str, head: Callable[[], dict], frames: Callable[[], Iterator[dict]]) -> int | None:
    """The size of ``out`` when it already holds the render ``key`` describes: its sidecar records
    that key and the file's size and time, and the file has them. Then nothing is encoded again; the
    sidecar alone is written again when what it says otherwise (a verdict, a path) changed.
    None otherwise, or when anything cannot be read (the render then runs as usual).

    ``head`` and ``frames`` make the sidecar's fields (``sidecar_data``): its frames are compared one
    by one with the stored ones as they are made, so a library's check holds the stored sidecar and
    one frame, not two more copies of every frame (at 10,000 photos: 50 MB of peak memory)."""
    path = sidecar_path(out)
    try:
        with folder_locked(out.parent):  # never between another render's two renames
            stored = json.loads(path.read_text(encoding="utf-8"))
            st = os.stat(out)
            size, mtime = st.st_size, st.st_mtime_ns
            if (not isinstance(stored, dict) or stored.get("render_key") != key or stored.get("bytes") != size
                    or stored.get("mtime_ns") != mtime):
                return None
            now = {**head(), "render_key": key, "bytes": size, "mtime_ns": mtime}
            stored_frames = stored.pop("frames", None)
            if not (_as_stored(now) == stored and isinstance(stored_frames, list)
                    and _same_frames(stored_frames, frames())):
                del stored, stored_frames
                staged = stage_json(path, {**head(), "frames": list(frames()), "render_key": key, "bytes": size,
                                           "mtime_ns": mtime})
                try:
                    staged.commit(path)
                except OSError:
                    staged.discard()
                    raise
    except (OSError, ValueError):
        return None
    return size


def _as_stored(value):
    """``value`` as it reads back from its JSON (tuples as lists, and so on)."""
    return json.loads(json.dumps(value))


def _same_frames(stored: list, frames: Iterator[dict]) -> bool:
    count = 0
    for count, frame in enumerate(frames, 1):
        if count > len(stored) or _as_stored(frame) != stored[count - 1]:
            return False
    return count == len(stored)


def _blend(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray, alpha: float) -> np.ndarray:
    """``a`` faded into ``b`` by ``alpha`` (a crossfade step), as an RGB array."""
    import cv2

    return cv2.addWeighted(np.asarray(a), 1.0 - alpha, np.asarray(b), alpha, 0.0)


def sidecar_data(items: list[RenderItem], layout: Layout, timing: Timing, settings: RenderSettings, out: Path,
                 captions: list[str], frames_dir: Path | None) -> dict:
    return {**sidecar_head(layout, timing, settings, out),
            "frames": list(sidecar_frames(items, layout, captions, frames_dir))}


def sidecar_head(layout: Layout, timing: Timing, settings: RenderSettings, out: Path) -> dict:
    """The sidecar's fields but its frames."""
    cap = settings.caption
    return {
        "version": SIDECAR_VERSION,
        **path_fields(out, "output"),
        "size": list(layout.size),
        "crop": list(layout.crop) if layout.crop else None,
        "fps": timing.fps,
        "frames_total": timing.frames,
        "seconds": round(timing.seconds, 3),
        "settings": {"crop": settings.crop, "fill": settings.fill, "smoothing": settings.smoothing,
                     "match_colour": settings.match_colour,
                     "crossfade": settings.crossfade, "morph": settings.morph, "hold_first": settings.hold_first,
                     "hold_last": settings.hold_last, "duration": settings.duration, **settings.framing,
                     "caption": None if cap is None else {"format": cap.format, "position": cap.position,
                                                          "size": cap.size}},
    }


def sidecar_frames(items: list[RenderItem], layout: Layout, captions: list[str],
                   frames_dir: Path | None) -> Iterator[dict]:
    """The sidecar's frames, one at a time."""
    for k, item in enumerate(items):
        yield {
            "index": k + 1,
            **path_fields(item.path),
            "hash": item.hash,
            "date": item.taken_at.isoformat() if item.taken_at else None,
            "transform": [[float(v) for v in row] for row in layout.matrices[k]],
            "canvas": list(layout.size),
            **json_safe(item.info),
            "caption": printable(captions[k]) or None,
            **(path_fields(frame_file_name(k + 1, item), "file") if frames_dir is not None else {"file": None}),
        }
