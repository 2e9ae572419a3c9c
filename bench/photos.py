"""The photos every benchmark works on: real ones (the sandbox library's), cropped to a size and encoded as
JPEG, and placed in a lake's raw zone when a benchmark runs the stitch."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable

from PIL import Image, ImageOps

from pipelines.raw_zone import raw_key
from pipelines.stitch import DatasetImage
from pipelines.storage import ObjectStore
from sandbox.library import PhotoLibrary


def library_jpegs(
    numbers: Iterable[int],
    size: tuple[int, int],
    quality: int = 90,
    resample: Image.Resampling = Image.Resampling.LANCZOS,
) -> list[bytes]:
    """Library photos `numbers` (wrapping around the library) cropped to `size`, as JPEG bytes."""
    library = PhotoLibrary()
    encoded = []
    for number in numbers:
        buffer = io.BytesIO()
        ImageOps.fit(library.image(number % len(library.photos)), size, resample).save(
            buffer, format="JPEG", quality=quality
        )
        encoded.append(buffer.getvalue())
    return encoded


def store_raw(store: ObjectStore, data: bytes) -> DatasetImage:
    """Put `data` in the raw zone as the stitch expects it; returns it as a train-split member."""
    sha256 = hashlib.sha256(data).hexdigest()
    key = raw_key(sha256, "jpg")
    store.put(key, data)
    return DatasetImage(sha256, key, "jpg", ("bench",), "train")
