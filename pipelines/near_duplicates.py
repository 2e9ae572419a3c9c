"""Perceptual-hash distances against a growing set of kept images: the one comparison both the quality
stage (is this new image a copy of one already accepted?) and the dataset stitch (are two accepted images,
from different sources, the same photo?) make.

Hashes sit in one packed uint8 matrix, so a query is a single vectorized XOR and popcount over every kept
image, fast enough for tens of thousands of images without an approximate index.
"""

from __future__ import annotations

import numpy as np


class HashIndex:
    """Hex perceptual hashes (all of one length), added one by one and queried by Hamming distance."""

    def __init__(self, hash_hex_length: int, capacity: int = 1024) -> None:
        self._hashes = np.zeros((capacity, hash_hex_length // 2), dtype=np.uint8)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, phash: str) -> int:
        """Keep a hash; returns its position, the index its distances are reported at."""
        if self._count == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
        self._hashes[self._count] = _unpack(phash)
        self._count += 1
        return self._count - 1

    def distances(self, phash: str) -> np.ndarray:
        """Hamming distance in bits from `phash` to every kept hash, in the order they were added."""
        return np.bitwise_count(np.bitwise_xor(self._hashes[: self._count], _unpack(phash))).sum(axis=1)

    def nearest(self, phash: str) -> tuple[int, int] | None:
        """(position, distance) of the closest kept hash, or None while nothing is kept."""
        if not self._count:
            return None
        distances = self.distances(phash)
        position = int(np.argmin(distances))
        return position, int(distances[position])


def _unpack(phash: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(phash), dtype=np.uint8)
