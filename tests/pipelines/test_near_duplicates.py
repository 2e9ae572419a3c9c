"""The perceptual-hash index: Hamming distances bit for bit, the nearest kept hash, and growth past its
first capacity."""

from __future__ import annotations

import random

from pipelines.near_duplicates import HashIndex


def hamming(first: str, second: str) -> int:
    return bin(int(first, 16) ^ int(second, 16)).count("1")


def test_distances_count_the_differing_bits() -> None:
    index = HashIndex(hash_hex_length=16)
    kept = ["0000000000000000", "ffffffffffffffff", "00000000000000ff", "8000000000000001"]
    for position, phash in enumerate(kept):
        assert index.add(phash) == position
    query = "000000000000000f"
    assert list(index.distances(query)) == [4, 60, 4, 4]
    assert list(index.distances(query)) == [hamming(query, phash) for phash in kept]


def test_nearest_names_the_closest_kept_hash() -> None:
    index = HashIndex(hash_hex_length=16)
    assert index.nearest("0123456789abcdef") is None, "nothing kept yet"
    index.add("0123456789abcdef")
    index.add("0123456789abcdee")
    assert index.nearest("0123456789abcdee") == (1, 0)
    assert index.nearest("0123456789abcdec") == (1, 1)


def test_the_index_grows_past_its_capacity_and_keeps_every_hash() -> None:
    rng = random.Random(7)
    hashes = [f"{rng.getrandbits(64):016x}" for _ in range(50)]
    index = HashIndex(hash_hex_length=16, capacity=4)
    for phash in hashes:
        index.add(phash)
    assert len(index) == 50
    query = f"{rng.getrandbits(64):016x}"
    assert list(index.distances(query)) == [hamming(query, phash) for phash in hashes]
