"""Animation writers, all streaming: each takes one picture at a time and holds none of the past.

``start()`` creates a hidden partial file beside the output (``partial``: a ``staging.Staged``, under a
name no other run can take) and starts the encoder;
``add(img, repeat)`` shows ``img`` for ``repeat`` frames; ``finish()`` completes it and checks the writer's own verdict
(ffmpeg's exit status, every write and the close of our GIF file, then an fsync), raising
``WriteFailed`` on any failure; ``abort()`` stops the writer and removes the partial file. The
caller renames the partial file into place only once everything else is complete too (see
``animation``), so the previous file at the output path stays until then.

* MP4: H.264 through imageio-ffmpeg (libx264, CRF ``quality``, ``preset``, yuv420p, even sizes);
  repeats are real frames at the constant rate.
* GIF: scaled to ``max_width``, each frame with its own 256-colour palette by median cut, with
  Floyd-Steinberg dithering; a repeat becomes one frame with a longer delay. Measured on face
  photos (astronaut and samples, 480 px), mean error in the central quarter where the face is:
  median cut 2.6 levels, fast octree 3.3, a palette weighted towards the centre then mapped with
  ``quantize(palette=...)`` 3.3-3.6 (Pillow's mapping to a given palette is the weak step).
  Median cut costs more (0.1-0.5 s a frame here), which the small default width keeps in check.
  Written frame by frame with Pillow's GIF encoder (``Image.save(save_all=True)`` keeps every
  frame in memory until the end).
* WebP: animated WebP through imageio-ffmpeg (libwebp_anim); libwebp merges repeated frames into
  one longer frame.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from .staging import Staged, die_with_parent, forget_encoder, register_encoder

OUTPUT_SUFFIXES = (".mp4", ".gif", ".webp")


class WriteFailed(OSError):
    """The encoder could not complete the file (ffmpeg failed, a write or the close failed)."""


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _SignalsHeld:
    """Ctrl+C and SIGTERM held back for the few lines that start a process (main thread only; in a
    worker thread there is nothing to hold): interrupted inside ``subprocess.Popen``, a started
    encoder would be left running with no one to stop it, and write its file after we are gone.
    ``release()`` delivers what arrived meanwhile (raising ``KeyboardInterrupt``)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        self.caught: list[int] = []
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, lambda n, f: self.caught.append(n))
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def release(self) -> None:
        for signum in self.caught:
            handler = self.previous.get(signum)
            if callable(handler):
                handler(signum, None)
            elif handler != signal.SIG_IGN:
                raise KeyboardInterrupt


_lookup_lock = threading.Lock()
_lookup: threading.Thread | None = None


def find_ffmpeg_soon() -> None:
    """Look ffmpeg up on a thread of its own, once: imageio-ffmpeg checks its binary by running it
    (``ffmpeg -version``), which with its import took 25-45 ms that a render otherwise spent before
    its first frame went out, instead of beside the frames it composes first."""
    global _lookup
    with _lookup_lock:
        if _lookup is None:
            _lookup = threading.Thread(target=_ffmpeg_exe, name="find ffmpeg", daemon=True)
            _lookup.start()


def _ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()  # (kept by imageio-ffmpeg once found)


