"""The ImageNet connector against the sandbox dump host over real HTTP: Imagenette and ILSVRC2012 stored with
catalog rows and license, subsets and `max_images`, reruns that add nothing, a cut download resumed and
verified, a corrupted archive refused before anything is registered, hostile archives refused, and the
CMYK and PNG oddities stored untouched yet decodable. The stand-in's archives are not the published ones, so
the connection pins their md5s, as an operator pins a mirror's; without that pin torchvision's md5s pinned in
the connector apply, and no checksum file is ever asked for.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import multiprocessing
import os
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from PIL import Image
from sqlalchemy import select

from pipelines.archives import CorruptArchive, UnsafeArchive
from pipelines.catalog import Catalog, Sighting
from pipelines.catalog import Image as ImageRow
from pipelines.downloads import ChecksumMismatch
from pipelines.http import HttpClient, host_key
from pipelines.settings import Settings
from pipelines.sources import dumps, imagenet
from pipelines.sources.dumps import Subset
from pipelines.storage import FileStore
from sandbox.imagenet import ILSVRC_VAL_IMAGES, ILSVRC_WNIDS, IMAGENETTE_WNIDS, archive_md5s
from sandbox.library import PhotoLibrary
from tests.replay import Answer, capture, replaying

IMAGENETTE_IMAGES = 80  # 10 classes x (6 train + 2 val)
ILSVRC_TRAIN_IMAGES = 50  # 10 classes x 5


@pytest.fixture(scope="module")
def stand_in_md5s(library: PhotoLibrary) -> dict[str, str]:
    """The md5s of the stand-in's archives, by file name, as the embedded stack pins them."""
    return archive_md5s(library)


@pytest.fixture
def config(sandbox_url: str, stand_in_md5s: dict[str, str]) -> imagenet.ImageNetConfig:
    return imagenet.ImageNetConfig(base_url=f"{sandbox_url}/imagenet", checksums=stand_in_md5s)


@pytest.fixture
def http(config: imagenet.ImageNetConfig, settings: Settings) -> HttpClient:
    return imagenet.client(config, settings)


@pytest.fixture
def work(settings: Settings) -> Path:
    return dumps.work_dir(settings, imagenet.SOURCE)


@pytest.fixture
def ingest(config, http, store, catalog, work):
    """`ingest(run_id, **options)` with this test's config, client, lake, catalog and work area."""

    def run(run_id: str = "run-1", **options):
        return imagenet.ingest(config, http, store, catalog, run_id, work, **options)

    return run


def sightings(catalog: Catalog) -> list[Sighting]:
    with catalog.session() as session:
        return session.scalars(select(Sighting).order_by(Sighting.source_id)).all()


def lake_state(store: FileStore, catalog: Catalog) -> tuple[list[str], int, int]:
    return sorted(store.list("raw/")), catalog.count(ImageRow), catalog.count(Sighting)


def test_config_from_a_connection() -> None:
    connection = SimpleNamespace(
        host="s3.amazonaws.com/fast-ai-imageclas/",
        extra_dejson={
            "md5": {"ILSVRC2012_img_val.tar": "29B22E2961454D5413DDABCF34FC5622"},
            "ilsvrc_url": "https://x/",
        },
    )
    config = imagenet.ImageNetConfig.from_connection(connection)
    assert config.base_url == "https://s3.amazonaws.com/fast-ai-imageclas"
    assert config.url("imagenette2-160.tgz") == "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
    assert config.ilsvrc("ILSVRC2012_img_val.tar") == "https://x/ILSVRC2012_img_val.tar"
    assert config.checksums == {"ILSVRC2012_img_val.tar": "29B22E2961454D5413DDABCF34FC5622"}
    with pytest.raises(ValueError, match="host"):
        imagenet.ImageNetConfig.from_connection(SimpleNamespace(host="", extra_dejson={}))
    with pytest.raises(ValueError, match="md5"):
        imagenet.ImageNetConfig.from_connection(SimpleNamespace(host="h", extra_dejson={"md5": {"a.tar": "nope"}}))


