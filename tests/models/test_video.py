"""Film in, colored film out: every frame, the same size and rate, the sound kept, color steady over time."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from models.colorize import ColorizeError, Colorizer
from models.networks import NetworkConfig, build_generator
from models.video import colorize_clip
from pipelines.lab import rgb_to_lab8
from sandbox.clips import Clip

CLIP = Clip(width=96, height=64, fps=12, scenes=2, frames_per_scene=12)


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    return Colorizer(build_generator(NetworkConfig(ngf=8, ndf=8, num_downs=6)), size=64)


def read_back(path: Path) -> tuple[list[np.ndarray], av.codec.Codec, list[str]]:
    """The frames (RGB), the video codec and the audio codecs of a written clip."""
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context.codec
        sounds = [stream.codec_context.name for stream in container.streams.audio]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return frames, codec, sounds


@pytest.mark.parametrize(("suffix", "has_sound"), [(".mp4", True), (".mov", True), (".webm", True), (".gif", False)])
def test_a_clip_comes_back_as_h264_mp4_with_every_frame_its_size_its_lightness_and_its_sound(
    tmp_path: Path, colorizer: Colorizer, suffix: str, has_sound: bool
) -> None:
    source = CLIP.write(tmp_path / f"reel{suffix}")

    report = colorize_clip(colorizer, source, tmp_path / "colored.mp4")

    frames, codec, sounds = read_back(tmp_path / "colored.mp4")
    assert codec.name == "h264"
    assert len(frames) == report.frames == CLIP.frames
    assert (report.width, report.height) == (CLIP.width, CLIP.height)
    assert {frame.shape for frame in frames} == {(CLIP.height, CLIP.width, 3)}
    assert sounds == (["aac"] if has_sound else []) and report.audio == has_sound
    original, _, _ = read_back(source)
    if suffix != ".gif":  # a GIF's 256-color palette moves lightness too much to compare closely
        lightness_in = np.stack([rgb_to_lab8(frame)[..., 0] for frame in original]).astype(int)
        lightness_out = np.stack([rgb_to_lab8(frame)[..., 0] for frame in frames]).astype(int)
        # H.264 at CRF 18 (visually lossless) still moves film grain by a level or two.
        assert np.abs(lightness_out - lightness_in).mean() < 3.0
    colorful = [float(rgb_to_lab8(frame)[..., 1:].astype(int).std()) for frame in frames]
    assert min(colorful) > 1.0, "frames came back gray"


def test_smoothing_steadies_the_color_and_starts_over_at_each_scene_cut(tmp_path: Path, colorizer: Colorizer) -> None:
    source = CLIP.write(tmp_path / "reel.mp4")

    raw = colorize_clip(colorizer, source, tmp_path / "raw.mp4", smoothing=0)
    smoothed = colorize_clip(colorizer, source, tmp_path / "smoothed.mp4", smoothing=0.8)

    assert smoothed.flicker < raw.flicker * 0.7, (smoothed.flicker, raw.flicker)
    assert smoothed.scene_cuts == CLIP.scenes - 1


def test_strength_scales_the_chroma_and_zero_gives_back_gray(tmp_path: Path, colorizer: Colorizer) -> None:
    source = CLIP.write(tmp_path / "reel.mp4")

    colorize_clip(colorizer, source, tmp_path / "gray.mp4", strength=0)

    frames, _, _ = read_back(tmp_path / "gray.mp4")
    chroma = np.stack([rgb_to_lab8(frame)[..., 1:] for frame in frames]).astype(int) - 128
    assert np.abs(chroma).mean() < 1.5
    with pytest.raises(ColorizeError, match="strength"):
        colorize_clip(colorizer, source, tmp_path / "garish.mp4", strength=2)


def test_a_file_that_is_not_film_gets_a_clear_error_and_leaves_nothing_behind(
    tmp_path: Path, colorizer: Colorizer
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    sound_only = tmp_path / "tone.m4a"
    with av.open(str(sound_only), "w", format="mp4") as output:
        Clip().write_tone(output, output.add_stream("aac", rate=48_000))

    with pytest.raises(ColorizeError, match=r"broken\.mp4: cannot read it as a video"):
        colorize_clip(colorizer, broken, tmp_path / "out.mp4")
    with pytest.raises(ColorizeError, match=r"tone\.m4a: has no video stream"):
        colorize_clip(colorizer, sound_only, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
