"""Finished photos, kept so that a new strength is applied without running the network again.

A result keeps what `models.colorize` splits a colorization into: the photo's own Lab lightness at full
size and the predicted chroma at the network's small scale (a 12-megapixel photo keeps about 36 MB). The
store holds up to a memory budget and lets the oldest results go first; a result asked for after it went
is a clear 404, and the page asks for the photo again.
"""

from __future__ import annotations

import io
import secrets
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PIL import Image

from models.colorize import with_chroma
from pipelines.lab import lab8_to_rgb


@dataclass(frozen=True)
class PhotoResult:
    name: str  # the uploaded file's name
    lab8: np.ndarray  # the photo as uploaded, in Lab8, full size
    chroma: np.ndarray  # predicted a/b at the network's scale, float32
    model: str

    @property
    def nbytes(self) -> int:
        return self.lab8.nbytes + self.chroma.nbytes

    def png(self, strength: float) -> bytes:
        return _png(lab8_to_rgb(with_chroma(self.lab8, self.chroma, strength)))

    def original_png(self) -> bytes:
        return _png(lab8_to_rgb(self.lab8))

    @property
    def download_name(self) -> str:
        stem = self.name.rsplit(".", 1)[0] or "photo"
        return f"{stem}-colorized.png"


class ResultStore:
    """Results by a random id, within `budget_bytes`, oldest evicted first."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._results: OrderedDict[str, PhotoResult] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def add(self, result: PhotoResult) -> str:
        result_id = secrets.token_urlsafe(12)
        with self._lock:
            self._results[result_id] = result
            self._held += result.nbytes
            while self._held > self.budget_bytes and len(self._results) > 1:
                _, gone = self._results.popitem(last=False)
                self._held -= gone.nbytes
        return result_id

    def get(self, result_id: str) -> PhotoResult | None:
        with self._lock:
            return self._results.get(result_id)


def zip_of(results: list[PhotoResult], strength: float) -> bytes:
    """The results as PNGs in one zip; names made unique when two uploads shared one."""
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for result in results:
            name, number = result.download_name, 1
            while name in used:
                number += 1
                name = result.download_name.replace("-colorized.png", f"-colorized-{number}.png")
            used.add(name)
            archive.writestr(name, result.png(strength))
    return buffer.getvalue()


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=3)  # quick: the answer waits on it
    return buffer.getvalue()