def test_the_work_area_is_the_same_folder_on_every_try(settings: Settings) -> None:
    assert (
        dumps.work_dir(settings, "imagenet") == dumps.work_dir(settings, "imagenet") == settings.home / "work/imagenet"
    )
    with pytest.raises(ValueError):
        dumps.work_dir(settings, "../elsewhere")


def test_imagenette_is_stored_with_rows_and_license_and_a_rerun_adds_nothing(
    ingest, store: FileStore, catalog: Catalog, sandbox_url: str
) -> None:
    counts = ingest()
    assert (counts["stored"], counts["objects_written"], counts["skipped"]) == (IMAGENETTE_IMAGES, IMAGENETTE_IMAGES, 1)
    assert counts["archives_reused"] == 0 and counts["archive_bytes"] > 0  # the label CSV was the one skipped
    rows = sightings(catalog)
    assert len(rows) == IMAGENETTE_IMAGES
    for row in rows:
        variant, split, wnid, file_name = row.source_id.split("/")
        assert (variant, row.source) == ("imagenette2-160", "imagenet") and split in ("train", "val")
        assert wnid in IMAGENETTE_WNIDS and file_name.endswith(".JPEG")
        assert row.url == f"{sandbox_url}/imagenet/imagenette2-160.tgz#{row.source_id}"
        assert (row.license, row.license_text) == (None, imagenet.LICENSE_TEXT)
    before = lake_state(store, catalog)
    assert len(before[0]) == IMAGENETTE_IMAGES

    again = ingest("run-2")
    assert (again["stored"], again["already_known"], again["objects_written"]) == (0, IMAGENETTE_IMAGES, 0)
    assert again["archives_reused"] == 1  # verified on disk, not downloaded again
    assert lake_state(store, catalog) == before


def test_subset_of_splits_and_classes_and_max_images(ingest, catalog: Catalog) -> None:
    two_classes = IMAGENETTE_WNIDS[3:5]
    counts = ingest(subset=Subset(splits=("val",), classes=two_classes))
    assert counts["stored"] == 4
    assert {tuple(row.source_id.split("/")[1:3]) for row in sightings(catalog)} == {
        ("val", wnid) for wnid in two_classes
    }

    sliced = Subset(splits=("train",), classes=IMAGENETTE_WNIDS[:1], max_images=3)
    assert ingest("run-2", subset=sliced)["stored"] == 3
    rerun = ingest("run-3", subset=sliced)
    assert (rerun["stored"], rerun["already_known"]) == (0, 3)
    wider = ingest("run-4", subset=Subset(splits=("train",), classes=IMAGENETTE_WNIDS[:1], max_images=5))
    assert (wider["stored"], wider["already_known"]) == (2, 3)  # the slice grows from where it ended
    assert catalog.count(Sighting) == 4 + 5


def test_subset_from_dag_params() -> None:
    assert Subset.from_params("train, val", ["n01440764"], "25") == Subset(("train", "val"), ("n01440764",), 25)
    assert Subset.from_params([], "", None) == Subset() == Subset.from_params(max_images=0)
    with pytest.raises(ValueError, match="selects nothing"):
        Subset(splits=())
    with pytest.raises(ValueError, match="at least 1"):
        Subset(max_images=-1)


def test_ingest_options_from_dag_params() -> None:
    params = {"connection_id": "imagenet_default", "archive": "ILSVRC2012", "splits": ["val"], "classes": []}
    assert imagenet.ingest_options({**params, "max_images": 9}) == {
        "archive": "ILSVRC2012",
        "subset": Subset(splits=("val",), max_images=9),
    }


def test_subset_names_are_checked(ingest) -> None:
    with pytest.raises(ValueError, match="no split test"):
        ingest(subset=Subset(splits=("test",)))
    with pytest.raises(ValueError, match="wnids"):
        ingest(subset=Subset(classes=("tench",)))
    with pytest.raises(ValueError, match="unknown ImageNet archive"):
        ingest(archive="imagenette3")


