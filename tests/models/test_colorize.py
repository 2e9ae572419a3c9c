"""Colorizing photos of any size and kind with a (small, untrained) generator: the output keeps the input's
size and its full-resolution lightness; every common format and mode is read as a person sees it; bombs and
non-images get a clear error; the CLI's file handling."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.colorize import ColorizeError, Colorizer, colorize_files, expand_inputs, open_photo
from models.networks import NetworkConfig, build_generator
from pipelines.lab import rgb_to_lab8
from pipelines.settings import MAX_PIXELS
from sandbox.library import PhotoLibrary
from tests.corpus import BOMB_SIDE, png_bomb

PHOTO = PhotoLibrary().image(0).convert("RGB")


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    return Colorizer(build_generator(NetworkConfig(ngf=8, ndf=8, num_downs=6)), size=64)


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def test_a_large_photo_keeps_its_size_and_its_lightness(colorizer: Colorizer) -> None:
    original = open_photo(encoded(PHOTO.resize((3000, 2000)), "JPEG", quality=92))

    colored = colorizer.colorize(original)

    assert colored.size == (3000, 2000)
    lightness_in = rgb_to_lab8(np.asarray(original))[..., 0].astype(int)
    lightness_out = rgb_to_lab8(np.asarray(colored))[..., 0].astype(int)
    difference = np.abs(lightness_out - lightness_in)
    # Within the rounding of Lab -> 8-bit RGB -> Lab: an untrained generator's wild colors are pulled
    # into the sRGB gamut rather than clipped, which would change the lightness.
    assert difference.mean() < 0.5 and difference.max() <= 2


def test_a_grayscale_png_comes_back_in_color_at_its_size(colorizer: Colorizer) -> None:
    gray = open_photo(encoded(PHOTO.convert("L").resize((300, 200)), "PNG"))
    assert gray.mode == "RGB"

    colored = colorizer.colorize(gray)

    assert colored.size == (300, 200) and colored.mode == "RGB"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("rgba", encoded(PHOTO.convert("RGBA"), "PNG")),
        ("cmyk", encoded(PHOTO.convert("CMYK"), "JPEG")),
        ("sixteen_bit", encoded(Image.fromarray(np.asarray(PHOTO.convert("L"), np.uint16) * 257), "PNG")),
        ("webp", encoded(PHOTO, "WEBP")),
        ("tiff", encoded(PHOTO, "TIFF")),
    ],
)
def test_formats_and_modes_are_read_as_rgb(name: str, data: bytes, colorizer: Colorizer) -> None:
    image = open_photo(data)
    assert image.mode == "RGB" and image.size == PHOTO.size, name
    assert colorizer.colorize(image).size == PHOTO.size


def test_exif_orientation_is_honoured() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = open_photo(encoded(PHOTO.resize((120, 80)), "JPEG", exif=exif.tobytes()))
    assert turned.size == (80, 120)


def test_bombs_and_non_images_get_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ColorizeError, match="decompression bomb"):
        open_photo(png_bomb(BOMB_SIDE))
    with pytest.raises(ColorizeError, match=f"over the {MAX_PIXELS:,} pixel limit"):
        open_photo(png_bomb(12_000))  # under Pillow's own limit, over ours
    (tmp_path / "page.jpg").write_text("<html>login</html>")
    with pytest.raises(ColorizeError, match=r"page\.jpg: cannot read it as an image"):
        open_photo(tmp_path / "page.jpg")


def test_files_and_folders_are_colorized_and_bad_ones_reported(
    colorizer: Colorizer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    album = tmp_path / "album"
    (album / "nested").mkdir(parents=True)
    (album / "a.jpg").write_bytes(encoded(PHOTO, "JPEG"))
    (album / "nested" / "b.png").write_bytes(encoded(PHOTO.convert("L"), "PNG"))
    (album / "notes.txt").write_text("not a photo")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 cut")
    inputs = expand_inputs([album, tmp_path / "broken.jpg"])
    assert [path.name for path in inputs] == ["a.jpg", "b.png", "broken.jpg"]

    written = colorize_files(colorizer, inputs, tmp_path / "out", progress=False)

    assert sorted(path.name for path in written) == ["a.png", "b.png"]
    assert "broken.jpg: cannot read it as an image" in caplog.text
    with pytest.raises(ColorizeError, match="no such file"):
        expand_inputs([tmp_path / "missing"])
