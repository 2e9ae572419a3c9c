"""The images of a dataset version: accepted images chosen from the catalog by the filters, one kept per
photo when the same photo reached the lake from several sources, and each given its split by its content
hash."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as clock_time

from sqlalchemy import select

from pipelines.catalog import Catalog, Image, ImageStatus, Sighting
from pipelines.near_duplicates import keep_first
from pipelines.stitch.params import ShardParams

QUERY_BATCH_ROWS = 10_000  # rows fetched from the catalog at a time when streaming candidates


@dataclass(frozen=True)
class DatasetImage:
    """One image of a dataset version: its bytes' address and where it goes."""

    sha256: str
    raw_key: str
    format: str
    sources: tuple[str, ...]
    split: str = ""


@dataclass(frozen=True)
class AcceptedImage:
    """An accepted image before de-duplication, with what the choice between copies looks at."""

    member: DatasetImage
    phash: str | None
    first_seen_at: datetime


def split_of(sha256: str, split_ratios: Sequence[tuple[str, float]]) -> str:
    """The split an image belongs to, from its content hash alone: it never moves as the dataset grows, and
    a photo met again from another source lands where it was."""
    position = int(sha256[:15], 16) / 16**15
    cumulative = 0.0
    for name, ratio in split_ratios:
        cumulative += ratio
        if position < cumulative:
            return name
    return split_ratios[-1][0]


def select_accepted(catalog: Catalog, params: ShardParams) -> list[AcceptedImage]:
    """Accepted images with at least one sighting inside the filters, each with every source it came from."""
    query = (
        select(Image.sha256, Image.raw_key, Image.format, Image.phash, Image.first_seen_at, Sighting.source)
        .join(Sighting, Sighting.image_sha256 == Image.sha256)
        .where(Image.status == ImageStatus.ACCEPTED)
    )
    if params.sources:
        query = query.where(Sighting.source.in_(params.sources))
    if params.since:
        query = query.where(Sighting.fetched_at >= datetime.combine(params.since, clock_time(), UTC))
    if params.until:
        query = query.where(Sighting.fetched_at < datetime.combine(params.until, clock_time(), UTC))
    # In sha256 order (the index's own), an image's sightings arrive together: each image is built once,
    # streamed from the cursor, without holding every row first.
    query = query.order_by(Image.sha256).execution_options(yield_per=QUERY_BATCH_ROWS)
    accepted: list[AcceptedImage] = []
    with catalog.session() as session:
        for sha256, group in itertools.groupby(session.execute(query), key=lambda row: row[0]):
            rows = list(group)
            first = rows[0]
            member = DatasetImage(sha256, first.raw_key, first.format, tuple(sorted({row.source for row in rows})))
            accepted.append(AcceptedImage(member=member, phash=first.phash, first_seen_at=first.first_seen_at))
    return accepted


def drop_near_duplicates(
    candidates: Iterable[AcceptedImage], max_distance: int
) -> tuple[list[AcceptedImage], dict[str, str]]:
    """Keep one image per photo: the first seen (so a growing dataset keeps the members it had), dropping
    any whose perceptual hash is within `max_distance` bits of a kept one. Identical bytes are one image
    already (the lake is content-addressed); this catches the same photo re-encoded or resized by another
    source, which the quality stage can miss when two sources were validated at the same time.

    Returns the kept candidates and, for each dropped image, the image it copies."""
    ordered = sorted(candidates, key=lambda candidate: (candidate.first_seen_at, candidate.member.sha256))
    # Hashes of different lengths are never alike; each length is its own greedy pass.
    by_hash_length: dict[int, list[tuple[str, str]]] = {}
    for candidate in ordered:
        if candidate.phash:
            by_hash_length.setdefault(len(candidate.phash), []).append((candidate.phash, candidate.member.sha256))
    originals: dict[str, str] = {}
    for group in by_hash_length.values():
        selection = keep_first([phash for phash, _ in group], max_distance)
        for position in selection.dropped.tolist():
            originals[group[position][1]] = group[selection.nearest_kept[position]][1]
    kept = [candidate for candidate in ordered if candidate.member.sha256 not in originals]
    dropped = {
        candidate.member.sha256: originals[candidate.member.sha256]
        for candidate in ordered
        if candidate.member.sha256 in originals
    }
    return kept, dropped
