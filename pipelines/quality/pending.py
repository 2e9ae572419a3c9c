"""The images waiting for a verdict: each pending image with every sighting's source and license."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from pipelines.catalog import Catalog, Image, ImageStatus, Sighting


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
    with catalog.session() as session:
        query = (
            select(Image.sha256, Image.raw_key, Image.first_seen_at)
            .where(Image.status == ImageStatus.PENDING)
            .order_by(Image.sha256)
        )
        if limit is not None:
            query = query.limit(limit)
        images = session.execute(query).all()
        offers: dict[str, list[Offer]] = defaultdict(list)
        hashes = [sha256 for sha256, _, _ in images]
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            sightings = (
                select(Sighting.image_sha256, Sighting.source, Sighting.license, Sighting.license_text)
                .where(Sighting.image_sha256.in_(chunk))
                .order_by(Sighting.image_sha256, Sighting.source, Sighting.source_id)
            )
            for sha256, source, term, words in session.execute(sightings):
                offers[sha256].append(Offer(source, term, words))
    return [PendingImage(sha256, key, seen, tuple(offers[sha256])) for sha256, key, seen in images]