def test_ilsvrc_train_of_class_tars_and_flat_val(ingest, catalog: Catalog, sandbox_url: str) -> None:
    counts = ingest(archive="ILSVRC2012")
    assert counts["stored"] == ILSVRC_TRAIN_IMAGES + ILSVRC_VAL_IMAGES
    rows = sightings(catalog)
    train = [row for row in rows if row.source_id.startswith("ILSVRC2012/train/")]
    val = [row for row in rows if row.source_id.startswith("ILSVRC2012/val/")]
    assert len(train) == ILSVRC_TRAIN_IMAGES and len(val) == ILSVRC_VAL_IMAGES
    _, _, wnid, file_name = train[0].source_id.split("/")
    assert train[0].url == f"{sandbox_url}/imagenet/ILSVRC2012_img_train.tar#{wnid}.tar/{file_name}"
    assert val[0].url == f"{sandbox_url}/imagenet/ILSVRC2012_img_val.tar#{val[0].source_id.split('/')[-1]}"
    assert {(row.license, row.license_text) for row in rows} == {(None, imagenet.LICENSE_TEXT)}


def test_ilsvrc_class_subset_leaves_val_out_and_max_images_stops_early(ingest, catalog: Catalog) -> None:
    counts = ingest(archive="ILSVRC2012", subset=Subset(classes=(ILSVRC_WNIDS[2], ILSVRC_WNIDS[7])))
    assert counts["stored"] == 10 and {row.source_id.split("/")[2] for row in sightings(catalog)} == {
        ILSVRC_WNIDS[2],
        ILSVRC_WNIDS[7],
    }
    capped = ingest("run-2", archive="ILSVRC2012", subset=Subset(splits=("val",), max_images=7))
    assert capped["stored"] == 7 and catalog.count(Sighting) == 17


def test_cmyk_and_disguised_png_are_stored_untouched_and_decode(ingest, store: FileStore, catalog: Catalog) -> None:
    ingest(archive="ILSVRC2012", subset=Subset(splits=("train",)))
    with catalog.session() as session:
        images = session.execute(select(ImageRow.raw_key, ImageRow.format, Sighting.source_id).join(Sighting)).all()
    formats = {}
    for key, image_format, source_id in images:
        data = store.get(key)
        assert hashlib.sha256(data).hexdigest() in key  # the bytes as they were in the archive
        with Image.open(io.BytesIO(data)) as image:
            formats[source_id] = (image_format, image.format, image.mode)
            rgb = image.convert("RGB")
            assert rgb.mode == "RGB" and rgb.size == image.size
            if image.mode == "CMYK":  # decoded to real colors, not inverted: a photo is not mostly dark
                assert sum(rgb.resize((1, 1)).getpixel((0, 0))) > 100
    odd = {source_id: kind for source_id, kind in formats.items() if kind != ("jpg", "JPEG", "RGB")}
    assert sorted(odd.values()) == [("jpg", "JPEG", "CMYK"), ("png", "PNG", "RGB")]
    assert all(source_id.endswith(".JPEG") for source_id in odd)  # the PNG kept its .JPEG name as its id


def test_a_cut_download_resumes_and_verifies(ingest, work: Path, faults, sandbox_url: str) -> None:
    """Both cuts hit the archive itself: its md5 is pinned, so nothing else is asked."""
    faults(path_prefix="/imagenet/imagenette2-160.tgz", kind="truncate", times=2)
    counts = ingest()
    assert counts["resumed_from_bytes"] > 0 and counts["stored"] == IMAGENETTE_IMAGES
    assert sorted(path.name for path in work.iterdir()) == ["imagenette2-160.tgz"]  # no .part left
    assert requests.get(f"{sandbox_url}/_faults", timeout=5).json() == []  # both cuts were spent


