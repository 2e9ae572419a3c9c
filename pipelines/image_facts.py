"""Facts about one raw object's bytes, for the quality stage to judge: does it fully decode, what is it, how
large, how colorful, is it gray or sepia, how bright, and its perceptual hash.

Nothing here decides what is accepted; the quality stage turns a batch of facts into verdicts with its
expectation suites. Two promises shape the code:

- Every input yields an `ImageFacts`, however hostile: a zero-byte file, a login page saved as `.jpg`, a
  truncated download or a 30000x30000 PNG bomb becomes `decodes=False` with a reason a person can read,
  never an exception that fails the whole batch.
- Extraction keeps up with ingestion (at least 100 640x480 JPEGs a second on one core; `bench/quality.py`).
  The header is read first and absurd sizes are refused before any pixel is decoded; every image is then
  decoded in full (so truncation is caught here, not in training), JPEGs at a reduced DCT scale
  (`Image.draft` still reads every block); color statistics come from a small copy, plenty for means and
  spreads.

Geometry is reported as a person sees the image: an EXIF orientation of 5 to 8 swaps width and height.
Kaggle samples arrive as `.npy` arrays in Colorflow's 8-bit Lab encoding (`pipelines.lab`) and are read as Lab directly.

    facts = extract_facts(path.read_bytes())
    if not facts.decodes:
        print(facts.decode_error)  # "truncated JPEG", "not an image (looks like HTML)", ...
"""

from __future__ import annotations

import io
import logging
import math
import re
import string
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from skimage.color import lab2rgb, rgb2lab

from pipelines.lab import NPY_MAGIC, decode_lab8, lab8_from_npy
from pipelines.settings import MAX_PIXELS

logger = logging.getLogger(__name__)

# Photo formats the lake takes (the raw zone's; JPEG's opener also returns MPO, the multi-picture JPEG).
# Others Pillow knows are refused unread: some are rarely fuzzed (PCX, SGI...), and EPS would hand hostile
# bytes to Ghostscript.
DECODED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")
NPY_LAB_FORMAT = "NPY-LAB"
EXIF_ORIENTATION = 0x0112
# Orientations that turn the stored image by a quarter: a viewer shows it with width and height swapped.
QUARTER_TURN_ORIENTATIONS = frozenset({5, 6, 7, 8})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Bits per channel of Pillow modes whose depth the mode fixes; PNG says its own depth in the header.
MODE_BIT_DEPTHS = {"1": 1, "I": 32, "F": 32} | dict.fromkeys(SIXTEEN_BIT_MODES, 16)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_BIT_DEPTH_OFFSET = 24  # signature (8) + IHDR length and type (8) + width and height (8)
# A chroma (CIE Lab a*b* distance from gray) below this is JPEG noise or a faint cast, not a color: a
# just-noticeable difference is about 2.3. Such pixels take no part in the hue spread.
COLORED_CHROMA = 5.0
# Grayscale: on average no visible chroma, and (for photos that are gray save for a tiny colored spot,
# which still teach a colorizer nothing) hardly any pixel with a real color.
GRAY_MEAN_CHROMA = 2.5
GRAY_COLORED_FRACTION = 0.02
# Sepia (and other toned prints, such as cyanotypes): visible chroma, one ink, and a color that follows from
# lightness alone. No single figure tells them from real photos: a ginger cat on a brown rug spreads its hue
# over as few degrees as a sepia print, and a rocket against a blue dusk sky is as tone-bound as a cyanotype.
# So a toned image must pass all three tests. Calibrated on the sandbox library's 360 real photos and on
# sepia, toned and cyanotype versions of 120 of them, all as JPEG at quality 88 and 60 (160-pixel analysis):
# toned images spread at most 11.5 degrees, had at most 0.09% of pixels off their hue and a residual of at
# most 4.4; every photo failed at least one test by a wide margin (the rockets at dusk: 1.5% or more of
# off-hue pixels; the single-hue cats and coffees: a residual of 7.0 or more).
SEPIA_HUE_SPREAD_DEGREES = 20.0
SEPIA_OFF_HUE_FRACTION = 0.005
SEPIA_CHROMA_RESIDUAL = 5.2
OFF_HUE_CHROMA = 8.0  # off-hue pixels must be clearly colored: JPEG noise at a toned print's edges is not
OFF_HUE_DEGREES = 45.0
TONE_BIN_LIGHTNESS = 2.0  # width, in L units, of the lightness bins whose mean color a toned print follows
REASON_LENGTH = 120


