"""Dataset cards, written by a real build after the real quality stage: every sighting under a Creative
Commons BY or BY-SA license is credited (both sightings of a photo two sources offered), nothing else is;
the counts agree with the manifest; the limitations come from the version's own numbers; a version
published before cards existed gets one from `colorflow dataset card`. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import update

from pipelines.catalog import Catalog, SightingRecord
from pipelines.catalog import Image as ImageRow
from pipelines.quality import validate_batch
from pipelines.raw_zone import ingest_photo
from pipelines.settings import get_settings
from pipelines.stitch import ShardParams, card_keys, cli, load_card, stitch_dataset
from pipelines.stitch import card as card_module
from pipelines.storage import FileStore
from sandbox.library import PhotoLibrary

LIBRARY = PhotoLibrary()
SMALL = ShardParams(load_size=64, shard_size=2, split_ratios=(("train", 0.5), ("val", 0.25), ("test", 0.25)))
# (library photo, sighting), all different photos: photo 6 reaches the lake from two sources under two licenses.
OFFERS = [
    (
        0,
        SightingRecord(
            "flickr",
            "f0",
            "https://live.staticflickr.com/f0.jpg",
            page_url="https://www.flickr.com/photos/ada/f0",
            author="Ada [Lovelace]",
            author_url="https://www.flickr.com/people/ada",
            license="CC-BY-2.0",
        ),
    ),
    (1, SightingRecord("flickr", "f1", "https://live.staticflickr.com/f1.jpg", author="Bob", license="CC-BY-SA-2.0")),
    (2, SightingRecord("unsplash", "u2", "https://images.unsplash.com/u2", author="Cy", license="Unsplash")),
    (3, SightingRecord("coco", "c3", "http://images.cocodataset.org/c3.jpg", license="CC0-1.0")),
    (4, SightingRecord("local", "l4", "file:///photos/l4.jpg")),
    (6, SightingRecord("flickr", "f5", "https://live.staticflickr.com/f5.jpg", author="Dee", license="CC-BY-4.0")),
    (6, SightingRecord("coco", "c5", "http://images.cocodataset.org/c5.jpg", author="Dee", license="CC-BY-SA-4.0")),
    # Not allowed for training: rejected by the quality stage, so never a member and never credited.
    (7, SightingRecord("flickr", "f6", "https://live.staticflickr.com/f6.jpg", author="Eve", license="CC-BY-NC-2.0")),
]
CREDITED = {
    ("flickr", "f0", "Ada [Lovelace]", "https://www.flickr.com/photos/ada/f0", "CC-BY-2.0"),
    ("flickr", "f1", "Bob", "https://live.staticflickr.com/f1.jpg", "CC-BY-SA-2.0"),
    ("flickr", "f5", "Dee", "https://live.staticflickr.com/f5.jpg", "CC-BY-4.0"),
    ("coco", "c5", "Dee", "http://images.cocodataset.org/c5.jpg", "CC-BY-SA-4.0"),
}


@pytest.fixture
def catalog(sqlite_or_postgres_catalog: Catalog) -> Catalog:
    """The card's queries on both engines the catalog runs on."""
    return sqlite_or_postgres_catalog


@pytest.fixture
def published(store: FileStore, catalog: Catalog) -> dict:
    """A version built from OFFERS after validation, plus one accepted image no writer can decode."""
    for photo, sighting in OFFERS:
        ingest_photo(store, catalog, LIBRARY.encode(photo), sighting, run_id="ingest", name_hint="p.jpg")
    validate_batch(store, catalog, "validate-1")
    cut = SightingRecord("unsplash", "cut", "https://images.unsplash.com/cut", author="Fay", license="Unsplash")
    broken = ingest_photo(store, catalog, LIBRARY.encode(8)[:5000], cut, run_id="ingest").sha256
    with catalog.session() as session:
        session.execute(update(ImageRow).where(ImageRow.sha256 == broken).values(status="accepted"))
    return stitch_dataset(store, catalog, SMALL)


