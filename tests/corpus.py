"""A corpus of tricky files for the quality stage, made by code (deterministic, nothing downloaded), and the
outcome a person building a colorization dataset would expect for each.

    corpus = tricky_corpus(tmp_path)
    for name, (path, expected) in corpus.items():
        ...  # expected is "accept" or "reject:<keyword>"

A reject's keyword is a word that one of the file's rejection reasons must contain (case-insensitive), so
a test can check that the reason names the real problem; a file may have further reasons (an all-black
image is also gray). Files come in arrival order: the original photo comes before its exact duplicate (the
same pixels in other bytes, since identical bytes are one object in the content-addressed raw zone) and its
near duplicate (smaller, recompressed), so the original is the one to keep.

Color images are real photographs from the sandbox library, each accepted file a different one, so that no
two accepted files are near duplicates of each other by accident.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from pipelines.lab import lab8_to_npy
from sandbox.kaggle import to_opencv_lab
from sandbox.library import PhotoLibrary

ACCEPT = "accept"
REJECT_PREFIX = "reject:"
BOMB_SIDE = 30_000
EXIF_ORIENTATION = 0x0112
# Library photo numbers (number = variant * 9 + base: 0 astronaut, 1 cat, 2 coffee, 3 rocket, 4 motorcycle,
# 6 temple, 7 flower, 8 portrait; 5, the dark Hubble field, is left out as too marginal a color photo).
PHOTOS = {
    "photo": 0,
    "cmyk": 1,
    "sixteen_bit": 2,
    "exif_rotated": 25,
    "rgba": 4,
    "animated": 6,
    "palette": 7,
    "webp": 8,
    "png_named_jpg": 10,
    "npy_lab": 15,
    "grayscale": 11,
    "gray_as_rgb": 12,
    "sepia": 16,
    "tiny": 13,
    "strip": 17,
}
ANIMATION_FRAMES = (6, 24, 42)  # one temple, three crops: a slideshow GIF


def reject(keyword: str) -> str:
    return f"{REJECT_PREFIX}{keyword}"


def tricky_corpus(folder: Path) -> dict[str, tuple[Path, str]]:
    """Write the corpus into `folder` and return name -> (path, expected outcome), in arrival order."""
    folder.mkdir(parents=True, exist_ok=True)
    library = PhotoLibrary()

    def photo(name: str) -> Image.Image:
        return library.image(PHOTOS[name])

    original_jpeg = jpeg(photo("photo"))
    gray = photo("grayscale").convert("L")
    files: dict[str, tuple[str, bytes, str]] = {
        "photo": ("photo.jpg", original_jpeg, ACCEPT),
        "zero_bytes": ("empty.jpg", b"", reject("empty")),
        "truncated_jpeg": ("truncated.jpg", original_jpeg[: len(original_jpeg) * 6 // 10], reject("truncated")),
        "html_as_jpg": ("login.jpg", LOGIN_PAGE, reject("HTML")),
        "random_bytes": ("noise.jpg", np.random.default_rng(5).bytes(8192), reject("not an image")),
        "cmyk_jpeg": ("cmyk.jpg", jpeg(photo("cmyk").convert("CMYK")), ACCEPT),
        "sixteen_bit_png": ("sixteen_bit.png", png_rgb48(photo("sixteen_bit")), ACCEPT),
        "palette_png_transparent": ("palette.png", palette_with_transparency(photo("palette")), ACCEPT),
        "rgba_png": ("rgba.png", encode(faded_edges(photo("rgba")), "PNG"), ACCEPT),
        "animated_gif": ("animated.gif", animated_gif([library.image(n) for n in ANIMATION_FRAMES]), ACCEPT),
        "webp": ("photo.webp", encode(photo("webp"), "WEBP", quality=85), ACCEPT),
        "exif_rotated_jpeg": ("rotated.jpg", exif_rotated_jpeg(photo("exif_rotated")), ACCEPT),
        "png_named_jpg": ("png_inside.jpg", encode(photo("png_named_jpg"), "PNG"), ACCEPT),
        "npy_lab_sample": ("sample.npy", lab8_to_npy(to_opencv_lab(photo("npy_lab"))), ACCEPT),
        "grayscale": ("grayscale.jpg", jpeg(gray), reject("grayscale")),
        "gray_as_rgb": ("gray_rgb.jpg", jpeg(photo("gray_as_rgb").convert("L").convert("RGB")), reject("grayscale")),
        "sepia": ("sepia.jpg", jpeg(sepia(photo("sepia"))), reject("sepia")),
        "all_black": ("black.jpg", jpeg(Image.new("RGB", (640, 480), "black")), reject("dark")),
        "all_white": ("white.jpg", jpeg(Image.new("RGB", (640, 480), "white")), reject("bright")),
        "tiny_8x8": ("tiny.png", encode(photo("tiny").resize((8, 8), Image.Resampling.BOX), "PNG"), reject("small")),
        "strip_4000x40": ("strip.jpg", jpeg(photo("strip").resize((4000, 40))), reject("aspect")),
        "png_bomb": ("bomb.png", png_bomb(BOMB_SIDE), reject("decompression bomb")),
        "exact_duplicate": ("photo_copy.jpg", with_jpeg_comment(original_jpeg), reject("exact duplicate")),
        "near_duplicate": ("photo_smaller.jpg", near_duplicate(photo("photo")), reject("near duplicate")),
    }
    corpus = {}
    for name, (filename, data, expected) in files.items():
        path = folder / filename
        path.write_bytes(data)
        corpus[name] = (path, expected)
    return corpus


LOGIN_PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
<body><form action="/login" method="post"><input name="user"><input name="password" type="password">
<button>Sign in to see this photo</button></form></body></html>
"""


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def jpeg(image: Image.Image, quality: int = 88) -> bytes:
    return encode(image, "JPEG", quality=quality)


