"""The raw zone: content-addressed keys, formats judged by content, reruns that change nothing."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pipelines.catalog import Catalog, Sighting, SightingRecord
from pipelines.catalog import Image as ImageRow
from pipelines.raw_zone import content_digest, ingest_photo, raw_key, sniff_extension
from pipelines.storage import FileStore


def encoded(image_format: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (32, 24), "orange").save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "hint", "expected"),
    [
        (encoded("JPEG"), "x.jpeg", "jpg"),
        (encoded("PNG"), "photo.jpg", "png"),  # content wins over a misleading name
        (encoded("WEBP"), None, "webp"),
        (encoded("TIFF"), "scan.tif", "tif"),
        (b"<html><body>Please log in</body></html>", "photo.jpg", "jpg"),
        (b"", "empty.png", "png"),
        (b"\x00\x01garbage", None, "bin"),
        (b"\x00\x01garbage", "../../etc/passwd", "bin"),
    ],
)
def test_sniff_extension(data: bytes, hint: str | None, expected: str) -> None:
    assert sniff_extension(data, fallback=hint.rpartition(".")[2] if hint else None) == expected


def test_ingest_stores_once_and_records_every_source(lake: tuple[FileStore, Catalog]) -> None:
    store, catalog = lake
    photo = encoded("JPEG")
    first = ingest_photo(store, catalog, photo, SightingRecord("unsplash", "u1", "https://u/1"), run_id="r1")
    assert first.key == raw_key(content_digest(photo), "jpg") == f"raw/{first.sha256[:2]}/{first.sha256}.jpg"
    assert (first.object_written, first.image_added, first.sighting_added) == (True, True, True)
    assert store.get(first.key) == photo

    rerun = ingest_photo(store, catalog, photo, SightingRecord("unsplash", "u1", "https://u/1"), run_id="r2")
    assert (rerun.object_written, rerun.image_added, rerun.sighting_added) == (False, False, False)

    elsewhere = ingest_photo(store, catalog, photo, SightingRecord("flickr", "f9", "https://f/9"), run_id="r3")
    assert (elsewhere.object_written, elsewhere.image_added, elsewhere.sighting_added) == (False, False, True)
    assert list(store.list("raw/")) == [first.key]
    assert catalog.count(ImageRow) == 1
    assert catalog.count(Sighting) == 2