@pytest.fixture
def settings_of(store: FileStore, catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The commands read this test's lake and catalog from the environment, as a deployment's would."""
    monkeypatch.setenv("COLORFLOW_LAKE_URL", store.url)
    monkeypatch.setenv("COLORFLOW_CATALOG_URL", catalog.url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_card_credits_every_cc_by_sighting_and_agrees_with_the_manifest(store: FileStore, published: dict) -> None:
    card = load_card(store, published["version"])

    assert card["samples"] == published["sample_count"] == 6
    assert card["splits"] == published["splits"] and card["shards"] == len(published["shards"])
    assert card["source_mix"] == published["source_mix"]
    assert card["quality"]["left_out"] == {"cannot decode jpg": 1} and len(published["failures"]) == 1
    assert {source: counts["images"] for source, counts in card["sources"].items()} == {
        "coco": 2,
        "flickr": 3,
        "local": 1,
        "unsplash": 1,
    }
    assert card["sources"]["local"]["without_license"] == 1 and card["images_without_license"] == 1
    assert {label: counts["attribution_required"] for label, counts in card["licenses"].items()} == {
        "CC-BY-2.0": True,
        "CC-BY-SA-2.0": True,
        "CC-BY-4.0": True,
        "CC-BY-SA-4.0": True,
        "CC0-1.0": False,
        "Unsplash": False,
        "none recorded": False,
    }
    credits = {(a["source"], a["source_id"], a["author"], a["link"], a["license"]) for a in card["attributions"]}
    assert credits == CREDITED and card["credits_required"] == len(card["attributions"]) == 4
    twice = [a["sha256"] for a in card["attributions"] if a["source_id"] in ("f5", "c5")]
    assert len(twice) == 2 and twice[0] == twice[1]
    checks = card["quality"]["checks"]
    assert {"decodes", "license", "min_width"} <= set(checks)
    assert all(counts == {"passed": 6, "failed": 0} for counts in checks.values())
    assert card["quality"]["images"]["formats"] == {"jpg": 6}
    limitations = " ".join(card["limitations"])
    assert "Small: 6 images" in limitations and "a license for 1 of the images" in limitations
    assert "come from local" in limitations

    markdown = store.get(card_keys(published["version"])["card.md"]).decode()
    assert "| samples | 6 |" in markdown and "| local | 1 | 1 | 1 |" in markdown
    credit_lines = markdown.split("## Attribution", 1)[1].splitlines()
    assert len([line for line in credit_lines if line.startswith("- ")]) == 4
    assert "- flickr f0 by [Ada \\[Lovelace\\]](<https://www.flickr.com/people/ada>)" in markdown
    assert all(link in markdown for _, _, _, link, _ in CREDITED) and "Eve" not in markdown


def test_a_card_streams_its_credits_in_batches(
    store: FileStore, catalog: Catalog, published: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = load_card(store, published["version"])["attributions"]
    monkeypatch.setattr(card_module, "ATTRIBUTION_BATCH_ROWS", 3)

    card_module.write_card(store, catalog, published)

    assert load_card(store, published["version"])["attributions"] == whole


def test_a_version_published_before_cards_gets_one_on_demand(
    store: FileStore, published: dict, settings_of: None, capsys: pytest.CaptureFixture[str]
) -> None:
    version = published["version"]
    written = load_card(store, version)
    for key in card_keys(version).values():
        store.delete(key)

    assert cli.main(["show", version]) == 0
    assert f"`colorflow dataset card {version}` writes it" in capsys.readouterr().out

    assert cli.main(["card", version]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [store.uri(key) for key in card_keys(version).values()]
    renewed = load_card(store, version)
    assert {**renewed, "written_at": None} == {**written, "written_at": None}

    assert cli.main(["show", version]) == 0
    assert f"card: {store.uri(card_keys(version)['card.md'])}" in capsys.readouterr().out
