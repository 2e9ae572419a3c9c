"""The sandbox's photos: real, distinct, deterministic, and dated into recent days."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, date, datetime, timedelta

from PIL import Image

from sandbox.library import DAYS_SPANNED, PhotoLibrary


def test_a_few_hundred_distinct_color_photos() -> None:
    library = PhotoLibrary(anchor=date(2026, 11, 23))
    digests = {hashlib.sha256(library.encode(photo.number)).hexdigest() for photo in library.photos}
    assert len(library.photos) >= 300
    assert len(digests) == len(library.photos)
    image = Image.open(io.BytesIO(library.encode(0)))
    assert image.format == "JPEG" and image.mode == "RGB" and max(image.size) <= 640


def test_metadata_is_deterministic_and_recent() -> None:
    first, second = PhotoLibrary(anchor=date(2026, 11, 23)), PhotoLibrary(anchor=date(2026, 11, 23))
    assert first.photos == second.photos
    anchor = datetime(2026, 11, 23, tzinfo=UTC)
    assert all(anchor - timedelta(days=DAYS_SPANNED) <= photo.created_at < anchor for photo in first.photos)
    per_day = {photo.created_at.date() for photo in first.photos}
    assert len(per_day) == DAYS_SPANNED


def test_search_and_resizing() -> None:
    library = PhotoLibrary(anchor=date(2026, 11, 23))
    cats = library.search("Cat")
    assert cats and all("cat" in photo.keywords for photo in cats)
    assert [photo.created_at for photo in cats] == sorted((photo.created_at for photo in cats), reverse=True)
    assert library.search("no-such-thing") == []
    small = Image.open(io.BytesIO(library.encode(cats[0].number, width=100, image_format="PNG")))
    assert small.format == "PNG" and small.width == 100


def test_size_matches_the_rendered_photo_without_rendering() -> None:
    library = PhotoLibrary(anchor=date(2026, 11, 23))
    for number in (0, 7, 100, 359):
        assert library.size(number) == library.image(number).size


def test_a_larger_library_on_request_stays_distinct(monkeypatch) -> None:
    monkeypatch.setenv("COLORFLOW_SANDBOX_VARIANTS", "600")
    library = PhotoLibrary(anchor=date(2026, 11, 23))
    assert len(library.photos) == 600 * 9
    # Variants 110 apart share crop window, mirror and hue turn: only the tighter crop tells them apart.
    same_recipe = [photo.number for photo in library.photos if photo.base == "coffee.png" and photo.variant % 110 == 7]
    assert len(same_recipe) == 6
    assert len({hashlib.sha256(library.encode(number)).hexdigest() for number in same_recipe}) == 6
