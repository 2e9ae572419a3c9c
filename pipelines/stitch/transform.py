"""One accepted image to one sample: raw bytes to a square of 8-bit Lab (encoding in `pipelines.lab`), as a
person sees the photo (EXIF orientation applied), center-cropped and resized once. Training crops and flips
at random, so the square keeps a margin (286 for 256 crops) and no augmentation."""

from __future__ import annotations

import io

import cv2
import numpy as np
import simplejpeg
from PIL import Image as PILImage
from PIL import ImageOps

from pipelines.image_facts import DECODED_FORMATS, EXIF_ORIENTATION, as_rgb
from pipelines.lab import lab8_from_npy, rgb_to_lab8

# libjpeg's DCT scaling (1/2, 1/4, 1/8) leaves at most a 2x reduction; above that, area averaging avoids
# the aliasing a bilinear resize would add.
AREA_RESIZE_FACTOR = 2.0
# Every EXIF block in a JPEG starts with this identifier (APP1 segment, EXIF 2.3 section 4.7.2).
EXIF_APP1_IDENTIFIER = b"Exif\x00\x00"
JPEG_MARKER_PREFIX, JPEG_APP1, JPEG_START_OF_SCAN = 0xFF, 0xE1, 0xDA
# EXIF orientation to the transpose that shows the image upright (the table Pillow's exif_transpose uses).
ORIENTATION_TRANSPOSE = {
    2: PILImage.Transpose.FLIP_LEFT_RIGHT,
    3: PILImage.Transpose.ROTATE_180,
    4: PILImage.Transpose.FLIP_TOP_BOTTOM,
    5: PILImage.Transpose.TRANSPOSE,
    6: PILImage.Transpose.ROTATE_270,
    7: PILImage.Transpose.TRANSVERSE,
    8: PILImage.Transpose.ROTATE_90,
}
CROP_TOLERANCE = 0.10
JPEG_EXTENSIONS = frozenset({"jpg", "jpeg"})
NPY_EXTENSION = "npy"


class TransformError(ValueError):
    """An accepted image that still cannot become a sample; it is left out with this reason, not fatal."""


def transform_image(data: bytes, image_format: str, load_size: int) -> np.ndarray:
    """Raw bytes to a `load_size` square of 8-bit Lab, as a person sees the photo (EXIF orientation
    applied), center-cropped and resized. Raises `TransformError` for anything that cannot be read."""
    try:
        if image_format == NPY_EXTENSION:
            return np.ascontiguousarray(_square(_lab_array(data), load_size))
        if image_format in JPEG_EXTENSIONS:
            try:
                return rgb_to_lab8(_decode_jpeg(data, load_size))
            except ValueError:  # CMYK, lossless or otherwise unusual JPEG: Pillow reads what libjpeg-turbo won't
                pass
        return rgb_to_lab8(_decode_other(data, load_size))
    except TransformError:
        raise
    except Exception as error:  # a decoder's own error, whatever its type: one image, not the build
        raise TransformError(f"cannot decode {image_format}: {error}") from error


def _decode_jpeg(data: bytes, load_size: int) -> np.ndarray:
    """The fast path: libjpeg-turbo decodes straight into an array at the smallest DCT scale that still
    covers `load_size`, so a 1600x1200 photo costs about a quarter of a full decode."""
    rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=load_size, min_width=load_size)
    orientation = _exif_orientation(data)
    square = _square(rgb, load_size)
    # A center square turns with the photo, so orienting after the crop shows the same pixels for less work.
    if orientation in ORIENTATION_TRANSPOSE:
        square = np.asarray(PILImage.fromarray(square).transpose(ORIENTATION_TRANSPOSE[orientation]))
    return square


def _exif_orientation(data: bytes) -> int:
    """The JPEG's EXIF orientation (1, upright, when it has none). Most photos reaching the stitch carry no
    EXIF at all, and finding that out costs far less than parsing the headers with Pillow."""
    if not _may_have_exif(data):
        return 1
    with PILImage.open(io.BytesIO(data)) as header:
        return header.getexif().get(EXIF_ORIENTATION, 1)


def _may_have_exif(data: bytes) -> bool:
    """Whether an APP1 segment holds EXIF. Header segments all come before the first scan, so walking their
    markers stops after a few hundred bytes, where a byte search reads through the whole compressed image
    (a tenth of a millisecond at 1600x1200). Bytes that are not a clean run of segments, which Pillow
    still reads, fall back to that search: a false "maybe" only costs the header parse."""
    position = 2  # past SOI
    while position + 4 <= len(data) and data[position] == JPEG_MARKER_PREFIX:
        marker = data[position + 1]
        if marker == JPEG_START_OF_SCAN:
            return False
        if marker == JPEG_MARKER_PREFIX:  # a fill byte before a marker
            position += 1
            continue
        if marker == JPEG_APP1 and data.startswith(EXIF_APP1_IDENTIFIER, position + 4):
            return True
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return EXIF_APP1_IDENTIFIER in data


def _decode_other(data: bytes, load_size: int) -> np.ndarray:
    with PILImage.open(io.BytesIO(data), formats=DECODED_FORMATS) as image:
        image.draft("RGB", (load_size, load_size))
        upright = ImageOps.exif_transpose(image)
        return _square(np.asarray(as_rgb(upright)), load_size)


def _lab_array(data: bytes) -> np.ndarray:
    """A Kaggle sample: already 8-bit Lab in this encoding, so it skips any RGB round trip."""
    try:
        return lab8_from_npy(data)
    except ValueError as error:
        raise TransformError(str(error)) from None


def _square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Center-crop to a square and resize it to `size` (works on RGB and Lab alike: both are 3 x uint8).

    When the short side is already within `CROP_TOLERANCE` of `size` (JPEG's DCT scaling usually lands
    there), the center `size` square is cut out directly: a few percent tighter framing, no resampling blur,
    and a tenth of the transform's time saved."""
    height, width = pixels.shape[:2]
    side = min(height, width)
    if size <= side <= size * (1 + CROP_TOLERANCE):
        side = size
    top, left = (height - side) // 2, (width - side) // 2
    square = pixels[top : top + side, left : left + side]
    if side == size:
        return square  # a view: the Lab conversion reads it in place
    interpolation = cv2.INTER_AREA if side >= AREA_RESIZE_FACTOR * size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)
