"""The near-duplicate search against brute force: every pair within each radius from 0 to 10, and the greedy
pass's kept hashes, nearest kept hash (ties to the earliest) and exact twins, for random hashes and for the
sets that trip up an index (tight families, equal hashes, pairs at exactly the radius and one bit past it,
differences packed into a few adjacent bits), at several hash lengths, in small batches as in large."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from pipelines import near_duplicates
from pipelines.near_duplicates import hash_codes, keep_first, within

RADII = range(11)
# Hex digits: the usual 64-bit pHash, a short one, an odd one (12 bits) and ones spanning 64-bit words.
HASH_LENGTHS = (16, 8, 3, 17, 64)


def hamming(first: str, second: str) -> int:
    return (int(first, 16) ^ int(second, 16)).bit_count()


def brute_force_pairs(first: list[str], second: list[str] | None, radius: int) -> set[tuple[int, int, int]]:
    others = first if second is None else second
    return {
        (i, j, hamming(a, b))
        for i, a in enumerate(first)
        for j, b in enumerate(others)
        if (second is not None or i < j) and hamming(a, b) <= radius
    }


def brute_force_keep(hashes: list[str], radius: int, already_kept: int = 0) -> tuple[list[int], dict[int, list[int]]]:
    """What comparing each hash with every kept one gives: the nearest kept position per position (-1 where
    kept; the first minimum, as numpy's argmin), and the kept positions with an equal hash per dropped one."""
    kept: list[int] = []
    nearest: list[int] = []
    twins: dict[int, list[int]] = {}
    for position, phash in enumerate(hashes):
        distances = [hamming(phash, hashes[other]) for other in kept]
        if position >= already_kept and distances and min(distances) <= radius:
            nearest.append(kept[distances.index(min(distances))])
            twins[position] = [other for other, distance in zip(kept, distances, strict=True) if distance == 0]
        else:
            kept.append(position)
            nearest.append(-1)
    return nearest, twins


def as_hex(value: int, length: int) -> str:
    return f"{value:0{length}x}"


def flipped(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


def random_hashes(rng: random.Random, length: int, radius: int) -> list[str]:
    return [as_hex(rng.getrandbits(4 * length), length) for _ in range(150)]


def tight_families(rng: random.Random, length: int, radius: int) -> list[str]:
    """Six photos, each many times over with up to 8 bits changed, and every copy of the original too."""
    bits = 4 * length
    roots = [rng.getrandbits(bits) for _ in range(6)]
    return [
        as_hex(flipped(rng.choice(roots), rng.sample(range(bits), rng.randint(0, min(8, bits)))), length)
        for _ in range(150)
    ]


def equal_hashes(rng: random.Random, length: int, radius: int) -> list[str]:
    same = as_hex(rng.getrandbits(4 * length), length)
    return [same] * 60 + random_hashes(rng, length, radius)[:20] + [same] * 20


def at_the_radius(rng: random.Random, length: int, radius: int) -> list[str]:
    """Hashes exactly `radius` and `radius + 1` bits from a root (and so up to twice that from each other)."""
    bits = 4 * length
    root = rng.getrandbits(bits)
    return [
        as_hex(flipped(root, rng.sample(range(bits), min(bits, radius + rng.randint(0, 1)))), length)
        for _ in range(100)
    ] + [as_hex(root, length)]


def in_one_chunk(rng: random.Random, length: int, radius: int) -> list[str]:
    """Differences packed into a window of adjacent bits, so one chunk of the index sees them all."""
    bits = 4 * length
    window = min(bits, 2 * radius + 2)
    hashes = []
    for _ in range(4):
        root, offset = rng.getrandbits(bits), rng.randrange(bits - window + 1)
        hashes += [
            as_hex(flipped(root, rng.sample(range(offset, offset + window), rng.randint(0, window))), length)
            for _ in range(30)
        ]
    return hashes


HASH_SETS: list[Callable[[random.Random, int, int], list[str]]] = [
    random_hashes,
    tight_families,
    equal_hashes,
    at_the_radius,
    in_one_chunk,
]


def as_pairs(pairs: near_duplicates.Pairs) -> set[tuple[int, int, int]]:
    found = list(zip(pairs.first.tolist(), pairs.second.tolist(), pairs.distance.tolist(), strict=True))
    assert len(found) == len(set(found)), "a pair was reported twice"
    return set(found)


@pytest.mark.parametrize("length", HASH_LENGTHS)
@pytest.mark.parametrize("radius", RADII)
def test_pairs_within_the_radius_are_those_brute_force_finds(radius: int, length: int) -> None:
    rng = random.Random(radius * 100 + length)
    for make in HASH_SETS:
        hashes = make(rng, length, radius)
        others = make(rng, length, radius)[:50] + hashes[:10]
        assert as_pairs(within(hash_codes(hashes), None, radius)) == brute_force_pairs(hashes, None, radius), make
        assert as_pairs(within(hash_codes(hashes), hash_codes(others), radius)) == brute_force_pairs(
            hashes, others, radius
        ), make


@pytest.mark.parametrize("length", HASH_LENGTHS)
@pytest.mark.parametrize("radius", RADII)
def test_the_greedy_pass_keeps_and_points_like_brute_force(radius: int, length: int) -> None:
    rng = random.Random(radius * 100 + length + 1)
    for make in HASH_SETS:
        hashes = make(rng, length, radius)
        for already_kept in (0, 40):
            expected_nearest, expected_twins = brute_force_keep(hashes, radius, already_kept)
            selection = keep_first(hashes, radius, already_kept=already_kept)
            assert selection.nearest_kept.tolist() == expected_nearest, (make, already_kept)
            assert {position: selection.kept_twins(position) for position in selection.dropped.tolist()} == (
                expected_twins
            ), (make, already_kept)


def test_the_nearest_kept_hash_wins_and_ties_go_to_the_earliest() -> None:
    low, high = "000000000000000f", "00000000000000f0"
    between, near_high = "0000000000000033", "00000000000000f1"
    assert hamming(low, high) == 8 and hamming(between, low) == hamming(between, high) == 4
    assert keep_first([low, high, between], radius=4).nearest_kept.tolist() == [-1, -1, 0]
    assert keep_first([high, low, between], radius=4).nearest_kept.tolist() == [-1, -1, 0]
    assert keep_first([low, high, between], radius=3).nearest_kept.tolist() == [-1, -1, -1]
    assert hamming(near_high, low) == 7 and hamming(near_high, high) == 1
    assert keep_first([low, high, near_high], radius=7).nearest_kept.tolist() == [-1, -1, 1]
    # Already accepted images are kept even when alike; the first of equally near ones still wins.
    assert keep_first([high, low, high, between], radius=8, already_kept=3).nearest_kept.tolist() == [-1, -1, -1, 0]


def test_equal_hashes_already_accepted_are_all_twins_of_a_new_copy() -> None:
    same, other = "0123456789abcdef", "fedcba9876543210"
    selection = keep_first([same, other, same, same, other], radius=6, already_kept=3)
    assert selection.nearest_kept.tolist() == [-1, -1, -1, 0, 1]
    assert selection.kept_twins(3) == [0, 2]
    assert selection.kept_twins(4) == [1]


def test_a_negative_radius_keeps_everything() -> None:
    assert keep_first(["ab", "ab"], radius=-1).nearest_kept.tolist() == [-1, -1]
    assert len(within(hash_codes(["ab"]), hash_codes(["ab"]), -1).first) == 0


def test_nothing_to_compare() -> None:
    assert keep_first([], radius=6).nearest_kept.tolist() == []
    assert keep_first(["ab", "cd"], radius=6, already_kept=2).nearest_kept.tolist() == [-1, -1]


def test_hashes_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        keep_first(["0123456789abcdef", "01234567"], radius=6)


def test_small_batches_give_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    hashes = tight_families(rng, 16, 6) + equal_hashes(rng, 16, 6)
    expected = keep_first(hashes, 6).nearest_kept.tolist()
    expected_pairs = as_pairs(within(hash_codes(hashes), None, 6))
    monkeypatch.setattr(near_duplicates, "PROBES_PER_BATCH", 5)
    monkeypatch.setattr(near_duplicates, "CANDIDATES_PER_BATCH", 3)
    assert keep_first(hashes, 6).nearest_kept.tolist() == expected
    assert as_pairs(within(hash_codes(hashes), None, 6)) == expected_pairs


def test_a_few_thousand_photos_at_the_default_radius() -> None:
    """Enough hashes that the index probes flipped bits in wide chunks, as it does at a million."""
    rng = random.Random(11)
    hashes = [as_hex(rng.getrandbits(64), 16) for _ in range(1500)]
    for _ in range(300):
        root = rng.getrandbits(64)
        hashes += [as_hex(flipped(root, rng.sample(range(64), rng.randint(0, 8))), 16) for _ in range(3)]
    rng.shuffle(hashes)
    assert as_pairs(within(hash_codes(hashes), None, 6)) == brute_force_pairs(hashes, None, 6)
    expected_nearest, _ = brute_force_keep(hashes, 6, already_kept=500)
    assert keep_first(hashes, 6, already_kept=500).nearest_kept.tolist() == expected_nearest