def test_a_corrupted_archive_is_refused_before_anything_is_registered(
    sandbox_url: str, stand_in_md5s: dict[str, str], http: HttpClient, store: FileStore, catalog: Catalog, work: Path
) -> None:
    """The broken mirror flips one byte of the archives whose md5s the connection pins."""
    broken_mirror = imagenet.ImageNetConfig(base_url=f"{sandbox_url}/imagenet/corrupt", checksums=stand_in_md5s)
    for archive, file_name in (("imagenette2-160", "imagenette2-160.tgz"), ("ILSVRC2012", "ILSVRC2012_img_train.tar")):
        with pytest.raises(ChecksumMismatch, match=rf"corrupt/{file_name}") as raised:
            imagenet.ingest(broken_mirror, http, store, catalog, "run-1", work, archive=archive)
        assert raised.value.expected == stand_in_md5s[file_name]
    assert lake_state(store, catalog) == ([], 0, 0)
    assert list(work.iterdir()) == []  # the bad bytes were deleted


def test_the_connector_pins_torchvisions_md5s_for_the_published_archives(
    sandbox_url: str, http: HttpClient, store: FileStore, catalog: Catalog, work: Path
) -> None:
    """Without a connection pin, an archive named as a published one must be the published one: the stand-in's
    imagenette2-160.tgz and ILSVRC2012 tars (other bytes under the real names) fail against the md5s
    torchvision pins (tests/captures/imagenet/checksums.json), which the connector uses for the real names."""
    captured = json.loads(capture("imagenet/checksums.json"))
    rows = [
        row
        for table in ("torchvision_imagenette_ARCHIVES", "torchvision_imagenet_ARCHIVE_META")
        for key, row in captured[table].items()
        if not key.startswith("_")
    ]
    published = {location.rsplit("/", 1)[-1]: md5 for location, md5 in rows}
    del published["ILSVRC2012_devkit_t12.tar.gz"]  # the connector never fetches the devkit
    unpinned = imagenet.ImageNetConfig(base_url=f"{sandbox_url}/imagenet")
    assert {name: unpinned.checksum(name) for name in published} == published
    for archive, file_name in (("imagenette2-160", "imagenette2-160.tgz"), ("ILSVRC2012", "ILSVRC2012_img_train.tar")):
        with pytest.raises(ChecksumMismatch, match=rf"imagenet/{file_name}") as raised:
            imagenet.ingest(unpinned, http, store, catalog, "run-1", work, archive=archive)
        assert raised.value.expected == published[file_name]
    assert lake_state(store, catalog) == ([], 0, 0)


def test_only_archives_are_asked_for_never_a_checksum_file(
    sandbox_url: str, stand_in_md5s: dict[str, str], store: FileStore, catalog: Catalog, work: Path, tmp_path: Path
) -> None:
    """The real hosts publish no checksum file: replayed by a host that serves only the archives and counts
    every request, the connector asks for archives and nothing else, whether the connection pins their md5s
    (they are stored) or not (torchvision's md5s apply, which the stand-in's bytes do not match)."""
    archives = {
        f"/fast-ai-imageclas/{name}": requests.get(f"{sandbox_url}/imagenet/{name}", timeout=60).content
        for name in stand_in_md5s
    }
    asked: list[str] = []

    def host(path: str, query: dict[str, str]) -> Answer:
        asked.append(path)
        if path in archives:
            return Answer(archives[path], content_type="application/x-tar")
        return Answer(b"<Error><Code>NoSuchKey</Code></Error>", status=404, content_type="application/xml")

    with replaying(host) as base:
        http = imagenet.client(
            imagenet.ImageNetConfig(base_url=base), Settings(home=tmp_path, http_allowed_hosts=[host_key(base)])
        )
        unpinned = imagenet.ImageNetConfig(base_url=f"{base}/fast-ai-imageclas")
        pinned = imagenet.ImageNetConfig(base_url=f"{base}/fast-ai-imageclas", checksums=stand_in_md5s)
        for archive in ("imagenette2-160", "ILSVRC2012"):
            with pytest.raises(ChecksumMismatch):
                imagenet.ingest(unpinned, http, store, catalog, "unpinned", work, archive=archive)
        stored = [
            imagenet.ingest(pinned, http, store, catalog, "pinned", work, archive=archive)["stored"]
            for archive in ("imagenette2-160", "ILSVRC2012")
        ]
    assert stored == [IMAGENETTE_IMAGES, ILSVRC_TRAIN_IMAGES + ILSVRC_VAL_IMAGES]
    assert set(asked) == set(archives)


