"""How Colorflow stores CIE Lab pixels: 8 bits per channel, the encoding OpenCV and the Kaggle MIRFLICKR
arrays use, so those arrays enter the shards as they are and every other image is converted once.

Eight bits are enough for training data: L is kept in steps of 100/255 and a, b in whole units, so
decoding back to float Lab is within about half a unit of the exact value, far below what an eye sees.
The conversion itself is OpenCV's integer path (lookup tables, no float image in memory), which is what
makes building shards cost little more than decoding the JPEGs.
"""

from __future__ import annotations

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
L_SCALE = 100.0 / 255.0
AB_OFFSET = 128.0


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
