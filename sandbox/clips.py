"""Short film clips made from the photo library, for the video colorizer's tests and benchmark.

Each scene is one library photo, panned slowly across, with film grain (a little noise in every frame, as
scanned film has) so that a colorizer that looks at each frame alone sees each one a little differently.
Scenes follow each other with hard cuts, and a sine tone plays under them. Written with PyAV in the
containers and codecs people upload: MP4 (H.264, AAC), MOV (H.264, AAC), WebM (VP9, Opus), GIF (no sound).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from sandbox.library import PhotoLibrary

CODECS = {  # container suffix: (video codec, pixel format, audio codec or None)
    ".mp4": ("libx264", "yuv420p", "aac"),
    ".mov": ("libx264", "yuv420p", "aac"),
    ".webm": ("libvpx-vp9", "yuv420p", "libopus"),
    ".gif": ("gif", "rgb8", None),
}
AUDIO_RATE = 48_000
TONE_HZ = 440.0
GRAIN_LEVELS = 1.5  # standard deviation of the grain, in 8-bit levels


@dataclass(frozen=True)
class Clip:
    """`scenes` library photos, `frames_per_scene` frames each, `width` x `height` at `fps`."""

    width: int = 96
    height: int = 64
    fps: int = 12
    scenes: int = 2
    frames_per_scene: int = 12
    seed: int = 0

    @property
    def frames(self) -> int:
        return self.scenes * self.frames_per_scene

    def pictures(self, library: PhotoLibrary) -> list[np.ndarray]:
        """The clip's frames as RGB arrays: each scene's photo a little larger than the frame, panned one
        pixel a frame, with grain."""
        rng = np.random.default_rng(self.seed)
        pictures = []
        for scene in range(self.scenes):
            margin = self.frames_per_scene
            photo = library.image(self.seed + scene).convert("RGB")
            wide = np.asarray(photo.resize((self.width + margin, self.height), Image.Resampling.LANCZOS))
            for step in range(self.frames_per_scene):
                grain = rng.normal(0, GRAIN_LEVELS, (self.height, self.width, 1))
                frame = wide[:, step : step + self.width].astype(np.float32) + grain
                pictures.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
        return pictures

    def write(self, path: Path, library: PhotoLibrary | None = None) -> Path:
        """The clip in the container `path`'s suffix names, with a tone under it where the format has sound."""
        video_codec, pixel_format, audio_codec = CODECS[path.suffix.lower()]
        with av.open(str(path), "w") as output:
            picture = output.add_stream(video_codec, rate=self.fps)
            picture.width, picture.height, picture.pix_fmt = self.width, self.height, pixel_format
            voice = output.add_stream(audio_codec, rate=AUDIO_RATE) if audio_codec else None
            for index, rgb in enumerate(self.pictures(library or PhotoLibrary())):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts, frame.time_base = index, Fraction(1, self.fps)
                output.mux(picture.encode(frame))
            output.mux(picture.encode())
            if voice is not None:
                self.write_tone(output, voice)
        return path

    def write_tone(self, output: av.container.OutputContainer, voice: av.audio.stream.AudioStream) -> None:
        """The clip's length of a sine tone, encoded into `voice`."""
        samples = AUDIO_RATE * self.frames // self.fps
        tone = (0.2 * np.sin(2 * np.pi * TONE_HZ * np.arange(samples) / AUDIO_RATE)).astype(np.float32)
        chunk = voice.codec_context.frame_size or 1024
        for start in range(0, samples, chunk):
            piece = tone[start : start + chunk]
            frame = av.AudioFrame.from_ndarray(np.stack([piece, piece]), format="fltp", layout="stereo")
            frame.rate, frame.pts, frame.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
            output.mux(voice.encode(frame))
        output.mux(voice.encode())