def tgz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(buffer.getvalue())


def member(name: str, data: bytes | None = None, **fields) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data) if data is not None else 0
    for field, value in fields.items():
        setattr(info, field, value)
    return info, data


def photo_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("hostile", "error", "problem"),
    [
        (member("imagenette2-160/train/n01440764/../../../../escape.JPEG", b"x"), UnsafeArchive, r"\.\."),
        (member("/etc/imagenette.JPEG", b"x"), UnsafeArchive, "absolute path"),
        (
            member("imagenette2-160/train/n01440764/link.JPEG", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
            UnsafeArchive,
            "symbolic link",
        ),
        (member("imagenette2-160/train/n01440764/dev.JPEG", type=tarfile.CHRTYPE), UnsafeArchive, "device"),
    ],
    ids=["dot-dot", "absolute", "symlink", "device"],
)
def test_a_hostile_archive_is_refused_with_its_name_and_writes_nothing(
    config, http, store: FileStore, catalog: Catalog, work: Path, tmp_path: Path, hostile, error, problem
) -> None:
    """A hostile publisher's archive passes its (pinned) checksum, so only the member checks stand between it
    and the lake; the hostile member comes first, so nothing at all is registered."""
    good = member("imagenette2-160/train/n01440764/n01440764_1.JPEG", photo_jpeg())
    data = tgz([hostile, good])
    (work / "imagenette2-160.tgz").write_bytes(data)
    pinned = imagenet.ImageNetConfig(
        base_url=config.base_url, checksums={"imagenette2-160.tgz": hashlib.md5(data).hexdigest()}
    )
    with pytest.raises(error, match=problem) as raised:
        imagenet.ingest(pinned, http, store, catalog, "run-1", work)
    assert "imagenette2-160.tgz" in str(raised.value)
    assert lake_state(store, catalog) == ([], 0, 0)
    assert sorted(path.name for path in tmp_path.rglob("*") if "escape" in path.name or "link" in path.name) == []


