"""ImageNet: the Imagenette archives (`imagenette2`, `imagenette2-320`, `imagenette2-160`) and the ILSVRC2012
train and val tars, read as streams into the raw zone.

Layouts, as published:
- Imagenette: `<variant>.tgz` holding `<variant>/{train,val}/<wnid>/<name>.JPEG` (plus a label CSV, which is
  skipped). In production the connection's host is https://s3.amazonaws.com/fast-ai-imageclas.
- ILSVRC2012: `ILSVRC2012_img_train.tar`, a tar of 1,000 per-class tars `<wnid>.tar` each holding
  `<wnid>_<n>.JPEG`, and `ILSVRC2012_img_val.tar`, flat `ILSVRC2012_val_<8 digits>.JPEG` whose classes are
  only in the devkit, so a class subset leaves val out. Extra `ilsvrc_url` names the (signed-in) download
  location when it differs from the host.

Neither host publishes a checksum file, so the md5s of the published archives are pinned here
(`PUBLISHED_MD5`), as torchvision pins them. A mirror serving other bytes under the same names (the sandbox
does) is verified against md5s pinned in its connection (extra `{"md5": {"<archive>": "<md5>"}}`) instead.

Source ids are the member's path under its archive's name (`imagenette2-160/train/n01440764/<name>.JPEG`,
`ILSVRC2012/train/n01440764/<name>.JPEG`, `ILSVRC2012/val/<name>.JPEG`): an Imagenette variant is a resized
copy, a different image from the full-size ILSVRC file of the same name, and gets its own sighting.

Files are stored exactly as they are in the archive. ImageNet holds CMYK JPEGs and a PNG named `.JPEG`; the
raw zone sniffs the real format from the bytes, and decoding with Pillow (CMYK converted to RGB) is the
quality and shard stages' business, so nothing here re-encodes a photo.
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pipelines.archives import ArchiveEntry, iter_tar
from pipelines.catalog import Catalog, SightingRecord
from pipelines.downloads import DownloadResult
from pipelines.http import HttpClient, redact_url
from pipelines.settings import Settings
from pipelines.sources import dumps
from pipelines.sources.contract import Dump
from pipelines.sources.dumps import EVERYTHING, DumpHost, Subset
from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)

SOURCE = "imagenet"
# Research-only terms of access, no license: no term of the vocabulary fits.
LICENSE_TEXT = "ImageNet terms of access (non-commercial research)"
IMAGENETTE_VARIANTS = ("imagenette2", "imagenette2-320", "imagenette2-160")
ILSVRC = "ILSVRC2012"
ARCHIVES = (*IMAGENETTE_VARIANTS, ILSVRC)
DEFAULT_ARCHIVE = "imagenette2-160"
SPLITS = ("train", "val")
# The whole-file md5s of the archives as published, from torchvision (torchvision/datasets/imagenette.py
# `_ARCHIVES`, torchvision/datasets/imagenet.py `ARCHIVE_META`; see tests/captures/imagenet).
PUBLISHED_MD5 = {
    "imagenette2.tgz": "fe2fc210e6bb7c5664d602c3cd71e612",
    "imagenette2-320.tgz": "3df6f0d01a2c9592104656642f5e78a3",
    "imagenette2-160.tgz": "e793b78cc4c9e9a4ccc0c1155377a412",
    "ILSVRC2012_img_train.tar": "1d675b47d978889d74fa0da5fadfb00e",
    "ILSVRC2012_img_val.tar": "29b22e2961454d5413ddabcf34fc5622",
}
WNID = re.compile(r"n\d{8}")
IMAGENETTE_MEMBER = re.compile(r"(?P<variant>[^/]+)/(?P<split>train|val)/(?P<wnid>n\d{8})/(?P<file>[^/]+\.jpe?g)", re.I)
ILSVRC_CLASS_TAR = re.compile(r"(?P<wnid>n\d{8})\.tar")
ILSVRC_TRAIN_MEMBER = re.compile(r"(?P<wnid>n\d{8})\.tar/(?P<file>(?P=wnid)_\d+\.jpe?g)", re.I)
ILSVRC_VAL_MEMBER = re.compile(r"ILSVRC2012_val_\d{8}\.jpe?g", re.I)


@dataclass(frozen=True)
class ImageNetConfig(DumpHost):
    """The Imagenette host (`base_url`), and where the ILSVRC2012 tars are when elsewhere (`ilsvrc_url`)."""

    service = "ImageNet"
    published = PUBLISHED_MD5
    ilsvrc_url: str | None = None

    @classmethod
    def from_connection(cls, connection: Any) -> Self:
        """As `DumpHost.from_connection`, plus extra `ilsvrc_url`: the ILSVRC2012 tars' base URL (default: host)."""
        config = super().from_connection(connection)
        extra = getattr(connection, "extra_dejson", None) or {}
        ilsvrc_url = str(extra.get("ilsvrc_url") or "").strip().rstrip("/")
        return cls(base_url=config.base_url, checksums=config.checksums, ilsvrc_url=ilsvrc_url or None)

    def ilsvrc(self, file_name: str) -> str:
        return f"{self.ilsvrc_url or self.base_url}/{file_name}"


def client(config: ImageNetConfig, settings: Settings) -> HttpClient:
    """An HTTP client for the dump hosts, allowed to reach the allow-listed (sandbox) hosts."""
    return dumps.client(settings)


def ingest_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """`ingest`'s keyword arguments from a DAG run's params (archive, splits, classes, max_images)."""
    return {
        "archive": params.get("archive") or DEFAULT_ARCHIVE,
        "subset": Subset.from_params(params.get("splits"), params.get("classes"), params.get("max_images")),
    }


