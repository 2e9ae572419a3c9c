"""The stitch's two passes over the catalog, on SQLite (through the cursor) and PostgreSQL (through COPY and
a CSV parser): the same rows give the same images on both, and a catalog that changes between the passes is
caught rather than built from."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from pipelines.catalog import Catalog, Image, NewImage, SightingRecord
from pipelines.stitch import ShardParams
from pipelines.stitch.select import keep_one_per_photo, split_of, stream_members

PHOTOS = [f"{number:x}" * 64 for number in range(3)]
ODD_KEYS = [f'raw/{sha[:2]}/{sha},odd "key".jpg' for sha in PHOTOS]  # commas and quotes: CSV's hard cases


@pytest.fixture
def catalog(sqlite_or_postgres_catalog: Catalog) -> Catalog:
    """Three images: the first two accepted, the second first seen earliest and the first with a pHash and
    two sightings from flickr besides its unsplash one."""
    catalog = sqlite_or_postgres_catalog
    catalog.add_images([NewImage(sha, key, "jpg", 1) for sha, key in zip(PHOTOS, ODD_KEYS, strict=True)])
    sightings = [(sha, SightingRecord("unsplash", sha[-6:], f"https://u.example/{sha}")) for sha in PHOTOS]
    sightings += [(PHOTOS[0], SightingRecord("flickr", source_id, "https://f.example/p")) for source_id in "ab"]
    catalog.add_sightings(sightings, "run")
    with catalog.session() as session:
        session.execute(update(Image).where(Image.sha256.in_(PHOTOS[:2])).values(status="accepted"))
        session.execute(update(Image).where(Image.sha256 == PHOTOS[0]).values(phash="f0f0f0f0f0f0f0f0"))
        earliest = datetime(2026, 5, 1, 12, 30, 15, 250_000, tzinfo=UTC)
        session.execute(update(Image).where(Image.sha256 == PHOTOS[1]).values(first_seen_at=earliest))
    return catalog


def test_both_passes_read_the_rows_as_written(catalog: Catalog) -> None:
    params = ShardParams()
    one_per_photo = keep_one_per_photo(catalog, params)
    assert one_per_photo.kept == PHOTOS[:2] and one_per_photo.dropped == {}

    members = list(stream_members(catalog, params, one_per_photo.kept))

    assert [member.sha256 for member in members] == PHOTOS[:2]
    assert [member.raw_key for member in members] == ODD_KEYS[:2]
    assert [member.format for member in members] == ["jpg", "jpg"]
    assert [member.sources for member in members] == [("flickr", "unsplash"), ("unsplash",)]
    assert [member.split for member in members] == [split_of(sha, params.split_ratios) for sha in PHOTOS[:2]]
    flickr = ShardParams(sources=("flickr",))
    assert keep_one_per_photo(catalog, flickr).kept == PHOTOS[:1]


def test_a_near_copy_gives_way_to_the_image_first_seen(catalog: Catalog) -> None:
    with catalog.session() as session:
        session.execute(update(Image).where(Image.sha256 == PHOTOS[1]).values(phash="f0f0f0f0f0f0f0f1"))

    one_per_photo = keep_one_per_photo(catalog, ShardParams(near_duplicate_distance=2))

    assert one_per_photo.kept == [PHOTOS[1]] and one_per_photo.dropped == {PHOTOS[0]: PHOTOS[1]}


def test_an_image_that_leaves_the_accepted_set_between_the_passes_stops_the_plan(catalog: Catalog) -> None:
    kept = keep_one_per_photo(catalog, ShardParams()).kept
    with catalog.session() as session:
        session.execute(update(Image).where(Image.sha256 == PHOTOS[0]).values(status="rejected"))

    with pytest.raises(RuntimeError, match=f"image {PHOTOS[0]} stopped being accepted"):
        list(stream_members(catalog, ShardParams(), kept))
