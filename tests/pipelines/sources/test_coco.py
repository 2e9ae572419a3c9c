"""The COCO connector against the sandbox dump host over real HTTP: images stored with their licenses and
Flickr origins, subsets and `max_images`, reruns that add nothing, a cut download resumed, a corrupted zip
refused before anything is registered, a zip slip refused, and the same photo from Flickr and COCO
recognized as one. COCO publishes no checksums: the connector never asks for one, verifies the zips whose
md5s the connection pins, and takes the others unverified with a warning naming their md5s.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from PIL import Image
from sqlalchemy import select

from pipelines.archives import UnsafeArchive
from pipelines.catalog import Catalog, Sighting
from pipelines.catalog import Image as ImageRow
from pipelines.downloads import ChecksumMismatch
from pipelines.http import HttpClient, host_key
from pipelines.settings import Settings
from pipelines.sources import coco, dumps, flickr
from pipelines.sources.dumps import Subset
from pipelines.sources.web import Window, store_candidates
from pipelines.storage import FileStore
from sandbox.coco import SPLITS, archive_md5s
from sandbox.credentials import FLICKR_API_KEY
from sandbox.library import PhotoLibrary
from tests.captures.coco import COCO_LICENSES
from tests.replay import Answer, capture, replaying

ALL_IMAGES = sum(SPLITS.values())
# COCO's license ids as terms of `pipelines.licenses`, read from the URL each entry of `licenses` gives.
COCO_TERMS = {
    1: "CC-BY-NC-SA-2.0",
    2: "CC-BY-NC-2.0",
    3: "CC-BY-NC-ND-2.0",
    4: "CC-BY-2.0",
    5: "CC-BY-SA-2.0",
    6: "CC-BY-ND-2.0",
    7: "public-domain-mark",
    8: "public-domain-mark",
}


@pytest.fixture
def config(sandbox_url: str) -> coco.CocoConfig:
    return coco.CocoConfig(base_url=f"{sandbox_url}/coco")


@pytest.fixture(scope="module")
def stand_in_md5s(library: PhotoLibrary) -> dict[str, str]:
    """The md5s of the stand-in's zips, by file name, as the embedded stack pins them."""
    return archive_md5s(library)


@pytest.fixture
def http(config: coco.CocoConfig, settings: Settings) -> HttpClient:
    return coco.client(config, settings)


@pytest.fixture
def work(settings: Settings) -> Path:
    return dumps.work_dir(settings, coco.SOURCE)


@pytest.fixture
def ingest(config, http, store, catalog, work):
    """`ingest(run_id, **options)` with this test's config, client, lake, catalog and work area."""

    def run(run_id: str = "run-1", **options):
        return coco.ingest(config, http, store, catalog, run_id, work, **options)

    return run


@pytest.fixture(scope="module")
def image_records(sandbox_url: str) -> dict[str, dict]:
    """COCO's image records as the sandbox publishes them, by image id (read here without the connector)."""
    response = requests.get(f"{sandbox_url}/coco/annotations/annotations_trainval2017.zip", timeout=60)
    records = {}
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        for split in SPLITS:
            for record in json.loads(archive.read(f"annotations/instances_{split}.json"))["images"]:
                records[str(record["id"])] = {**record, "split": split}
    return records


def downloads(work: Path) -> list[str]:
    """What is in the work area besides the sightings a plan writes for its parts: the downloads."""
    return sorted(path.name for path in work.iterdir() if not path.name.endswith(".sightings.json"))


def sightings(catalog: Catalog, source: str = coco.SOURCE) -> list[Sighting]:
    with catalog.session() as session:
        return session.scalars(select(Sighting).where(Sighting.source == source).order_by(Sighting.source_id)).all()


def lake_state(store: FileStore, catalog: Catalog) -> tuple[list[str], int, int]:
    return sorted(store.list("raw/")), catalog.count(ImageRow), catalog.count(Sighting)


def test_config_from_a_connection() -> None:
    config = coco.CocoConfig.from_connection(
        SimpleNamespace(host="http://images.cocodataset.org/", extra_dejson={"md5": {"val2017.zip": "a" * 32}})
    )
    assert config.url("zips/val2017.zip") == "http://images.cocodataset.org/zips/val2017.zip"
    assert config.checksums == {"val2017.zip": "a" * 32}
    with pytest.raises(ValueError, match="COCO connection needs host"):
        coco.CocoConfig.from_connection(SimpleNamespace(host=None, extra_dejson={}))


