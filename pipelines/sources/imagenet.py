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
from functools import partial
from pathlib import Path
from typing import Any, Self

from pipelines.archives import ArchiveEntry, TarMember, index_tar, iter_tar, read_member
from pipelines.catalog import Catalog, SightingRecord
from pipelines.fan_out import DUMP_PARTS
from pipelines.http import HttpClient, redact_url
from pipelines.settings import Settings
from pipelines.sources import dumps
from pipelines.sources.contract import Dump
from pipelines.sources.dumps import EVERYTHING, DumpHost, DumpPart, Subset
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


def plan(
    config: ImageNetConfig,
    http: HttpClient,
    work_dir: Path,
    *,
    archive: str = DEFAULT_ARCHIVE,
    subset: Subset = EVERYTHING,
    parts: int = DUMP_PARTS,
) -> tuple[list[DumpPart], Counter[str]]:
    """Download and verify every archive the run reads, then divide its images into about `parts` parts:
    ILSVRC's tars by ranges of their members (class tars for train), Imagenette's .tgz by split. Returns the
    parts and what the downloads did."""
    _check(archive, subset)
    if archive != ILSVRC:
        url = config.url(f"{archive}.tgz")
        downloaded = dumps.fetch_verified(config, http, url, work_dir)
        splits = [split for split in SPLITS if subset.wants_split(split)]
        if subset.max_images is not None:  # the slice is the first images of the stream, whatever their split
            planned = [DumpPart(url, take=subset.max_images)]
        else:
            planned = [DumpPart(url, split=split) for split in splits]
        return planned, dumps.download_counts([downloaded])

    splits = [split for split in SPLITS if subset.wants_split(split)]
    if "val" in splits and subset.classes is not None:
        logger.info("ILSVRC2012 val images carry no class in the archive: the class subset leaves them out")
        splits.remove("val")
    # Every tar of the run is downloaded and verified before the first image is registered.
    urls = {split: config.ilsvrc(f"{ILSVRC}_img_{split}.tar") for split in splits}
    downloads = {split: dumps.fetch_verified(config, http, url, work_dir) for split, url in urls.items()}
    indexes = {split: _wanted_sizes(split, result.path, subset) for split, result in downloads.items()}
    size = dumps.part_bytes(sum(sum(sizes) for _, sizes in indexes.values()), parts)
    planned, budget = [], subset.max_images
    for split, (members, sizes) in indexes.items():
        images_in = partial(_images_in, split, downloads[split].path, members)
        found, budget = dumps.divide(urls[split], sizes, size, budget, images_in)
        planned += found
        if budget == 0:
            break
    return planned, dumps.download_counts(downloads.values())


def ingest_part(
    config: ImageNetConfig,
    http: HttpClient,
    store: ObjectStore,
    catalog: Catalog,
    run_id: str,
    work_dir: Path,
    part: DumpPart,
    *,
    archive: str = DEFAULT_ARCHIVE,
    subset: Subset = EVERYTHING,
) -> dict[str, int]:
    """Store one planned part's images: the members it names of an archive the plan verified."""
    path, url = dumps.planned_archive(work_dir, part), part.archive_url
    label = redact_url(url)
    if archive != ILSVRC:

        def to_sighting(member: ArchiveEntry) -> SightingRecord | None:
            match = IMAGENETTE_MEMBER.fullmatch(member.name)
            if match is None or match["variant"] != archive or not subset.wants(match["split"], match["wnid"]):
                return None
            return _sighting(member.name, dumps.member_url(url, member.name))

        members: Iterator[ArchiveEntry] = iter_tar(path, wanted=partial(_in_split_part, part, subset), label=label)
    elif dumps.archive_file_name(url) == f"{ILSVRC}_img_train.tar":
        members, to_sighting = _class_tar_members(path, label, subset, part), _train_sighting(url, subset)
    else:
        members, to_sighting = _ranged_members(path, label, part), _val_sighting(url)
    counts = dumps.store_members(members, to_sighting, store, catalog, run_id, part.take)
    logger.info("ImageNet %s: %s", part.label, counts)
    return counts


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
    """A whole run in one process: the plan, then its parts in order; returns counts (stored,
    already_known, skipped, objects_written, and what the downloads did)."""
    counts = dumps.in_one_process(
        plan(config, http, work_dir, archive=archive, subset=subset),
        partial(ingest_part, config, http, store, catalog, run_id, work_dir, archive=archive, subset=subset),
    )
    logger.info("ImageNet %s: %s", archive, counts)
    return counts


