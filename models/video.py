"""Colorize film: a clip frame by frame, its color held steady over time, its sound kept.

Each frame is colorized like a photo (`models.colorize`): the network predicts chroma on a small copy, and
the frame's own full-resolution lightness is kept. Predicted one frame at a time, colors flicker: a wall
turns a little greener, then a little bluer, while nothing in the picture moved. So the prediction is
averaged over time (`ChromaSmoother`) where the lightness stayed put, taken fresh where something moved,
and started over at a scene cut, so one shot's colors never bleed into the next.

    colorflow colorize reel.mp4 -o reel-color.mp4 --model models:/colorizer@champion

Reads what FFmpeg reads (MP4, WebM, MOV, GIF, ...) through PyAV; writes H.264 MP4 (yuv420p, which every
player plays), with the sound re-encoded as AAC. `ClipReport.flicker` says how much color changed between
frames where lightness did not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from models.colorize import ColorizeError, Colorizer, with_chroma
from pipelines.lab import lab8_to_rgb, rgb_to_lab8
from pipelines.settings import MAX_CLIP_FRAMES, MAX_PIXELS

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".gif"})
DEFAULT_SMOOTHING = 0.7
LOG_EVERY_FRAMES = 250
STEADY_LEVELS = 2  # lightness changes below this many stored levels count as "did not change"

Progress = Callable[[int, int | None], None]  # frames done, frames in all (None when the file does not say)


@dataclass(frozen=True)
class ClipReport:
    """What was written, and how steady its color is (mean a/b change between frames where L did not move,
    in stored levels)."""

    frames: int
    width: int
    height: int
    fps: float
    audio: bool
    scene_cuts: int
    flicker: float


class ChromaSmoother:
    """Exponential smoothing of predicted chroma over a clip's frames, at the network's small scale.

    `keep` is the weight of the running average against the new prediction where a pixel's lightness
    stayed within `motion_levels` since the last frame; where it moved, the new prediction is taken as is
    (averaging there would leave a trail of the old color behind a moving object). A frame whose lightness
    differs from the last one's by more than `cut_levels` on average is a scene cut: the average restarts.
    """

    def __init__(self, keep: float = DEFAULT_SMOOTHING, motion_levels: float = 12.0, cut_levels: float = 30.0):
        if not 0 <= keep < 1:
            raise ValueError(f"smoothing {keep} is outside [0, 1)")
        self.keep, self.motion_levels, self.cut_levels = keep, motion_levels, cut_levels
        self.scene_cuts = 0
        self._lightness: np.ndarray | None = None
        self._chroma: np.ndarray | None = None

    def __call__(self, lightness: np.ndarray, chroma: np.ndarray) -> np.ndarray:
        """The smoothed chroma for a frame: `lightness` at the scale of `chroma` (h, w), `chroma` (h, w, 2)."""
        lightness = lightness.astype(np.float32)
        previous, self._lightness = self._lightness, lightness
        if previous is None or self._chroma is None or previous.shape != lightness.shape:
            self._chroma = chroma
            return chroma
        change = np.abs(lightness - previous)
        if float(change.mean()) > self.cut_levels:
            self.scene_cuts += 1
            self._chroma = chroma
            return chroma
        weight = np.where(change <= self.motion_levels, self.keep, 0.0).astype(np.float32)[..., None]
        self._chroma = weight * self._chroma + (1 - weight) * chroma
        return self._chroma


class FlickerMeter:
    """Mean absolute change of a and b between consecutive frames, over the pixels whose lightness changed
    by less than `STEADY_LEVELS`: color that moves where the picture did not."""

    def __init__(self) -> None:
        self._last: np.ndarray | None = None
        self._total, self._pairs = 0.0, 0

    def add(self, lab8: np.ndarray) -> None:
        last, self._last = self._last, lab8.astype(np.int16)
        if last is None or last.shape != self._last.shape:
            return
        steady = np.abs(self._last[..., 0] - last[..., 0]) < STEADY_LEVELS
        if steady.any():
            self._total += float(np.abs(self._last[..., 1:] - last[..., 1:])[steady].mean())
            self._pairs += 1

    @property
    def flicker(self) -> float:
        return round(self._total / self._pairs, 3) if self._pairs else 0.0


def colorize_clip(
    colorizer: Colorizer,
    source: Path,
    target: Path,
    strength: float = 1.0,
    smoothing: float = DEFAULT_SMOOTHING,
    progress: Progress | None = None,
) -> ClipReport:
    """Colorize `source` into `target` (H.264 MP4, same size and frame rate, audio kept as AAC).
    `smoothing` 0 colorizes each frame on its own. Refuses, before decoding, a clip whose frames are over
    `MAX_PIXELS` or that says it has over `MAX_CLIP_FRAMES` frames, and stops at that many if it did not say."""
    try:
        container = av.open(str(source))
    except (av.error.FFmpegError, OSError) as error:
        raise ColorizeError(f"{source.name}: cannot read it as a video ({error})") from error
    with container:
        if not container.streams.video:
            raise ColorizeError(f"{source.name}: has no video stream")
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        width, height = video.codec_context.width, video.codec_context.height
        if width * height > MAX_PIXELS:
            raise ColorizeError(f"{source.name}: {width}x{height} frames are over the {MAX_PIXELS:,} pixel limit")
        if video.frames > MAX_CLIP_FRAMES:
            raise ColorizeError(f"{source.name}: {video.frames:,} frames is over the {MAX_CLIP_FRAMES:,} frame limit")
        sound = container.streams.audio[0] if container.streams.audio else None
        rate = video.average_rate or video.guessed_rate or Fraction(25)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            return _transcode(colorizer, container, target, rate, sound, strength, smoothing, progress)
        except av.error.FFmpegError as error:
            target.unlink(missing_ok=True)
            raise ColorizeError(f"{source.name}: cannot decode it ({error})") from error


def _transcode(
    colorizer: Colorizer,
    container: av.container.InputContainer,
    target: Path,
    rate: Fraction,
    sound: av.audio.stream.AudioStream | None,
    strength: float,
    smoothing: float,
    progress: Progress | None,
) -> ClipReport:
    video = container.streams.video[0]
    total = video.frames or None
    smoother, meter = ChromaSmoother(smoothing), FlickerMeter()
    frames = 0
    with av.open(str(target), "w", format="mp4") as output:
        picture = output.add_stream("libx264", rate=rate)
        # yuv420p halves chroma in both directions, so H.264 wants even sides: an odd last row or column goes.
        picture.width, picture.height = video.codec_context.width // 2 * 2, video.codec_context.height // 2 * 2
        if (picture.width, picture.height) != (video.codec_context.width, video.codec_context.height):
            logger.info("%s: odd frame size; the last row or column is left out", target.name)
        picture.pix_fmt = "yuv420p"
        picture.options = {"crf": "18", "preset": "veryfast"}
        voice = output.add_stream("aac", rate=sound.rate or 48_000) if sound is not None else None
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=voice.rate) if voice else None
        for frame in _decoded(container, sound):
            if isinstance(frame, av.AudioFrame):
                for resampled in resampler.resample(frame):
                    output.mux(voice.encode(resampled))
                continue
            if frames == MAX_CLIP_FRAMES:
                raise ColorizeError(f"{target.name}: over the {MAX_CLIP_FRAMES:,} frame limit")
            rgb = frame.to_ndarray(format="rgb24")[: picture.height, : picture.width]
            lab8 = rgb_to_lab8(rgb)
            chroma = colorizer.chroma(lab8[..., 0])
            small_l = cv2.resize(lab8[..., 0], chroma.shape[1::-1], interpolation=cv2.INTER_AREA)
            colored = with_chroma(lab8, smoother(small_l, chroma), strength)
            meter.add(colored)
            encoded = av.VideoFrame.from_ndarray(lab8_to_rgb(colored), format="rgb24")
            encoded.pts, encoded.time_base = frames, 1 / rate
            output.mux(picture.encode(encoded))
            frames += 1
            if progress:
                progress(frames, total)
        output.mux(picture.encode())
        if voice is not None:
            output.mux(voice.encode())
    return ClipReport(
        frames, picture.width, picture.height, float(rate), voice is not None, smoother.scene_cuts, meter.flicker
    )


def _decoded(
    container: av.container.InputContainer, sound: av.audio.stream.AudioStream | None
) -> Iterator[av.frame.Frame]:
    """The video's frames and the sound's, in the order the file interleaves them."""
    streams = [container.streams.video[0], *([sound] if sound is not None else [])]
    for packet in container.demux(*streams):
        yield from packet.decode()


def colorize_clip_with_progress(
    colorizer: Colorizer, source: Path, target: Path, strength: float, smoothing: float
) -> ClipReport:
    """`colorize_clip` with a bar on a terminal, and a line every `LOG_EVERY_FRAMES` frames in a log."""
    with tqdm(desc=source.name, unit="frame", disable=None) as bar:

        def advance(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)
            if bar.disable and done % LOG_EVERY_FRAMES == 0:
                logger.info("%s: %d of %s frames colorized", source.name, done, total or "?")

        return colorize_clip(colorizer, source, target, strength, smoothing, advance)