def ingest(
    config: ImageNetConfig,
    http: HttpClient,
    store: ObjectStore,
    catalog: Catalog,
    run_id: str,
    work_dir: Path,
    *,
    archive: str = DEFAULT_ARCHIVE,
    subset: Subset = EVERYTHING,
) -> dict[str, int]:
    """Download `archive` (an Imagenette variant or "ILSVRC2012"), verify it, and store the `subset` of its
    images; returns counts (stored, already_known, skipped, objects_written, and what the downloads did)."""
    if archive not in ARCHIVES:
        raise ValueError(f"unknown ImageNet archive {archive!r}; choose one of {', '.join(ARCHIVES)}")
    subset.check(SPLITS, f"ImageNet ({archive})")
    bad_classes = [label for label in subset.classes or () if not WNID.fullmatch(label)]
    if bad_classes:
        raise ValueError(f"ImageNet classes are wnids such as n01440764, not {', '.join(bad_classes)}")
    if archive == ILSVRC:
        counts = _ingest_ilsvrc(config, http, store, catalog, run_id, work_dir, subset)
    else:
        counts = _ingest_imagenette(config, http, store, catalog, run_id, work_dir, archive, subset)
    logger.info("ImageNet %s: %s", archive, counts)
    return counts


def _ingest_imagenette(
    config: ImageNetConfig,
    http: HttpClient,
    store: ObjectStore,
    catalog: Catalog,
    run_id: str,
    work_dir: Path,
    variant: str,
    subset: Subset,
) -> dict[str, int]:
    url = config.url(f"{variant}.tgz")
    downloaded = dumps.fetch_verified(config, http, url, work_dir)

    def to_sighting(member: ArchiveEntry) -> SightingRecord | None:
        match = IMAGENETTE_MEMBER.fullmatch(member.name)
        if match is None or match["variant"] != variant or not subset.wants(match["split"], match["wnid"]):
            return None
        return _sighting(member.name, dumps.member_url(url, member.name))

    members = iter_tar(downloaded.path, label=redact_url(url))
    counts = dumps.download_counts([downloaded])
    counts.update(dumps.store_members(members, to_sighting, store, catalog, run_id, subset.max_images))
    return dict(counts)


def _ingest_ilsvrc(
    config: ImageNetConfig,
    http: HttpClient,
    store: ObjectStore,
    catalog: Catalog,
    run_id: str,
    work_dir: Path,
    subset: Subset,
) -> dict[str, int]:
    splits = [split for split in SPLITS if subset.wants_split(split)]
    if "val" in splits and subset.classes is not None:
        logger.info("ILSVRC2012 val images carry no class in the archive: the class subset leaves them out")
        splits.remove("val")
    # Every tar of the run is downloaded and verified before the first image is registered.
    downloads: dict[str, tuple[str, DownloadResult]] = {}
    for split in splits:
        url = config.ilsvrc(f"{ILSVRC}_img_{split}.tar")
        downloads[split] = (url, dumps.fetch_verified(config, http, url, work_dir))

    counts: Counter[str] = dumps.download_counts(result for _, result in downloads.values())
    for split, (url, result) in downloads.items():
        remaining = dumps.remaining(subset, counts)
        if remaining == 0:
            break
        label = redact_url(url)
        if split == "train":
            members, to_sighting = _class_tar_members(result.path, label, subset), _train_sighting(url, subset)
        else:
            members, to_sighting = iter_tar(result.path, label=label), _val_sighting(url)
        counts.update(dumps.store_members(members, to_sighting, store, catalog, run_id, remaining))
    return dict(counts)


def _train_sighting(url: str, subset: Subset) -> Callable[[ArchiveEntry], SightingRecord | None]:
    """Sightings of the train tar's `<wnid>.tar/<wnid>_<n>.JPEG` members of the subset's classes."""

    def to_sighting(member: ArchiveEntry) -> SightingRecord | None:
        match = ILSVRC_TRAIN_MEMBER.fullmatch(member.name)
        if match is None or not subset.wants_class(match["wnid"]):
            return None
        return _sighting(f"{ILSVRC}/train/{match['wnid']}/{match['file']}", dumps.member_url(url, member.name))

    return to_sighting


def _val_sighting(url: str) -> Callable[[ArchiveEntry], SightingRecord | None]:
    """Sightings of the val tar's flat `ILSVRC2012_val_<n>.JPEG` members."""

    def to_sighting(member: ArchiveEntry) -> SightingRecord | None:
        if not ILSVRC_VAL_MEMBER.fullmatch(member.name):
            return None
        return _sighting(f"{ILSVRC}/val/{member.name}", dumps.member_url(url, member.name))

    return to_sighting


def _class_tar_members(path: Path, label: str, subset: Subset) -> Iterator[ArchiveEntry]:
    """The images of ILSVRC's train tar, named `<wnid>.tar/<file>`: each wanted per-class tar is read from
    the outer stream into memory (about 150 MB) and streamed in turn; unwanted classes are never held."""

    def wanted(name: str) -> bool:
        match = ILSVRC_CLASS_TAR.fullmatch(name)
        return match is not None and subset.wants_class(match["wnid"])

    for class_tar in iter_tar(path, wanted=wanted, label=label):
        inner_label = f"{label}#{class_tar.name}"
        for member in iter_tar(io.BytesIO(class_tar.data), label=inner_label):
            yield ArchiveEntry(name=f"{class_tar.name}/{member.name}", size=member.size, data=member.data)


def _sighting(source_id: str, url: str) -> SightingRecord:
    return SightingRecord(source=SOURCE, source_id=source_id, url=url, license_text=LICENSE_TEXT)


CONNECTOR = Dump(ImageNetConfig.from_connection, client, SOURCE, ingest, ingest_options)