@dataclass(frozen=True)
class ImageFacts:
    """What one raw object is, measured, not judged. Everything but `decodes`, `decode_error` and
    `byte_size` is None when the object does not decode.

    Colors are measured after alpha is composited on white and after 16-bit, palette and CMYK images are
    brought to 8-bit RGB, i.e. on what a person would see. `aspect` is long side over short side (1.0 for a
    square). `colorfulness` is Hasler and Süsstrunk's metric on RGB 0-255 (0 for gray, about 15 slightly
    colorful, 60 and above very colorful). `mean_chroma` and the brightness figures are CIE Lab (D65):
    chroma sqrt(a² + b²), lightness L 0-100. `hue_spread` is the circular standard deviation, in degrees and
    weighted by chroma, of the hue of the pixels with visible color (0.0 when none has any).
    `off_hue_fraction` is the fraction of pixels clearly colored (chroma above 8) but more than 45 degrees
    off the image's dominant hue: a second color, which a toned print cannot have.
    `chroma_residual` is the root mean square a*b* distance of each pixel from the mean color of the pixels as
    light as it: how much color varies beyond what lightness predicts (below 5 in toned prints, whose color
    is a function of tone; 7 and above in real photos of a single hue, such as a ginger cat).
    """

    decodes: bool
    decode_error: str | None
    byte_size: int
    format: str | None = None
    mode: str | None = None
    width: int | None = None
    height: int | None = None
    aspect: float | None = None
    exif_orientation: int | None = None
    frames: int | None = None
    bit_depth: int | None = None
    has_alpha: bool | None = None
    colorfulness: float | None = None
    mean_chroma: float | None = None
    hue_spread: float | None = None
    off_hue_fraction: float | None = None
    chroma_residual: float | None = None
    is_grayscale: bool | None = None
    is_sepia: bool | None = None
    brightness_mean: float | None = None
    brightness_std: float | None = None
    phash: str | None = None


def extract_facts(data: bytes, *, max_pixels: int = MAX_PIXELS, analysis_side: int = 160) -> ImageFacts:
    """The facts of one raw object. Never raises: whatever goes wrong is reported in `decode_error`.

    `max_pixels` bounds the width times height an image may declare before it is decoded (its decoded
    copy would need about 3 bytes a pixel). `analysis_side` is the long side of the copy that color
    statistics and the perceptual hash are computed on.
    """
    if not data:
        return _undecodable(data, "empty file")
    try:
        if data.startswith(NPY_MAGIC):
            return _lab_sample_facts(data, max_pixels, analysis_side)
        return _picture_facts(data, max_pixels, analysis_side)
    except Exception as error:  # the promise: a hostile file is a rejected row, never a failed batch
        logger.debug("fact extraction failed", exc_info=True)
        return _undecodable(data, f"undecodable: {type(error).__name__}: {error}")


def _picture_facts(data: bytes, max_pixels: int, analysis_side: int) -> ImageFacts:
    try:
        image = Image.open(io.BytesIO(data), formats=DECODED_FORMATS)
    except UnidentifiedImageError:
        return _undecodable(data, _not_an_image(data))
    except Image.DecompressionBombError as error:  # Pillow's own limit, checked from the header
        return _undecodable(data, _bomb_reason(error))
    with image:
        image_format = image.format or "image"
        width, height = image.size
        if width * height > max_pixels:
            return _undecodable(data, f"decompression bomb: {width * height} pixels")
        try:
            mode = image.mode
            frames = getattr(image, "n_frames", 1)  # seeks through GIF/WebP/TIFF frames, then back to the first
            orientation = _exif_orientation(image)
            bit_depth = _bit_depth(image, data)
            has_alpha = mode in ALPHA_MODES or "transparency" in image.info
            # JPEG only (a no-op elsewhere): decodes every DCT block, so truncation is still caught, but at
            # 1/2, 1/4 or 1/8 scale, the smallest that still covers the analysis copy's size.
            image.draft("RGB", _analysis_size(width, height, analysis_side))
            image.load()
            analysis = as_rgb(image)
            analysis.thumbnail((analysis_side, analysis_side), Image.Resampling.BILINEAR)
            if orientation not in (None, 1):
                analysis = ImageOps.exif_transpose(analysis)
        except Exception as error:
            return _undecodable(data, _decode_failure(error, image_format))
    if orientation in QUARTER_TURN_ORIENTATIONS:
        width, height = height, width
    rgb = np.asarray(analysis)
    return ImageFacts(
        decodes=True,
        decode_error=None,
        byte_size=len(data),
        format=image_format,
        mode=mode,
        width=width,
        height=height,
        aspect=round(max(width, height) / max(1, min(width, height)), 4),
        exif_orientation=orientation,
        frames=frames,
        bit_depth=bit_depth,
        has_alpha=has_alpha,
        colorfulness=colorfulness(rgb),
        phash=str(imagehash.phash(analysis)),
        **_lab_statistics(rgb2lab(rgb.astype(np.float32) / np.float32(255.0))),  # float32: half the time
    )


