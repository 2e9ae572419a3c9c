"""The images waiting for a verdict: each pending image with every sighting's source and license."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from pipelines.catalog import Catalog, Image, ImageStatus, Sighting

PAGE_IMAGES = 10_000
# Sightings are looked up for this many images per statement: SQLite allows 32,766 bound parameters.
SIGHTING_LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class Offer:
    """One sighting of an image, reduced to what quality needs: who offered it, under what license (a term of
    `pipelines.licenses`, and the source's own words)."""

    source: str
    license: str | None
    license_text: str | None = None


@dataclass(frozen=True)
class PendingImage:
    """An image waiting for its verdict, with every sighting's source and license."""

    sha256: str
    raw_key: str
    first_seen_at: datetime
    offers: tuple[Offer, ...]

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(sorted({offer.source for offer in self.offers}))


def pending_images(catalog: Catalog, limit: int | None = None) -> list[PendingImage]:
    """Images not judged yet, in sha256 order: arbitrary but fixed, so a limited run is reproducible."""
    return [image for page in pending_pages(catalog, PAGE_IMAGES, limit) for image in page]


def pending_pages(catalog: Catalog, page_images: int, limit: int | None = None) -> Iterator[list[PendingImage]]:
    """`pending_images` a page at a time, so a batch of a million never sits in memory whole.

    Each page starts after the last sha256 of the one before (keyset paging on the status-and-sha256
    index), so a page costs the same however deep into the batch it lies.
    """
    after, remaining = "", limit
    while remaining is None or remaining > 0:
        size = page_images if remaining is None else min(page_images, remaining)
        page = _pending_page(catalog, after, size)
        if not page:
            return
        yield page
        after = page[-1].sha256
        remaining = None if remaining is None else remaining - len(page)


def _pending_page(catalog: Catalog, after: str, size: int) -> list[PendingImage]:
    with catalog.session() as session:
        images = session.execute(
            select(Image.sha256, Image.raw_key, Image.first_seen_at)
            .where(Image.status == ImageStatus.PENDING, Image.sha256 > after)
            .order_by(Image.sha256)
            .limit(size)
        ).all()
        offers: dict[str, list[Offer]] = defaultdict(list)
        hashes = [sha256 for sha256, _, _ in images]
        for start in range(0, len(hashes), SIGHTING_LOOKUP_CHUNK):
            chunk = hashes[start : start + SIGHTING_LOOKUP_CHUNK]
            sightings = (
                select(Sighting.image_sha256, Sighting.source, Sighting.license, Sighting.license_text)
                .where(Sighting.image_sha256.in_(chunk))
                .order_by(Sighting.image_sha256, Sighting.source, Sighting.source_id)
            )
            for sha256, source, term, words in session.execute(sightings):
                offers[sha256].append(Offer(source, term, words))
    return [PendingImage(sha256, key, seen, tuple(offers[sha256])) for sha256, key, seen in images]