def test_ingest_options_from_dag_params() -> None:
    params = {"connection_id": "coco_default", "splits": ["val2017"], "classes": ["cat"], "max_images": None}
    assert coco.ingest_options(params) == {"subset": Subset(splits=("val2017",), classes=("cat",))}


def test_images_are_stored_with_licenses_and_flickr_origin_and_a_rerun_adds_nothing(
    ingest, store: FileStore, catalog: Catalog, sandbox_url: str, image_records: dict[str, dict]
) -> None:
    counts = ingest()
    assert (counts["stored"], counts["objects_written"], counts["skipped"]) == (ALL_IMAGES, ALL_IMAGES, 0)
    rows = sightings(catalog)
    assert sorted(row.source_id for row in rows) == sorted(image_records)
    for row in rows:
        record = image_records[row.source_id]
        assert row.url == f"{sandbox_url}/coco/zips/{record['split']}.zip#{record['split']}/{record['file_name']}"
        assert (row.license, row.license_text) == (COCO_TERMS[record["license"]], COCO_LICENSES[record["license"]])
        assert row.page_url == record["flickr_url"]
        assert coco.flickr_photo_id(row.page_url) == record["flickr_url"].rsplit("/", 1)[-1].split("_")[0]
    assert {row.license for row in rows} > {"CC-BY-2.0", "public-domain-mark"}
    before = lake_state(store, catalog)
    assert len(before[0]) == ALL_IMAGES

    again = ingest("run-2")
    assert (again["stored"], again["already_known"], again["archives_reused"]) == (0, ALL_IMAGES, 3)
    assert lake_state(store, catalog) == before


def test_grayscale_photos_are_stored_as_they_are(ingest, store: FileStore, catalog: Catalog) -> None:
    ingest(subset=Subset(splits=("val2017",)))
    with catalog.session() as session:
        keys = session.scalars(select(ImageRow.raw_key)).all()
    modes = [Image.open(io.BytesIO(store.get(key))).mode for key in keys]
    assert 0 < modes.count("L") < len(modes)


def test_subset_of_splits_and_categories_and_max_images(
    ingest, catalog: Catalog, image_records: dict[str, dict]
) -> None:
    counts = ingest(subset=Subset(splits=("val2017",), classes=("cat", "cup")))
    val_ids = {image_id for image_id, record in image_records.items() if record["split"] == "val2017"}
    rows = sightings(catalog)
    assert 0 < counts["stored"] == len(rows) < len(val_ids) and {row.source_id for row in rows} <= val_ids
    assert counts["skipped"] == len(val_ids) - len(rows)

    sliced = ingest("run-2", subset=Subset(splits=("train2017",), max_images=5))
    assert sliced["stored"] == 5
    rerun = ingest("run-3", subset=Subset(splits=("train2017",), max_images=5))
    assert (rerun["stored"], rerun["already_known"]) == (0, 5)
    across = ingest("run-4", subset=Subset(max_images=SPLITS["train2017"] + 3))
    assert across["stored"] + across["already_known"] == SPLITS["train2017"] + 3  # on into val2017
    train_ids = {image_id for image_id, record in image_records.items() if record["split"] == "train2017"}
    assert train_ids <= {row.source_id for row in sightings(catalog)}


def test_unknown_splits_and_categories_are_refused_before_image_zips_are_downloaded(ingest, work: Path) -> None:
    with pytest.raises(ValueError, match="no split val2014"):
        ingest(subset=Subset(splits=("val2014",)))
    with pytest.raises(ValueError, match="no category unicorn"):
        ingest(subset=Subset(splits=("val2017",), classes=("unicorn",)))
    assert downloads(work) == ["annotations_trainval2017.zip"]


def test_a_cut_download_resumes_and_verifies(
    config, http, store: FileStore, catalog: Catalog, work: Path, faults, stand_in_md5s: dict[str, str]
) -> None:
    faults(path_prefix="/coco/zips/val2017.zip", kind="truncate", times=2)
    pinned = coco.CocoConfig(base_url=config.base_url, checksums=stand_in_md5s)
    counts = coco.ingest(pinned, http, store, catalog, "run-1", work, subset=Subset(splits=("val2017",)))
    assert counts["resumed_from_bytes"] > 0 and counts["stored"] == SPLITS["val2017"]
    assert downloads(work) == ["annotations_trainval2017.zip", "val2017.zip"]