def _check(archive: str, subset: Subset) -> None:
    if archive not in ARCHIVES:
        raise ValueError(f"unknown ImageNet archive {archive!r}; choose one of {', '.join(ARCHIVES)}")
    subset.check(SPLITS, f"ImageNet ({archive})")
    bad_classes = [label for label in subset.classes or () if not WNID.fullmatch(label)]
    if bad_classes:
        raise ValueError(f"ImageNet classes are wnids such as n01440764, not {', '.join(bad_classes)}")


def _images_in(split: str, path: Path, members: list[TarMember], index: int) -> int:
    """How many images of the layout member `index` of an ILSVRC tar holds: a val file is one, a class tar
    is counted by its headers (only for a run with `max_images`, which plans the members it needs)."""
    if split == "val":
        return 1
    member = members[index]
    with path.open("rb") as stream:
        class_tar = io.BytesIO(read_member(stream, member))
    return sum(1 for inner in index_tar(class_tar) if ILSVRC_TRAIN_MEMBER.fullmatch(f"{member.name}/{inner.name}"))


def _in_split_part(part: DumpPart, subset: Subset, name: str) -> bool:
    """Whether an Imagenette member is read by `part`: the members of its split, and for the first wanted
    split's part also those in no split (the label CSV), which are counted as skipped once."""
    if part.split is None:
        return True
    segments = name.split("/")
    split = segments[1] if len(segments) > 2 else None
    if split in SPLITS:
        return split == part.split
    return part.split == next(split for split in SPLITS if subset.wants_split(split))


def _wanted_sizes(split: str, path: Path, subset: Subset) -> tuple[list[TarMember], list[int]]:
    """An ILSVRC tar's members, and the bytes of each the run reads (0 for a class tar outside the subset
    or a file outside the layout)."""
    members = index_tar(path, label=str(path.name))
    if split == "train":
        return members, [member.size if _wanted_class_tar(member.name, subset) else 0 for member in members]
    return members, [member.size if ILSVRC_VAL_MEMBER.fullmatch(member.name) else 0 for member in members]


def _wanted_class_tar(name: str, subset: Subset) -> bool:
    match = ILSVRC_CLASS_TAR.fullmatch(name)
    return match is not None and subset.wants_class(match["wnid"])


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


def _class_tar_members(path: Path, label: str, subset: Subset, part: DumpPart) -> Iterator[ArchiveEntry]:
    """The images of a part of ILSVRC's train tar, named `<wnid>.tar/<file>`: each wanted per-class tar of
    the part is read into memory (about 150 MB) by its offset and streamed in turn; a corrupt one fails the
    part naming it, and unwanted classes are never read."""
    with path.open("rb") as stream:
        for class_tar in index_tar(stream, label=label)[part.first : part.stop]:
            if not _wanted_class_tar(class_tar.name, subset):
                continue
            inner = io.BytesIO(read_member(stream, class_tar, label))
            for member in iter_tar(inner, label=f"{label}#{class_tar.name}"):
                yield ArchiveEntry(name=f"{class_tar.name}/{member.name}", size=member.size, data=member.data)


def _ranged_members(path: Path, label: str, part: DumpPart) -> Iterator[ArchiveEntry]:
    """The members of a part of a flat tar, read by their offsets."""
    with path.open("rb") as stream:
        for member in index_tar(stream, label=label)[part.first : part.stop]:
            yield ArchiveEntry(name=member.name, size=member.size, data=read_member(stream, member, label))


def _sighting(source_id: str, url: str) -> SightingRecord:
    return SightingRecord(source=SOURCE, source_id=source_id, url=url, license_text=LICENSE_TEXT)


CONNECTOR = Dump(ImageNetConfig.from_connection, client, SOURCE, plan, ingest_part, ingest_options)