def _lab_sample_facts(data: bytes, max_pixels: int, analysis_side: int) -> ImageFacts:
    """A Kaggle sample: an 8-bit Lab array (`pipelines.lab`), read as Lab directly."""
    try:
        array = lab8_from_npy(data)
    except ValueError as error:
        return _undecodable(data, str(error))
    height, width = array.shape[:2]
    if width * height > max_pixels:
        return _undecodable(data, f"decompression bomb: {width * height} pixels")
    step = max(1, math.ceil(max(width, height) / analysis_side))
    lab = decode_lab8(array[::step, ::step]).astype(np.float64)
    rgb = np.clip(np.rint(lab2rgb(lab) * 255.0), 0, 255).astype(np.uint8)
    return ImageFacts(
        decodes=True,
        decode_error=None,
        byte_size=len(data),
        format=NPY_LAB_FORMAT,
        mode="LAB",
        width=width,
        height=height,
        aspect=round(max(width, height) / min(width, height), 4),
        exif_orientation=None,
        frames=1,
        bit_depth=8,
        has_alpha=False,
        colorfulness=colorfulness(rgb),
        phash=str(imagehash.phash(Image.fromarray(rgb))),
        **_lab_statistics(lab),
    )


def _analysis_size(width: int, height: int, analysis_side: int) -> tuple[int, int]:
    """The size `thumbnail` gives an image of `width` x `height` whose long side is cut to `analysis_side`."""
    scale = min(1.0, analysis_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def as_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB as a person sees it: alpha composited on white, 16-bit scaled, CMYK converted."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        levels = np.asarray(image)
        if image.mode in SIXTEEN_BIT_MODES or (image.mode == "I" and levels.max(initial=0) > 255):
            levels = levels / 257.0  # 65535 -> 255
        gray = np.clip(np.rint(levels), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler and Süsstrunk (2003): spread plus a third of the mean of the opponent channels rg and yb."""
    red, green, blue = (rgb[..., channel].astype(np.float32) for channel in range(3))
    red_green = red - green
    yellow_blue = 0.5 * (red + green) - blue
    spread = math.hypot(float(red_green.std()), float(yellow_blue.std()))
    mean = math.hypot(float(red_green.mean()), float(yellow_blue.mean()))
    return round(spread + 0.3 * mean, 3)


def _lab_statistics(lab: np.ndarray) -> dict[str, float | bool]:
    lightness, a, b = (lab[..., channel].ravel() for channel in range(3))
    chroma = np.hypot(a, b)
    mean_chroma = float(chroma.mean())
    colored = chroma > COLORED_CHROMA
    colored_fraction = float(colored.mean())
    hue_spread = off_hue_fraction = 0.0
    if colored.any():
        # The chroma-weighted mean direction in the a*b* plane is the dominant hue; its length over the mean
        # chroma is 1 when every colored pixel has that hue and near 0 when hues are spread round the circle.
        hue_a, hue_b = float(a[colored].sum()), float(b[colored].sum())
        resultant = math.hypot(hue_a, hue_b) / float(chroma[colored].sum())
        hue_spread = math.degrees(math.sqrt(-2.0 * math.log(min(1.0, max(resultant, 1e-12)))))
        # cos(angle to the dominant hue) = (a, b) . hue / (chroma |hue|)
        alignment = (a * hue_a + b * hue_b) / max(math.hypot(hue_a, hue_b), 1e-12)
        off_hue = (chroma > OFF_HUE_CHROMA) & (alignment < math.cos(math.radians(OFF_HUE_DEGREES)) * chroma)
        off_hue_fraction = float(off_hue.mean())
    chroma_residual = _chroma_residual(lightness, a, b)
    is_grayscale = mean_chroma < GRAY_MEAN_CHROMA and colored_fraction < GRAY_COLORED_FRACTION
    is_sepia = (
        not is_grayscale
        and hue_spread < SEPIA_HUE_SPREAD_DEGREES
        and off_hue_fraction < SEPIA_OFF_HUE_FRACTION
        and chroma_residual < SEPIA_CHROMA_RESIDUAL
    )
    return {
        "mean_chroma": round(mean_chroma, 3),
        "hue_spread": round(hue_spread, 3),
        "off_hue_fraction": round(off_hue_fraction, 5),
        "chroma_residual": round(chroma_residual, 3),
        "is_grayscale": is_grayscale,
        "is_sepia": is_sepia,
        "brightness_mean": round(float(lightness.mean()), 3),
        "brightness_std": round(float(lightness.std()), 3),
    }


def _chroma_residual(lightness: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    bins = np.clip((lightness / TONE_BIN_LIGHTNESS).astype(np.intp), 0, int(100 / TONE_BIN_LIGHTNESS))
    counts = np.maximum(np.bincount(bins), 1)
    mean_a = np.bincount(bins, weights=a) / counts
    mean_b = np.bincount(bins, weights=b) / counts
    return math.sqrt(float(np.mean((a - mean_a[bins]) ** 2 + (b - mean_b[bins]) ** 2)))


def _exif_orientation(image: Image.Image) -> int | None:
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION)
    except Exception:  # a corrupt EXIF block says nothing about the pixels; the image may still be fine
        return None
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None


def _bit_depth(image: Image.Image, data: bytes) -> int:
    """Bits per channel as stored. Pillow reads 16-bit color PNGs as 8-bit RGB, so PNG's header is asked."""
    if image.format == "PNG" and data.startswith(PNG_SIGNATURE) and len(data) > PNG_BIT_DEPTH_OFFSET:
        return data[PNG_BIT_DEPTH_OFFSET]
    return MODE_BIT_DEPTHS.get(image.mode, 8)


def _decode_failure(error: Exception, image_format: str) -> str:
    if isinstance(error, Image.DecompressionBombError):
        return _bomb_reason(error)
    message = str(error)
    if isinstance(error, EOFError) or "truncated" in message.lower():
        return f"truncated {image_format}"
    if "conversion" in message:  # e.g. a LAB TIFF, which Pillow cannot turn into RGB
        return f"unsupported {image_format}: {message}"
    return f"corrupt {image_format}: {message or type(error).__name__}"


def _bomb_reason(error: Exception) -> str:
    pixels = re.search(r"\((\d+) pixels\)", str(error))  # Pillow: "Image size (N pixels) exceeds limit ..."
    return f"decompression bomb: {pixels.group(1)} pixels" if pixels else "decompression bomb"


def _not_an_image(data: bytes) -> str:
    """Why Pillow found no image: what the bytes look like instead, since that usually names the cause
    (a login or error page saved as the photo, an API error in JSON, an archive that was not unpacked)."""
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<!doctype html") or any(tag in head for tag in (b"<html", b"<head", b"<body")):
        return "not an image (looks like HTML)"
    if b"<svg" in head:
        return "not an image (looks like SVG)"
    if head.startswith(b"<?xml"):
        return "not an image (looks like XML)"
    if head.startswith((b"{", b"[")):
        return "not an image (looks like JSON)"
    if head.startswith(b"%pdf"):
        return "not an image (looks like PDF)"
    if head.startswith((b"pk\x03\x04", b"\x1f\x8b")):
        return "not an image (looks like a zip or gzip archive)"
    text = head[:512].decode("utf-8", errors="replace")
    if text and all(character in string.printable for character in text):
        return "not an image (looks like text)"
    try:
        with Image.open(io.BytesIO(data)) as other:  # the header only: is it a format the lake does not take?
            return f"unsupported image format ({other.format})"
    except Exception:  # not one Pillow knows either
        return "not an image (unknown format)"


def _undecodable(data: bytes, reason: str) -> ImageFacts:
    if len(reason) > REASON_LENGTH:
        reason = reason[: REASON_LENGTH - 3] + "..."
    return ImageFacts(decodes=False, decode_error=reason, byte_size=len(data))