def with_jpeg_comment(data: bytes, comment: bytes = b"Saved from a photo aggregator") -> bytes:
    """The same JPEG, pixel for pixel, with a comment segment (COM) after the start marker: a copy another
    site re-served. Its bytes, and so its SHA-256, differ; the raw zone keeps it as a separate image."""
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[2:]


def near_duplicate(image: Image.Image) -> bytes:
    """What a re-upload looks like: scaled to three quarters and recompressed harder."""
    smaller = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS)
    return jpeg(smaller, quality=70)


def exif_rotated_jpeg(image: Image.Image) -> bytes:
    """Pixels stored a quarter turn counterclockwise, as a camera held upright writes them, with EXIF
    orientation 6 telling viewers to turn them clockwise: seen, the photo is `image` again."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=88, exif=exif.tobytes())


def faded_edges(image: Image.Image) -> Image.Image:
    """RGBA: opaque in the middle, fading to fully transparent at the left and right edges."""
    ramp = np.minimum(np.arange(image.width), np.arange(image.width)[::-1]) * 4.0
    alpha = np.broadcast_to(np.clip(ramp, 0, 255).astype(np.uint8), (image.height, image.width))
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.ascontiguousarray(alpha)))
    return rgba


def palette_with_transparency(image: Image.Image) -> bytes:
    """A 255-color palette image with a transparent frame: palette index 255 is marked transparent (tRNS)."""
    paletted = image.quantize(colors=255)
    frame = max(4, image.width // 12)
    ImageDraw.Draw(paletted).rectangle((0, 0, image.width - 1, image.height - 1), outline=255, width=frame)
    return encode(paletted, "PNG", transparency=255)


def animated_gif(frames: list[Image.Image]) -> bytes:
    size = frames[0].size
    fitted = [ImageOps.fit(frame, size) for frame in frames]
    return encode(fitted[0], "GIF", save_all=True, append_images=fitted[1:], duration=500, loop=0)


def sepia(image: Image.Image) -> Image.Image:
    """A sepia print: the photo's gray tones mapped onto one brown ink, from dark umber to cream."""
    return ImageOps.colorize(image.convert("L"), black=(20, 10, 0), mid=(160, 110, 60), white=(255, 245, 225))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png(width: int, height: int, bit_depth: int, color_type: int, compressed_rows: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", compressed_rows)
        + png_chunk(b"IEND", b"")
    )


def png_rgb48(image: Image.Image) -> bytes:
    """16 bits per channel RGB, written by hand (Pillow writes 16-bit PNGs only in grayscale). The low byte
    carries a fine ramp, so the file really uses its 16 bits."""
    high = np.asarray(image.convert("RGB"), dtype=np.uint16) << 8
    levels = high | (np.arange(image.width, dtype=np.uint16) % 256)[None, :, None]
    rows = levels.astype(">u2").reshape(image.height, image.width * 3)
    raw = np.hstack([np.zeros((image.height, 1), np.uint8), rows.view(np.uint8)])  # filter byte 0 per row
    return png(image.width, image.height, 16, 2, zlib.compress(raw.tobytes(), 6))


def png_bomb(side: int) -> bytes:
    """A side x side 1-bit black PNG: a few hundred KB that claims side² pixels (900 million at 30000).

    Written by hand, row by row, because Pillow would first build the whole image in memory."""
    row = bytes(1 + (side + 7) // 8)  # filter byte and the packed bits, all zero
    compressor = zlib.compressobj(9)
    block = row * 1000
    parts = [compressor.compress(block) for _ in range(side // 1000)]
    parts += [compressor.compress(row * (side % 1000)), compressor.flush()]
    return png(side, side, 1, 0, b"".join(parts))


def color_photo(seed: int, size: tuple[int, int] = (160, 120), image_format: str = "JPEG") -> bytes:
    """A photo-like color image: a random grid of colors blended smoothly, different for every seed."""
    grid = np.random.default_rng(seed).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grid).resize(size, Image.Resampling.BICUBIC).save(buffer, format=image_format)
    return buffer.getvalue()
