"""Near-duplicate search on perceptual hashes: the one comparison both the quality stage (is this new image a
copy of one already accepted?) and the dataset stitch (are two accepted images, from different sources, the
same photo?) make, exact at a million images without comparing each image with every other.

Both keep images greedily: in a fixed order, an image is dropped when its hash lies within a radius of a hash
already kept, and kept otherwise. `keep_first` finds every pair of hashes within the radius in one batch
(`within`), then makes the greedy pass over those pairs alone, so its cost grows with the number of images
and of close pairs, not with their square.

`within` is multi-index hashing. A pair within `radius` bits differs, by pigeonhole, in at most `t_c` bits of
at least one of `m` disjoint chunks of the hash whenever the tolerances satisfy sum(t_c + 1) > radius. Each
chunk indexes the hashes in a counting-sorted table; a query probes its chunk value with every flip of up to
`t_c` bits, and each candidate found is checked on the full hash. A pair is reported from the first chunk it
matches in, so exactly once. Chunks are about log2 of the number of hashes wide, and their count is the
one a cost model of probes and candidates prefers, so the results equal a brute-force scan for any radius
and hash length while the work per hash grows only slowly with the number of hashes.

Plain numpy rather than a vector-search library, because the libraries measured worse on a million synthetic
pHashes on one core: faiss's IndexBinaryMultiHash (exact when nhash * (nflip + 1) > radius) needs about six
minutes for the range search, usearch's HNSW is approximate and its exact mode a full scan, while this index
and the greedy pass take about ten seconds (`python -m bench near_duplicates`).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

# Widest chunk a table is built for: 2**24 slots (int64 start and count, a byte of occupancy) take 272 MiB.
MAX_CHUNK_BITS = 24
# Probed keys per batch, and candidate pairs checked at once: together they bound the working memory
# (about 70 bytes per candidate) whatever the number of hashes or how tightly they cluster.
PROBES_PER_BATCH = 1 << 20
CANDIDATES_PER_BATCH = 1 << 22
# One probe (a table look-up) costs about 0.7 of checking one candidate pair (measured on a million hashes).
PROBE_COST = 0.7


class Pairs(NamedTuple):
    """Pairs of hashes within a radius: positions in the first and second set, and their distance in bits."""

    first: np.ndarray
    second: np.ndarray
    distance: np.ndarray


class _Chunk(NamedTuple):
    start: int  # first bit, counted from the most significant bit of the first 64-bit word
    width: int
    tolerance: int  # most differing bits in this chunk that a pair found through it may have


def hash_codes(hashes: Sequence[str]) -> np.ndarray:
    """Hex hashes of one length as rows of bytes, the form `within` compares."""
    lengths = {len(phash) for phash in hashes}
    if len(lengths) > 1:
        raise ValueError(f"hashes of different lengths cannot be compared: {sorted(lengths)}")
    length = lengths.pop() if lengths else 0
    # An odd length gains a leading zero digit, which adds nothing to any distance.
    digits = "".join(hashes) if length % 2 == 0 else "".join("0" + phash for phash in hashes)
    return np.frombuffer(bytes.fromhex(digits), dtype=np.uint8).reshape(len(hashes), (length + 1) // 2)


def within(first: np.ndarray, second: np.ndarray | None, radius: int) -> Pairs:
    """Every pair of codes (rows of `hash_codes`) at most `radius` bits apart: between `first` and `second`,
    or, without `second`, within `first`, each pair once with the lower position first."""
    targets = first if second is None else second
    if first.shape[1] != targets.shape[1]:
        raise ValueError("codes of different lengths cannot be compared")
    query_words, target_words = _words(first), _words(targets)
    found = []
    if radius >= 0 and len(first) and len(targets):
        padding = 64 * len(query_words) - 8 * first.shape[1]
        chunks = _plan(padding, 8 * first.shape[1], len(targets), radius)
        for number, chunk in enumerate(chunks):
            found.extend(_matches_in_chunk(query_words, target_words, chunk, chunks[:number], radius, second is None))
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return Pairs(empty, empty, np.zeros(0, dtype=np.int16))
    return Pairs(*(np.concatenate(column) for column in zip(*found, strict=True)))


@dataclass(frozen=True)
class Selection:
    """Which of a run of hashes a greedy pass keeps, and for each one dropped, the kept hash it copies."""

    nearest_kept: np.ndarray  # per position: -1 where kept, else the position of the nearest kept hash
    hash_ids: np.ndarray  # per position: positions with equal ids have equal hashes

    @property
    def dropped(self) -> np.ndarray:
        """Positions dropped, in order."""
        return np.flatnonzero(self.nearest_kept >= 0)

    def kept_twins(self, position: int) -> list[int]:
        """Kept positions with exactly the hash at `position`, in order: the suspects for an exact copy."""
        kept_ids, kept_positions = self._kept_by_hash
        hash_id = self.hash_ids[position]
        low, high = np.searchsorted(kept_ids, [hash_id, hash_id + 1])
        return kept_positions[low:high].tolist()

    @functools.cached_property
    def _kept_by_hash(self) -> tuple[np.ndarray, np.ndarray]:
        kept = np.flatnonzero(self.nearest_kept < 0)
        order = np.argsort(self.hash_ids[kept], kind="stable")
        return self.hash_ids[kept][order], kept[order]


def keep_first(hashes: Sequence[str] | np.ndarray, radius: int, already_kept: int = 0) -> Selection:
    """Go through `hashes` (hex, of one length, or their `hash_codes`) in order; a hash within `radius` bits of
    one kept before it is dropped, and copies the nearest kept hash (the earliest of equally near ones), else
    it is kept. The first `already_kept` hashes are kept whatever they are: images accepted before this run.

    The outcome equals comparing every hash with every kept one, but only pairs within the radius are
    looked at. Equal hashes are compared once, as one, so a photo present a thousand times costs no more
    than one present twice.
    """
    codes = hashes if isinstance(hashes, np.ndarray) else hash_codes(hashes)
    nearest_kept = np.full(len(codes), -1, dtype=np.int64)
    if not len(codes):
        return Selection(nearest_kept, np.zeros(0, dtype=np.int64))
    unique_codes, first_positions, hash_ids = np.unique(
        codes.view(np.dtype((np.void, codes.shape[1]))).ravel(), return_index=True, return_inverse=True
    )
    hash_ids = hash_ids.ravel()
    if radius < 0 or already_kept >= len(codes):
        return Selection(nearest_kept, hash_ids)
    unique_codes = unique_codes.view(np.uint8).reshape(len(unique_codes), codes.shape[1])
    # The earliest kept position of each hash; a hash first seen among the candidates is kept at its first
    # position or not at all, since any later copy of it meets that one or what dropped it.
    earliest_kept = np.where(first_positions < already_kept, first_positions, -1)
    in_candidates = np.zeros(len(unique_codes), dtype=bool)
    in_candidates[hash_ids[already_kept:]] = True
    # Hashes seen only among the already kept are never compared with each other: nothing they match changes.
    candidate_hashes, kept_only_hashes = np.flatnonzero(in_candidates), np.flatnonzero(~in_candidates)
    among = within(unique_codes[candidate_hashes], None, radius)
    against_kept = within(unique_codes[candidate_hashes], unique_codes[kept_only_hashes], radius)
    neighbours = _Neighbours.of(
        len(unique_codes),
        np.concatenate(
            [candidate_hashes[among.first], candidate_hashes[among.second], candidate_hashes[against_kept.first]]
        ),
        np.concatenate(
            [candidate_hashes[among.second], candidate_hashes[among.first], kept_only_hashes[against_kept.second]]
        ),
        np.concatenate([among.distance, among.distance, against_kept.distance]),
    )

    # A hash with no neighbour is kept at its first position and copied, at distance 0, by every later one.
    positions = np.arange(already_kept, len(codes))
    alone = neighbours.counts[hash_ids[already_kept:]] == 0
    lone_positions = positions[alone]
    lone_first = first_positions[hash_ids[lone_positions]]
    nearest_kept[lone_positions] = np.where(lone_first == lone_positions, -1, lone_first)

    linked_positions = positions[~alone]
    nearest_kept[linked_positions] = _greedy_pass(linked_positions, hash_ids, earliest_kept, neighbours)
    return Selection(nearest_kept, hash_ids)


@dataclass(frozen=True)
class _Neighbours:
    """For each distinct hash, the distinct hashes within the radius and their distances (compressed rows)."""

    starts: np.ndarray
    counts: np.ndarray
    hash_ids: np.ndarray
    distances: np.ndarray

    @classmethod
    def of(cls, size: int, hash_ids: np.ndarray, neighbour_ids: np.ndarray, distances: np.ndarray) -> _Neighbours:
        order = np.argsort(hash_ids, kind="stable")
        counts = np.bincount(hash_ids, minlength=size)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return cls(starts, counts, neighbour_ids[order], distances[order])


def _greedy_pass(
    positions: np.ndarray, hash_ids: np.ndarray, earliest_kept: np.ndarray, neighbours: _Neighbours
) -> list[int]:
    """The nearest kept position for each of `positions` (in order), or -1 where it is kept, given the
    earliest kept position of each distinct hash before them (or -1).

    Sequential by nature, since whether a hash is kept depends on what was kept before it; plain Python
    lists, because this loop reads single elements, which numpy is slow at."""
    earliest = earliest_kept.tolist()
    starts, counts = neighbours.starts.tolist(), neighbours.counts.tolist()
    neighbour_ids, distances = neighbours.hash_ids.tolist(), neighbours.distances.tolist()
    nearest: list[int] = []
    for position, hash_id in zip(positions.tolist(), hash_ids[positions].tolist(), strict=True):
        kept_copy = earliest[hash_id]
        if kept_copy >= 0:
            nearest.append(kept_copy)
            continue
        best: tuple[int, int] | None = None
        start = starts[hash_id]
        for neighbour, distance in zip(
            neighbour_ids[start : start + counts[hash_id]], distances[start : start + counts[hash_id]], strict=True
        ):
            kept = earliest[neighbour]
            if kept >= 0 and (best is None or (distance, kept) < best):
                best = (distance, kept)
        if best is None:
            earliest[hash_id] = position
            nearest.append(-1)
        else:
            nearest.append(best[1])
    return nearest


def _words(codes: np.ndarray) -> list[np.ndarray]:
    """Rows of bytes as 64-bit words (zero-padded in front), one array per word position: gathering from a
    flat array is several times faster than gathering rows."""
    width = -(-codes.shape[1] // 8) * 8
    padded = np.zeros((len(codes), width), dtype=np.uint8)
    padded[:, width - codes.shape[1] :] = codes
    words = padded.view(">u8").astype(np.uint64)
    return [np.ascontiguousarray(words[:, column]) for column in range(words.shape[1])]


def _bit_field(words: Sequence[np.ndarray], start: int, width: int) -> np.ndarray:
    """Bits `start` to `start + width` (at most 63 bits) of each row, as integers."""
    word, offset = divmod(start, 64)
    end = offset + width
    mask = np.uint64((1 << width) - 1)
    if end <= 64:
        return (words[word] >> np.uint64(64 - end)) & mask
    spill = end - 64
    return ((words[word] << np.uint64(spill)) | (words[word + 1] >> np.uint64(64 - spill))) & mask


def _plan(first_bit: int, bits: int, targets: int, radius: int) -> list[_Chunk]:
    """The chunks to index `targets` hashes of `bits` bits by, for pairs within `radius`: of all chunk counts
    that pigeonhole allows, the one with the fewest probes and expected candidates (for spread-out hashes).

    A chunk is at most log2(targets) + 2 bits wide, so a table slot holds a quarter to half a hash on average;
    bits left over are in no chunk, which pigeonhole allows (they only ever add to a distance)."""
    widest = min(MAX_CHUNK_BITS, bits, math.ceil(math.log2(max(targets, 2))) + 2)
    best: tuple[float, list[_Chunk]] | None = None
    for count in range(1, min(radius + 1, bits) + 1):
        widths = [min(widest, bits // count + (part < bits % count)) for part in range(count)]
        # Tolerances as even as the condition sum(tolerance + 1) = radius + 1 allows, the larger ones first.
        base, larger = divmod(radius + 1, count)
        tolerances = [min(width, base if part < larger else base - 1) for part, width in enumerate(widths)]
        cost = sum(
            _flip_count(width, tolerance) * (PROBE_COST + targets / 2**width)
            for width, tolerance in zip(widths, tolerances, strict=True)
        )
        if best is None or cost < best[0]:
            starts = itertools.accumulate(widths[:-1], initial=first_bit)
            best = (cost, [_Chunk(*chunk) for chunk in zip(starts, widths, tolerances, strict=True)])
    assert best is not None
    return best[1]


def _flip_count(width: int, tolerance: int) -> int:
    return sum(math.comb(width, flipped) for flipped in range(tolerance + 1))


def _flips(width: int, tolerance: int) -> np.ndarray:
    """Every mask of `width` bits with at most `tolerance` bits set."""
    return np.array(
        [
            sum(1 << bit for bit in flipped)
            for count in range(tolerance + 1)
            for flipped in itertools.combinations(range(width), count)
        ],
        dtype=np.uint64,
    )


def _matches_in_chunk(
    queries: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    chunk: _Chunk,
    earlier: Sequence[_Chunk],
    radius: int,
    self_join: bool,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pairs within `radius` that `chunk` finds and no `earlier` chunk did, batch by batch."""
    target_keys = _bit_field(targets, chunk.start, chunk.width).astype(np.int64)
    order = np.argsort(target_keys, kind="stable")
    counts = np.bincount(target_keys, minlength=1 << chunk.width)
    starts = np.cumsum(counts) - counts
    # Probes mostly miss; a one-byte table answers that from cache, where the counts would not fit.
    occupied = counts > 0
    query_keys = _bit_field(queries, chunk.start, chunk.width).astype(np.int64)
    flips = _flips(chunk.width, chunk.tolerance).astype(np.int64)
    block = max(1, PROBES_PER_BATCH // len(flips))
    found = []
    for block_start in range(0, len(query_keys), block):
        probes = (query_keys[block_start : block_start + block, None] ^ flips[None, :]).ravel()
        hits = np.flatnonzero(occupied[probes])
        hit_keys = probes[hits]
        hit_counts, hit_starts = counts[hit_keys], starts[hit_keys]
        hit_queries = block_start + hits // len(flips)
        for run in _runs(hit_counts, CANDIDATES_PER_BATCH):
            found.append(
                _check(
                    queries,
                    targets,
                    order,
                    hit_queries[run],
                    hit_starts[run],
                    hit_counts[run],
                    earlier,
                    radius,
                    self_join,
                )
            )
    return found


def _runs(sizes: np.ndarray, limit: int) -> Iterator[slice]:
    """Consecutive runs of `sizes` that add up to about `limit` each (a larger size is a run of its own)."""
    ends = np.cumsum(sizes)
    cuts = np.searchsorted(ends, np.arange(limit, ends[-1] if len(ends) else 0, limit), side="right")
    bounds = np.unique([0, *cuts.tolist(), len(sizes)]).tolist()
    return (slice(low, high) for low, high in itertools.pairwise(bounds))


def _check(
    queries: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    order: np.ndarray,
    hit_queries: np.ndarray,
    hit_starts: np.ndarray,
    hit_counts: np.ndarray,
    earlier: Sequence[_Chunk],
    radius: int,
    self_join: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs of some table hits, kept where they really are within the radius."""
    total = int(hit_counts.sum())
    offsets = np.repeat(hit_starts - (np.cumsum(hit_counts) - hit_counts), hit_counts) + np.arange(total)
    second = order[offsets]
    first = np.repeat(hit_queries, hit_counts)
    if self_join:
        ahead = first < second
        first, second = first[ahead], second[ahead]
    differing = [
        query_word[first] ^ target_word[second] for query_word, target_word in zip(queries, targets, strict=True)
    ]
    distance = np.zeros(len(first), dtype=np.int16)
    for word in differing:
        distance += np.bitwise_count(word)
    close = np.flatnonzero(distance <= radius)
    differing = [word[close] for word in differing]
    first_found_here = np.ones(len(close), dtype=bool)
    for chunk in earlier:
        first_found_here &= np.bitwise_count(_bit_field(differing, chunk.start, chunk.width)) > chunk.tolerance
    close = close[first_found_here]
    return first[close], second[close], distance[close]
