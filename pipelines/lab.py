"""How Colorflow stores CIE Lab pixels: 8 bits per channel, the encoding OpenCV and the Kaggle MIRFLICKR
arrays use, so those arrays enter the shards as they are and every other image is converted once.

This module is the only code that knows the layout and the scaling: encode and decode, neutral chroma, how
a sample travels as `.npy` bytes and how one is checked. Every consumer (image facts, the stitch, the Kaggle
connector, the training data and metrics, colorizing) goes through it, so changing the encoding means
changing this module and the `name` in `LAB_ENCODING`, which every manifest records and every dataset
version's hash includes (the trainer refuses a dataset in another encoding).

Eight bits are enough for training data: L is kept in steps of 100/255 and a, b in whole units, so
decoding back to float Lab is within about half a unit of the exact value, far below what an eye sees.
The conversion itself is OpenCV's integer path (lookup tables, no float image in memory), which is what
makes building shards cost little more than decoding the JPEGs.
"""

from __future__ import annotations

import functools
import io
from typing import Any

import cv2
import numpy as np

# Written into every manifest, so a reader never has to guess how to get float Lab back.
LAB_ENCODING: dict[str, Any] = {
    "name": "lab8-opencv",
    "dtype": "uint8",
    "layout": "HWC",
    "channels": ["L", "a", "b"],
    "white_point": "D65",
    "observer": "2 degrees",
    "transfer": "sRGB",
    "decode": {"L": "value * 100 / 255", "a": "value - 128", "b": "value - 128"},
}
L_SCALE = 100.0 / 255.0  # CIE L* per stored step
AB_OFFSET = 128.0  # the stored value of a neutral a or b
NPY_MAGIC = b"\x93NUMPY"


def rgb_to_lab8(rgb: np.ndarray) -> np.ndarray:
    """Encode an 8-bit sRGB image (H, W, 3) as 8-bit Lab of the same shape."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.dtype} {rgb.shape}")
    # No packing first: OpenCV reads a crop out of a larger decode where it lies (copying it would cost a
    # fifth of the conversion) and packs other layouts itself.
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)


def lab8_to_rgb(lab8: np.ndarray) -> np.ndarray:
    """Decode 8-bit Lab back to 8-bit sRGB (for pictures of samples and predictions)."""
    return cv2.cvtColor(np.ascontiguousarray(lab8), cv2.COLOR_LAB2RGB)


def decode_lab8(lab8: np.ndarray) -> np.ndarray:
    """8-bit Lab to float32 Lab in CIE units: L in [0, 100], a and b around 0."""
    lab = lab8.astype(np.float32)
    lab[..., 0] *= L_SCALE
    lab[..., 1:] -= AB_OFFSET
    return lab


def fit_to_gamut(lab8: np.ndarray, tolerance: int = 1, steps: int = 4) -> np.ndarray:
    """Reduce chroma (a, b towards neutral) at constant L wherever a color has no sRGB equivalent, so
    that converting to RGB keeps every pixel's lightness (within `tolerance`) instead of clipping it.

    Colors are pulled in a little at a time, and only where needed; what is still out of gamut after
    `steps` becomes gray, which always fits. Returns a new array."""
    fitted = lab8.copy()
    lightness = lab8[..., 0].astype(np.int16)
    for step in range(steps + 1):
        moved = np.abs(rgb_to_lab8(lab8_to_rgb(fitted))[..., 0].astype(np.int16) - lightness) > tolerance
        if not moved.any():
            break
        chroma = fitted[moved, 1:].astype(np.float32) - AB_OFFSET
        factor = 0.0 if step == steps else 0.7
        fitted[moved, 1:] = np.clip(np.rint(chroma * factor + AB_OFFSET), 0, 255).astype(np.uint8)
    return fitted


def scale_chroma(ab: np.ndarray, strength: float) -> np.ndarray:
    """Stored a/b (any shape, last axis a and b) with their distance from neutral multiplied by `strength`:
    0 is gray, 1 as predicted, above 1 more saturated. Float in, float out, so a later resize or average
    does not round twice."""
    return (np.asarray(ab, dtype=np.float32) - AB_OFFSET) * strength + AB_OFFSET


def lab8_from_opencv_channels(lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """One (H, W, 3) sample from OpenCV 8-bit channels kept apart, L (H, W) and a/b (H, W, 2), as the Kaggle
    arrays ship them. OpenCV's encoding is ours, so the values go in unchanged."""
    sample = np.empty((*lightness.shape, 3), dtype=np.uint8)
    sample[..., 0] = lightness
    sample[..., 1:] = ab
    return sample


def without_chroma(lab8: np.ndarray) -> np.ndarray:
    """The same lightness with neutral a and b: what a black-and-white photo holds."""
    gray = np.array(lab8, copy=True)
    gray[..., 1:] = int(AB_OFFSET)
    return gray


def neutral_lab8(height: int, width: int, lightness: np.ndarray | None = None) -> np.ndarray:
    """An (H, W, 3) sample with neutral chroma, and L from `lightness` (mid-gray without it)."""
    sample = np.full((height, width, 3), int(AB_OFFSET), dtype=np.uint8)
    if lightness is not None:
        sample[..., 0] = lightness
    return sample


def lab8_to_npy(lab8: np.ndarray) -> bytes:
    """A sample as the `.npy` bytes the raw zone and the shards keep (no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, lab8, allow_pickle=False)
    return buffer.getvalue()


def lab8_from_npy(data: bytes) -> np.ndarray:
    """A sample back from `.npy` bytes, checked to be an (H, W, 3) uint8 array; ValueError says why not
    (a truncated file, an object array that would need pickle, another shape or dtype)."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:  # bad header, short data, or an object array
        raise ValueError(f"corrupt numpy array: {error}") from None
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        shape = getattr(array, "shape", "?")
        dtype = getattr(array, "dtype", type(array).__name__)
        raise ValueError(f"not a Lab sample: numpy array of shape {shape} and dtype {dtype}")
    if 0 in array.shape:
        raise ValueError(f"not a Lab sample: numpy array of shape {array.shape}")
    return array


def read_npy_header(head: bytes) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the first bytes of an `.npy` file; ValueError for anything but C-ordered plain
    numbers (no objects, so no pickles)."""
    stream = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy format version {version}")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read(stream)
    except (ValueError, OSError) as error:
        raise ValueError(f"not a readable .npy header ({error})") from None
    if fortran_order or dtype.hasobject:
        raise ValueError("not C-ordered plain numbers")
    return tuple(int(side) for side in shape), np.dtype(dtype)


@functools.lru_cache(maxsize=16)
def npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    """The `.npy` header numpy writes for such an array (every sample of a shard shares one)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    return header.getvalue()


def npy_view(data: bytes) -> np.ndarray:
    """A read-only array over `.npy` bytes without copying them: training reads every sample each epoch,
    and a copy (or a header parse) per sample is a noticeable share of the loader's time."""
    if data[:6] != NPY_MAGIC:
        raise ValueError("sample is not a .npy array")
    length_bytes = 2 if data[6] == 1 else 4
    offset = 8 + length_bytes + int.from_bytes(data[8 : 8 + length_bytes], "little")
    shape, dtype = _cached_npy_header(data[:offset])
    return np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)


@functools.lru_cache(maxsize=64)
def _cached_npy_header(header: bytes) -> tuple[tuple[int, ...], np.dtype]:
    return read_npy_header(header)