def test_a_truncated_archive_with_a_matching_checksum_is_corrupt(config, http, store, catalog, work: Path) -> None:
    whole = tgz([member(f"imagenette2-160/val/n01440764/{n}.JPEG", photo_jpeg() * 50) for n in range(4)])
    cut = whole[: len(whole) * 2 // 3]
    (work / "imagenette2-160.tgz").write_bytes(cut)
    pinned = imagenet.ImageNetConfig(
        base_url=config.base_url, checksums={"imagenette2-160.tgz": hashlib.md5(cut).hexdigest()}
    )
    with pytest.raises(CorruptArchive, match=r"imagenette2-160\.tgz"):
        imagenet.ingest(pinned, http, store, catalog, "run-1", work)


@pytest.fixture
def generated(sandbox_url: str):
    """A config for a generated ILSVRC-style train tar of the sandbox (`<classes>x<per class>[-corrupt<n>]`),
    pinned to the md5 its manifest gives."""

    def config_for(name: str) -> imagenet.ImageNetConfig:
        folder = f"{sandbox_url}/imagenet/generated/{name}"
        manifest = requests.get(f"{folder}/manifest.json", timeout=120).json()
        return imagenet.ImageNetConfig(
            base_url=f"{sandbox_url}/imagenet",
            ilsvrc_url=folder,
            checksums={"ILSVRC2012_img_train.tar": manifest["md5"]},
        )

    return config_for


TRAIN_ONLY = Subset(splits=("train",))


def test_the_train_tar_fans_out_by_class_tars_and_the_parts_add_up(
    generated, http, store: FileStore, catalog: Catalog, work: Path
) -> None:
    config = generated("6x5")
    parts, downloads = imagenet.plan(config, http, work, archive="ILSVRC2012", subset=TRAIN_ONLY, parts=3)
    assert [part.first for part in parts] == [0, parts[0].stop, parts[1].stop] and parts[2].stop == 6
    assert {part.take for part in parts} == {None}
    assert downloads["archive_bytes"] > 0

    def store_parts(run_id: str) -> list[dict[str, int]]:
        return [
            imagenet.ingest_part(
                config, http, store, catalog, run_id, work, part, archive="ILSVRC2012", subset=TRAIN_ONLY
            )
            for part in parts
        ]

    assert [counts["stored"] for counts in store_parts("run-1")] == [10, 10, 10]
    assert [(counts["stored"], counts["already_known"]) for counts in store_parts("run-2")] == [(0, 10)] * 3
    objects, images, rows = lake_state(store, catalog)
    assert len(objects) == images == rows == 30


def test_max_images_is_spread_over_the_parts_exactly(
    generated, http, store: FileStore, catalog: Catalog, work: Path
) -> None:
    config = generated("6x5")
    sliced = Subset(splits=("train",), max_images=12)
    parts, _ = imagenet.plan(config, http, work, archive="ILSVRC2012", subset=sliced, parts=6)
    assert [(part.first, part.stop, part.take) for part in parts] == [(0, 1, 5), (1, 2, 5), (2, 3, 2)]
    for part in parts:
        imagenet.ingest_part(config, http, store, catalog, "run-1", work, part, archive="ILSVRC2012", subset=sliced)
    assert {row.source_id.rsplit("/", 2)[1] for row in sightings(catalog)} == {f"n9000000{n}" for n in range(3)}
    assert len(sightings(catalog)) == 12


def test_a_corrupt_class_tar_fails_only_its_own_part_naming_it(
    generated, http, store: FileStore, catalog: Catalog, work: Path
) -> None:
    config = generated("6x5-corrupt2")
    parts, _ = imagenet.plan(config, http, work, archive="ILSVRC2012", subset=TRAIN_ONLY, parts=3)
    outcomes: list[int | str] = []
    for part in parts:
        try:
            counts = imagenet.ingest_part(
                config, http, store, catalog, "run-1", work, part, archive="ILSVRC2012", subset=TRAIN_ONLY
            )
            outcomes.append(counts["stored"])
        except CorruptArchive as error:
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[2] == 10
    assert "ILSVRC2012_img_train.tar#n90000002.tar" in str(outcomes[1])
    objects, images, rows = lake_state(store, catalog)
    assert len(objects) >= images == rows >= 20  # whatever the failed part recorded has its object


def test_a_killed_part_resumes_with_nothing_doubled(
    generated, http, store: FileStore, catalog: Catalog, work: Path, tmp_path: Path
) -> None:
    """The part's process dies (no cleanup, as under SIGKILL) after writing 15 objects and no rows; its retry
    records every image once and writes only the objects that were missing."""
    config = generated("6x5")
    parts, _ = imagenet.plan(config, http, work, archive="ILSVRC2012", subset=TRAIN_ONLY, parts=1)

    class DyingStore(FileStore):
        written = 0

        def put_if_absent(self, key: str, data: bytes) -> bool:
            if DyingStore.written == 15:
                os._exit(137)
            DyingStore.written += 1
            return super().put_if_absent(key, data)

    def killed_try() -> None:
        dying, fresh_catalog = DyingStore(tmp_path / "lake"), Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
        imagenet.ingest_part(
            config, http, dying, fresh_catalog, "run-1", work, parts[0], archive="ILSVRC2012", subset=TRAIN_ONLY
        )

    process = multiprocessing.get_context("fork").Process(target=killed_try)
    process.start()
    process.join(120)
    assert process.exitcode == 137
    objects, images, rows = lake_state(store, catalog)
    assert (len(objects), images, rows) == (15, 0, 0)

    retry = imagenet.ingest_part(
        config, http, store, catalog, "run-1", work, parts[0], archive="ILSVRC2012", subset=TRAIN_ONLY
    )
    assert (retry["stored"], retry["objects_written"]) == (30, 15)
    objects, images, rows = lake_state(store, catalog)
    assert len(objects) == images == rows == 30