def test_unpinned_zips_are_taken_with_a_warning_naming_their_md5s(
    ingest, work: Path, stand_in_md5s: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """COCO publishes no checksums: without a pin a zip cannot be verified, and the operator is told what to pin."""
    with caplog.at_level(logging.WARNING, logger="pipelines.sources.dumps"):
        counts = ingest(subset=Subset(splits=("val2017",)))
    assert counts["stored"] == SPLITS["val2017"]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2
    for name, warning in zip(["annotations_trainval2017.zip", "val2017.zip"], warnings, strict=True):
        assert "unverified" in warning and f'"{name}": "{stand_in_md5s[name]}"' in warning
        assert hashlib.md5((work / name).read_bytes()).hexdigest() == stand_in_md5s[name]


def test_only_zips_are_asked_for_never_a_checksum_file(
    sandbox_url: str, stand_in_md5s: dict[str, str], store: FileStore, catalog: Catalog, work: Path, tmp_path: Path
) -> None:
    """Replayed by a host that serves only the zips and counts every request, the connector asks for each zip
    once and nothing else, pinned or not."""
    paths = ("/annotations/annotations_trainval2017.zip", "/zips/val2017.zip")
    zips = {path: requests.get(f"{sandbox_url}/coco{path}", timeout=60).content for path in paths}
    asked: list[str] = []

    def host(path: str, query: dict[str, str]) -> Answer:
        asked.append(path)
        if path in zips:
            return Answer(zips[path], content_type="application/zip")
        return Answer(b"<Error><Code>NoSuchKey</Code></Error>", status=404, content_type="application/xml")

    with replaying(host) as base:
        http = coco.client(coco.CocoConfig(base_url=base), Settings(home=tmp_path, http_allowed_hosts=[host_key(base)]))
        for run_id, pins in (("unpinned", {}), ("pinned", stand_in_md5s)):
            asked.clear()
            for downloaded in work.iterdir():
                downloaded.unlink()
            config = coco.CocoConfig(base_url=base, checksums=pins)
            counts = coco.ingest(config, http, store, catalog, run_id, work, subset=Subset(splits=("val2017",)))
            assert counts["stored"] + counts["already_known"] == SPLITS["val2017"]
            assert sorted(asked) == sorted(paths), run_id


def test_cocos_real_license_table_names_a_term_for_every_license(tmp_path: Path) -> None:
    """Replays the real `licenses` and `images` of COCO 2017's person_keypoints_val2017.json (an excerpt kept by
    continental/hybrid_learning, tests/captures/coco/person_keypoints_val2017.excerpt.hybrid_learning.trimmed.json):
    each license's URL names its term, and COCO's own name is kept beside it."""
    document = json.loads(capture("coco/person_keypoints_val2017.excerpt.hybrid_learning.trimmed.json"))
    path = tmp_path / "annotations_trainval2017.zip"
    with zipfile.ZipFile(path, "w") as archive:
        # The excerpt was trimmed of its annotations and categories, which licenses do not depend on.
        archive.writestr(
            "annotations/instances_val2017.json", json.dumps(document | {"annotations": [], "categories": []})
        )
    index = coco.read_annotations(path, "val2017")
    assert {license_id: index.license(license_id) for license_id in COCO_LICENSES} == {
        license_id: (COCO_TERMS[license_id], name) for license_id, name in COCO_LICENSES.items()
    }
    assert [index.license(image["license"]) for image in index.images.values()] == [
        ("CC-BY-2.0", "Attribution License")
    ] * 3


def test_a_corrupted_zip_is_refused_before_anything_is_registered(
    sandbox_url: str, config, http: HttpClient, store: FileStore, catalog: Catalog, work: Path, stand_in_md5s
) -> None:
    """The annotations and train2017 are intact (fetched from the good host before), only val2017 comes broken:
    train2017's images are not registered either, because every zip is verified before the first image."""
    pinned = coco.CocoConfig(base_url=config.base_url, checksums=stand_in_md5s)
    for path in ("annotations/annotations_trainval2017.zip", "zips/train2017.zip"):
        dumps.fetch_verified(pinned, http, config.url(path), work)
    broken_mirror = coco.CocoConfig(base_url=f"{sandbox_url}/coco/corrupt", checksums=stand_in_md5s)
    with pytest.raises(ChecksumMismatch, match=r"corrupt/zips/val2017\.zip: the md5 of the download is"):
        coco.ingest(broken_mirror, http, store, catalog, "run-1", work)
    assert lake_state(store, catalog) == ([], 0, 0)
    assert downloads(work) == ["annotations_trainval2017.zip", "train2017.zip"]


def test_a_zip_slip_is_refused_with_the_zips_name_and_writes_nothing(
    ingest, config, http, store: FileStore, catalog: Catalog, work: Path, tmp_path: Path, sandbox_url: str
) -> None:
    """Every central-directory entry is checked before the first member is read: nothing is registered."""
    good = requests.get(f"{sandbox_url}/coco/zips/val2017.zip", timeout=60).content
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(buffer, "w") as hostile:
        for info in source.infolist():
            hostile.writestr(info, source.read(info))
        hostile.writestr("../../../../slipped.jpg", source.read(source.infolist()[1]))
    data = buffer.getvalue()
    (work / "val2017.zip").write_bytes(data)
    pinned = coco.CocoConfig(base_url=config.base_url, checksums={"val2017.zip": hashlib.md5(data).hexdigest()})
    with pytest.raises(UnsafeArchive, match=r"val2017\.zip.*\.\.") as raised:
        coco.ingest(pinned, http, store, catalog, "run-1", work, subset=Subset(splits=("val2017",)))
    assert "slipped.jpg" in str(raised.value)
    assert lake_state(store, catalog) == ([], 0, 0)
    assert not (work / "../../../../slipped.jpg").resolve().exists() and not list(tmp_path.rglob("slipped.jpg"))


def test_the_same_photo_from_flickr_and_coco_is_recognized_as_one(
    ingest, sandbox_url: str, settings: Settings, store: FileStore, catalog: Catalog
) -> None:
    """COCO's copy has other bytes than Flickr's, so content addressing alone cannot tell; the Flickr id can."""
    ingest(subset=Subset(splits=("val2017",)))
    coco_rows = sightings(catalog)
    origins = {row.source_id: coco.flickr_photo_id(row.page_url) for row in coco_rows}

    # The Flickr connector collects the last month's photos, of which it stores a few of COCO's.
    flickr_config = flickr.FlickrConfig(rest_url=f"{sandbox_url}/flickr/services/rest/", api_key=FLICKR_API_KEY)
    flickr_http = flickr.client(flickr_config, settings)
    midnight = datetime.combine(PhotoLibrary().anchor, clock(), tzinfo=UTC)
    found = flickr.discover(flickr_config, flickr_http, Window(midnight - timedelta(days=31), midnight), ["photo"])
    wanted = set(origins.values())
    shared = [candidate for candidate in found if candidate.source_id in wanted][:4]
    assert len(shared) == 4  # photos under a license both COCO and the Flickr allow-list accept
    store_candidates(shared, lambda c: flickr.fetch(flickr_config, flickr_http, c), store, catalog, "flickr-run")

    twins = coco.flickr_twins(catalog)
    assert sorted(twins.values()) == sorted(candidate.source_id for candidate in shared)
    assert all(origins[coco_id] == flickr_id for coco_id, flickr_id in twins.items())
    with catalog.session() as session:
        images = dict(session.execute(select(Sighting.source_id, Sighting.image_sha256)).tuples().all())
    assert all(images[coco_id] != images[flickr_id] for coco_id, flickr_id in twins.items())  # different bytes


def test_flickr_photo_ids_are_read_from_image_and_page_urls() -> None:
    assert coco.flickr_photo_id("http://farm4.staticflickr.com/3153/2970773875_164f0c0b83_z.jpg") == "2970773875"
    assert coco.flickr_photo_id("https://live.staticflickr.com/65535/53961851855_6494d26307.jpg") == "53961851855"
    assert coco.flickr_photo_id("https://www.flickr.com/photos/12345678@N05/53961851855/") == "53961851855"
    assert coco.flickr_photo_id("http://images.cocodataset.org/val2017/000000397133.jpg") is None
    assert coco.flickr_photo_id(None) is None