class _Ffmpeg:
    """ffmpeg (imageio-ffmpeg's binary) fed raw RGB frames on stdin. Started in its own session, so
    a Ctrl+C at the terminal reaches us, not ffmpeg: we decide what happens to the partial file. On
    Linux it dies with us (``die_with_parent``), even on ``kill -9``."""

    pix_fmt = "rgb24"  # of the frames sent on the pipe

    def __init__(self, out: Path, size: tuple[int, int], fps: float, codec: str, output_params: list[str],
                 macro_block_size: int = 1):
        self.out, self.partial = out, None
        self.size, self.fps, self.codec = size, fps, codec
        self.output_params, self.macro_block_size = output_params, macro_block_size
        self._proc: subprocess.Popen | None = None
        self._stderr = None

    def start(self) -> None:
        lookup = _lookup
        if lookup is not None:
            lookup.join()  # (started by ``find_ffmpeg_soon``: a second look would run ffmpeg again)
        size, fps, codec, output_params = self.size, self.fps, self.codec, self.output_params
        rate = str(Fraction(fps).limit_denominator())
        block = self.macro_block_size
        padded = [-(-v // block) * block for v in size]  # rounded up, as imageio-ffmpeg does
        scale = ["-vf", f"scale={padded[0]}:{padded[1]}"] if list(size) != padded else []
        exe = _ffmpeg_exe()
        with _SignalsHeld() as held:
            # Created by us first, so a folder we cannot write to says so as an OSError.
            self.partial = Staged.file(self.out)
            cmd = [exe, "-y", "-nostdin", "-loglevel", "error",
                   "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{size[0]}x{size[1]}", "-pix_fmt", self.pix_fmt,
                   "-r", rate, "-i", "-", "-an", "-vcodec", codec, "-pix_fmt", "yuv420p", *scale, *output_params,
                   str(self.partial.path)]
            try:
                self._stderr = tempfile.TemporaryFile()
                self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                              stderr=self._stderr, start_new_session=True,
                                              preexec_fn=die_with_parent())
                register_encoder(self._proc)
            except BaseException:  # ffmpeg missing: no partial file either
                self.partial.discard()
                raise
        held.release()  # a Ctrl+C that came meanwhile: the caller's abort() stops ffmpeg

    def _bytes(self, img: Image.Image | np.ndarray):
        """The frame as sent: an RGB array (the composed frame) as it is; a Pillow image copied out once."""
        if isinstance(img, np.ndarray):
            return memoryview(np.ascontiguousarray(img)).cast("B")
        return img.convert("RGB").tobytes()

    def add(self, img: Image.Image | np.ndarray, repeat: int = 1) -> None:
        data = self._bytes(img)
        try:
            for _ in range(repeat):
                self._proc.stdin.write(data)
        except (BrokenPipeError, ValueError, OSError) as exc:  # ffmpeg stopped: say why it did
            self._proc.wait()
            raise WriteFailed(getattr(exc, "errno", None), self._why()) from None

    def _why(self) -> str:
        self._stderr.seek(0)
        lines = [ln.strip() for ln in self._stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        code = self._proc.returncode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            what = f"ffmpeg was stopped by {name}" + (" (the file-size limit)" if name == "SIGXFSZ" else "")
        else:
            what = f"ffmpeg failed (exit status {code})"
        last = re.sub(r"^(\[[^\]]*\]\s*)+", "", lines[-1]) if lines else ""  # "[out#0/mp4 @ 0x...] "
        if "no space left on device" in last.lower():  # the reason first, in the words every other write uses
            return "no space left on device (ffmpeg could not finish the file)"
        return f"{what}: {last}" if last else what

    def finish(self) -> Path:
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        code = self._proc.wait()
        forget_encoder(self._proc)
        if code != 0:
            raise WriteFailed(None, self._why())
        fsync_file(self.partial.path)
        self._stderr.close()
        return self.partial

    def abort(self) -> None:
        try:
            if self._proc is not None:
                if self._proc.poll() is None:
                    self._proc.kill()
                self._proc.wait()
                forget_encoder(self._proc)
            if self._stderr is not None:
                self._stderr.close()
        finally:
            if self.partial is not None:
                self.partial.discard()


# x264 options added to a preset. ``veryfast`` (the default) skips the 8x8 inter sub-partitions
# (p8x8, b8x8): in a timelapse each frame is another photo, so inter prediction of small blocks
# seldom pays, and a crossfade is a global change that whole macroblocks (and weighted prediction)
# follow. Measured at CRF 20 on 1080x1080 frames of the three sample folders and the 12 MP bench
# photos, cuts and 3-frame crossfades (bench/bench_encoder.py): 0.71-0.85x the CPU time of x264's
# own veryfast, 0.98-1.00x its file size, SSIM within 0.0001. Other presets are as x264 has them.
PRESET_TUNING = {"veryfast": "partitions=i8x8,i4x4"}
# Where frames are made between the photos (render.morph, render.crossfade), the fastest presets'
# mode decision (subme 0-2, no trellis) blurs them in the file: faces_jerry with morph = 3, the
# in-betweens' sharpness over their photos' 0.80 in the MP4 at veryfast, 0.82 with subme=6 and 0.83
# with trellis as well, what preset "fast" gave when the morph landed (bench/bench_morph.py;
# crossfade 0.75 -> 0.78). The photos' own frames are coded as before.
IN_BETWEEN_TUNING = "subme=6:trellis=1"
FAST_PRESETS = ("ultrafast", "superfast", "veryfast")  # those whose subme and trellis are below that

# B-frames are chosen per render, from its first photos (``b_frames_pay``). Where each photo is
# another picture (another place, light and crop each time: news photos, a face over the decades,
# selfies taken anywhere), x264 predicts nothing from a neighbouring frame: with B-frames allowed it
# coded all but one or two frames of each sample folder as P-frames whose macroblocks were 99.2-99.7 %
# intra, after the motion search and the B-frame decision that found nothing. With ``bframes=0`` it
# codes them as the scene cuts they are: 0.65-0.92x the CPU time, the same size (1.00x) and SSIM,
# also with crossfades of 1 or 2 frames (bench/bench_encoder.py). Where consecutive photos look
# alike (the same spot each week) B-frames pay: without them 1.14x the CPU and 1.24x the size on
# bench_once's photos. So does a crossfade or morph of 3 frames or more (a blend between two
# pictures is what a B-frame predicts): 1.20x the size without them.
CUT_LEVELS = 24  # mean absolute difference of two frames, grey at 1/16 scale, in levels (0-255)
CUT_SHARE = 0.8  # of the pairs of consecutive photos looked at
LOOK_PHOTOS = 6  # photos looked at (5 pairs), fewer where frames are large (LOOK_BYTES)
LOOK_BYTES = 48 << 20
BLENDS_THAT_PAY = 3  # crossfade or morph frames between two photos from which B-frames pay


# Without B-frames (cuts), x264 looks ahead 3 frames instead of its preset's 10 (veryfast) to 60:
# its macroblock tree finds nothing to carry from one photo into the next, and every frame it holds
# back is encoded after the last one arrives, while the render waits. faces_jerry's 26 frames:
# the wait after the last frame 0.14-0.24 s -> 0.06-0.07 s, the file 1.00x (943,293 -> 943,292
# bytes); bench/bench_encoder.py compares size and SSIM. (The two fastest presets look ahead
# less than that already.) With B-frames, photos alike, a shorter look-ahead cost SSIM
# (-0.0004 at 5 frames on bench_once's photos): x264's own is kept.
CUT_LOOKAHEAD = "rc-lookahead=3"
NO_LOOKAHEAD_PRESETS = ("ultrafast", "superfast")


def x264_params(preset: str, b_frames: bool = True, in_betweens: bool = False) -> str:
    """The x264 options added to ``preset``: ``PRESET_TUNING``, no B-frames (and a short look
    ahead) where they do not pay, and ``IN_BETWEEN_TUNING`` where frames are made between the
    photos on a fast preset."""
    sharp = IN_BETWEEN_TUNING if in_betweens and preset in FAST_PRESETS else None
    cuts = None if b_frames else "bframes=0" + ("" if preset in NO_LOOKAHEAD_PRESETS else f":{CUT_LOOKAHEAD}")
    return ":".join(filter(None, [PRESET_TUNING.get(preset), sharp, cuts]))


def look_ahead_photos(size: tuple[int, int]) -> int:
    """How many composed photos the render holds back to choose the B-frames: ``LOOK_PHOTOS``,
    at least 3, as many as ``LOOK_BYTES`` hold."""
    return max(3, min(LOOK_PHOTOS, LOOK_BYTES // max(1, size[0] * size[1] * 3)))


def _grey_sixteenth(picture: Image.Image | np.ndarray) -> np.ndarray:
    import cv2

    rgb = np.asarray(picture.convert("RGB") if isinstance(picture, Image.Image) else picture)
    h, w = (max(1, side // 16) for side in rgb.shape[:2])
    # Cut to whole 16x16 blocks: OpenCV's area resize by a whole factor is 3x its general one.
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[:16 * h, :16 * w]), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)


def b_frames_pay(photos: list[Image.Image | np.ndarray], blend_frames: int) -> bool:
    """False where x264 should go without B-frames: ``photos`` (the first composed photos of the
    render, in order; at least three) are cuts, ``CUT_SHARE`` of their consecutive pairs differing by
    ``CUT_LEVELS`` or more, and fewer than ``BLENDS_THAT_PAY`` frames blend each pair."""
    if blend_frames >= BLENDS_THAT_PAY or len(photos) < 3:
        return True
    small = [_grey_sixteenth(p) for p in photos]
    cuts = sum(float(np.abs(a - b).mean()) >= CUT_LEVELS for a, b in zip(small, small[1:]))
    return cuts < CUT_SHARE * (len(small) - 1)


class Mp4Writer(_Ffmpeg):
    """``threads``: x264's threads (None: its own choice, 1.5 per core), sized by the caller
    together with the threads that compose the frames. ``preset`` is x264's, with
    ``PRESET_TUNING`` on top; ``b_frames=False``: none (see ``b_frames_pay``)."""

    def __init__(self, out: Path, size: tuple[int, int], fps: float, crf: int, preset: str = "veryfast",
                 threads: int | None = None, b_frames: bool = True, in_betweens: bool = False):
        tuning = x264_params(preset, b_frames, in_betweens)
        super().__init__(out, size, fps, "libx264",
                         ["-crf", str(crf), "-preset", preset, *(["-x264-params", tuning] if tuning else []),
                          *(["-threads", str(threads)] if threads else []), "-movflags", "+faststart"],
                         macro_block_size=2)
        if size[0] % 2 == 0 and size[1] % 2 == 0:
            self.pix_fmt = "yuv420p"

    def _bytes(self, img: Image.Image | np.ndarray):
        """Even sizes: the frame in x264's own yuv420p, by OpenCV. It matches ffmpeg's conversion
        within a level (Y) and two (chroma: 0.2 on average) and costs us 1.5-2.5 ms of CPU a 1080x1080
        frame, where ffmpeg's (with reading twice the bytes off the pipe) took 4.5-7 ms of its own."""
        if self.pix_fmt != "yuv420p":
            return super()._bytes(img)
        import cv2

        rgb = img if isinstance(img, np.ndarray) else np.asarray(img.convert("RGB"))
        return memoryview(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)).cast("B")


class WebpWriter(_Ffmpeg):
    def __init__(self, out: Path, size: tuple[int, int], fps: float, quality: int):
        super().__init__(out, size, fps, "libwebp_anim",
                         ["-loop", "0", "-lossless", "0", "-quality", str(quality)])


def gif_frame(img: Image.Image | np.ndarray, max_width: int) -> Image.Image:
    """Scaled down to ``max_width``; 256 colours chosen for this frame alone (median cut)."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    if img.width > max_width:
        img = img.resize((max_width, max(1, round(img.height * max_width / img.width))), Image.Resampling.LANCZOS)
    return img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)


class GifWriter:
    def __init__(self, out: Path, fps: float, max_width: int):
        self.out, self.partial = out, None
        self.fps, self.max_width = fps, max_width
        self._fh = None
        self._shown = 0  # frames shown so far, for delays that do not drift
        self._first = True
        self.size: tuple[int, int] | None = None

    def start(self) -> None:
        self.partial = Staged.file(self.out)
        try:
            self._fh = open(self.partial.path, "wb")
        except BaseException:
            self.partial.discard()
            raise

    def add(self, img: Image.Image | np.ndarray, repeat: int = 1) -> None:
        if self.partial.discarded:  # staging.stop_all(): the app is going
            raise WriteFailed(None, "the render was stopped")
        from PIL import GifImagePlugin

        frame = gif_frame(img, self.max_width)
        start, self._shown = self._shown, self._shown + repeat
        delay_cs = max(2, round(self._shown * 100 / self.fps) - round(start * 100 / self.fps))
        if self._first:
            header, _ = GifImagePlugin.getheader(frame, info={"loop": 0, "duration": delay_cs * 10})
            self._fh.write(b"".join(header))
            self.size = frame.size
        for chunk in GifImagePlugin.getdata(frame, (0, 0), duration=delay_cs * 10,
                                            include_color_table=not self._first):
            self._fh.write(chunk)
        self._first = False

    def finish(self) -> Path:
        self._fh.write(b";")
        self._fh.flush()  # a full disk shows here at the latest (or on close)
        os.fsync(self._fh.fileno())
        self._fh.close()
        return self.partial

    def abort(self) -> None:
        try:
            if self._fh is not None:
                self._fh.close()
        except OSError:  # the buffered rest cannot be written either: it is removed anyway
            pass
        finally:
            if self.partial is not None:
                self.partial.discard()


def open_writer(out: Path, size: tuple[int, int], fps: float, *, quality: int, webp_quality: int,
                gif_max_width: int, preset: str = "veryfast", threads: int | None = None, b_frames: bool = True,
                in_betweens: bool = False):
    suffix = out.suffix.lower()
    if suffix == ".mp4":
        return Mp4Writer(out, size, fps, quality, preset, threads, b_frames, in_betweens)
    if suffix == ".webp":
        return WebpWriter(out, size, fps, webp_quality)
    if suffix == ".gif":
        return GifWriter(out, fps, gif_max_width)
    raise ValueError(f"output {out} must end in {', '.join(OUTPUT_SUFFIXES)}")
