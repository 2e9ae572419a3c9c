"""COCO 2017: the image zips (`zips/train2017.zip`, `zips/val2017.zip`) with the licenses and Flickr origins
from `annotations/annotations_trainval2017.zip`, read member by member into the raw zone.

In production the connection's host is http://images.cocodataset.org. COCO publishes no checksums, so
the zips are verified only against md5s pinned in the connection (extra `{"md5": {"val2017.zip": "...",
...}}`); an unpinned zip is downloaded unverified, and the log names its md5 for the operator to pin.

Each image's sighting carries what COCO says about it in `annotations/instances_<split>.json`:
- source id: the COCO image id (`397133`), unique across splits;
- license: the name of the license its `license` id points to in the file's `licenses` list (COCO's ids
  are Flickr's license ids 1 to 8: "Attribution License" is CC BY 2.0);
- page URL: its `flickr_url`, kept verbatim. COCO's photos are Flickr photos, and that URL's file name starts
  with the Flickr photo id (`http://farm4.staticflickr.com/3153/2970773875_164f0c0b83_z.jpg` is photo
  2970773875), the id the Flickr connector uses as its source id. `flickr_photo_id` reads it back and
  `flickr_twins` finds the COCO images whose Flickr photo the catalog also holds from Flickr, so the same
  photo reached both ways is recognized as one even though COCO's copy has other bytes than Flickr's.

Subsets: splits (`train2017`, `val2017`), classes (COCO category names such as "cat": an image is taken
when one of its annotations has a wanted category), and `max_images`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from pipelines.archives import ArchiveEntry, iter_zip, list_zip
from pipelines.catalog import Catalog, Sighting, SightingRecord
from pipelines.fan_out import DUMP_PARTS
from pipelines.http import HttpClient, redact_url
from pipelines.licenses import from_url
from pipelines.settings import Settings
from pipelines.sources import dumps
from pipelines.sources import flickr as flickr_source
from pipelines.sources.contract import Dump
from pipelines.sources.dumps import EVERYTHING, DumpHost, DumpPart, Subset
from pipelines.sources.web import SourceUnavailable
from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)

SOURCE = "coco"
SPLITS = ("train2017", "val2017")
ANNOTATIONS = "annotations_trainval2017"
# A Flickr static file name (`<id>_<secret>[_<size>].<ext>`) or a photo page path (`/photos/<owner>/<id>/`).
FLICKR_STATIC_NAME = re.compile(r"(?P<id>\d+)_[0-9a-f]+(?:_[0-9a-z]+)?\.[a-z]+", re.I)
FLICKR_PAGE_PATH = re.compile(r"/photos/[^/]+/(?P<id>\d+)(?:/.*)?")


@dataclass(frozen=True)
class CocoConfig(DumpHost):
    """The COCO host (http://images.cocodataset.org, or the sandbox's `/coco`) and pinned zip md5s."""

    service = "COCO"


@dataclass(frozen=True)
class Annotations:
    """What one split's `instances_<split>.json` says about its images, indexed by zip member name."""

    images: dict[str, dict[str, Any]]  # member name (`val2017/000000397133.jpg`) -> image record
    licenses: dict[int, tuple[str | None, str]]  # license id -> (term of the vocabulary, COCO's name)
    categories_by_image: dict[int, set[str]]
    category_names: frozenset[str]

    def in_classes(self, image_id: Any, classes: tuple[str, ...] | None) -> bool:
        """Whether one of the image's annotations has a category in `classes` (None: every image is)."""
        return classes is None or not self.categories_by_image.get(image_id, set()).isdisjoint(classes)

    def license(self, license_id: Any) -> tuple[str | None, str | None]:
        """(term, COCO's words) for an image's `license` id; the term comes from the license's URL."""
        if license_id is None:
            return None, None
        return self.licenses.get(license_id, (None, f"COCO license {license_id}"))


def client(config: CocoConfig, settings: Settings) -> HttpClient:
    """An HTTP client for the dump host, allowed to reach the allow-listed (sandbox) hosts."""
    return dumps.client(settings)


def flickr_photo_id(url: str | None) -> str | None:
    """The Flickr photo id in a Flickr image URL (COCO's `flickr_url`) or photo page URL; None for others."""
    if not url:
        return None
    path = urlsplit(url).path
    page = FLICKR_PAGE_PATH.fullmatch(path)
    if page:
        return page["id"]
    static = FLICKR_STATIC_NAME.fullmatch(path.rsplit("/", 1)[-1])
    return static["id"] if static else None


def flickr_twins(catalog: Catalog) -> dict[str, str]:
    """COCO image id -> Flickr photo id, for the COCO images whose Flickr photo the catalog also holds from
    the Flickr connector (whose source id is the Flickr photo id): one photo, reached two ways."""
    with catalog.session() as session:
        rows = session.execute(
            select(Sighting.source_id, Sighting.page_url).where(
                Sighting.source == SOURCE, Sighting.page_url.is_not(None)
            )
        ).all()
    origins = {coco_id: flickr_id for coco_id, page_url in rows if (flickr_id := flickr_photo_id(page_url))}
    held = catalog.known_source_ids(flickr_source.SOURCE, set(origins.values()))
    return {coco_id: flickr_id for coco_id, flickr_id in origins.items() if flickr_id in held}


def ingest_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """`ingest`'s keyword arguments from a DAG run's params (splits, classes, max_images)."""
    return {"subset": Subset.from_params(params.get("splits"), params.get("classes"), params.get("max_images"))}


def plan(
    config: CocoConfig,
    http: HttpClient,
    work_dir: Path,
    *,
    subset: Subset = EVERYTHING,
    parts: int = DUMP_PARTS,
    annotations: str = ANNOTATIONS,
) -> tuple[list[DumpPart], Counter[str]]:
    """Download the annotations and the zips of the subset's splits and verify them all, then divide each
    zip's wanted members into ranges; the sightings of each split's wanted images are written beside the zip
    once, so that no part parses COCO's annotations (448 MB for train2017) again. Returns the parts and what
    the downloads did."""
    subset.check(SPLITS, "COCO 2017")
    splits = [split for split in SPLITS if subset.wants_split(split)]
    annotations_url = config.url(f"annotations/{annotations}.zip")
    annotations_label = redact_url(annotations_url)
    # Every zip of the run is downloaded and verified before the first image is registered, and the class
    # names are checked before the image zips (19 GB for train2017) are downloaded.
    annotations_zip = dumps.fetch_verified(config, http, annotations_url, work_dir)
    if subset.classes is not None:
        _check_classes(subset.classes, read_annotations(annotations_zip.path, splits[0], annotations_label))
    zips = {split: dumps.fetch_verified(config, http, config.url(f"zips/{split}.zip"), work_dir) for split in splits}

    members: dict[str, tuple[list[tuple[str, int]], dict[str, list[Any]]]] = {}
    for split, result in zips.items():
        index = read_annotations(annotations_zip.path, split, annotations_label)
        wanted = _sightings_by_member(index, subset)
        _sightings_file(work_dir, split, subset).write_text(json.dumps(wanted))
        members[split] = (list_zip(result.path, label=redact_url(config.url(f"zips/{split}.zip"))), wanted)
    size = dumps.part_bytes(
        sum(size for listing, wanted in members.values() for name, size in listing if name in wanted), parts
    )
    planned: list[DumpPart] = []
    budget = subset.max_images
    for split, (listing, wanted) in members.items():
        sizes = [size if name in wanted else 0 for name, size in listing]
        found, budget = dumps.divide(config.url(f"zips/{split}.zip"), sizes, size, budget, lambda _: 1)
        planned += found
        if budget == 0:
            break
    return planned, dumps.download_counts([annotations_zip, *zips.values()])


def ingest_part(
    config: CocoConfig,
    http: HttpClient,
    store: ObjectStore,
    catalog: Catalog,
    run_id: str,
    work_dir: Path,
    part: DumpPart,
    *,
    subset: Subset = EVERYTHING,
) -> dict[str, int]:
    """Store one planned range of a split zip's members, with the sightings the plan wrote for them."""
    path, url = dumps.planned_archive(work_dir, part), part.archive_url
    split = dumps.archive_file_name(url).removesuffix(".zip")
    wanted: dict[str, list[Any]] = json.loads(_sightings_file(work_dir, split, subset).read_text())
    in_range = [name for name, _ in list_zip(path, label=redact_url(url))[part.first : part.stop]]
    taken = {name for name in in_range if name in wanted}

    def to_sighting(member: ArchiveEntry) -> SightingRecord:
        image_id, flickr_url, license, license_text = wanted[member.name]
        return SightingRecord(
            source=SOURCE,
            source_id=str(image_id),
            url=dumps.member_url(url, member.name),
            page_url=flickr_url or None,
            license=license,
            license_text=license_text,
        )

    members = iter_zip(path, wanted=taken.__contains__, label=redact_url(url))
    counts = Counter(dumps.store_members(members, to_sighting, store, catalog, run_id, part.take))
    counts["skipped"] += len(in_range) - len(taken)
    logger.info("COCO %s: %s", part.label, dict(counts))
    return dict(counts)


def ingest(
    config: CocoConfig,
    http: HttpClient,
    store: ObjectStore,
    catalog: Catalog,
    run_id: str,
    work_dir: Path,
    *,
    subset: Subset = EVERYTHING,
    annotations: str = ANNOTATIONS,
) -> dict[str, int]:
    """A whole run in one process: the plan, then its parts in order; returns counts (stored,
    already_known, skipped, objects_written, and what the downloads did)."""
    counts = dumps.in_one_process(
        plan(config, http, work_dir, subset=subset, annotations=annotations),
        partial(ingest_part, config, http, store, catalog, run_id, work_dir, subset=subset),
    )
    logger.info("COCO: %s", counts)
    return counts


def _sightings_file(work_dir: Path, split: str, subset: Subset) -> Path:
    """Where a split's wanted sightings are kept for the parts, named by the class subset that chose them."""
    classes = hashlib.sha256(json.dumps(sorted(subset.classes or ())).encode()).hexdigest()[:12]
    return work_dir / f"{split}.{classes if subset.classes else 'all'}.sightings.json"


def _sightings_by_member(index: Annotations, subset: Subset) -> dict[str, list[Any]]:
    """Member name -> [image id, flickr_url, license term, COCO's license name] for the images the annotations
    describe that are in the subset's classes: id, license (from its URL) and Flickr origin as COCO gives them."""
    wanted = {}
    for name, record in index.images.items():
        if index.in_classes(record["id"], subset.classes):
            wanted[name] = [record["id"], record.get("flickr_url"), *index.license(record.get("license"))]
    return wanted


def _check_classes(classes: tuple[str, ...], index: Annotations) -> None:
    unknown = sorted(set(classes) - index.category_names)
    if unknown:
        known = ", ".join(sorted(index.category_names))
        raise ValueError(f"COCO has no category {', '.join(unknown)} (it has {known})")


def read_annotations(path: Path, split: str, label: str | None = None) -> Annotations:
    """The image records, license names and categories of `annotations/instances_<split>.json` in the zip."""
    member_name = f"annotations/instances_{split}.json"
    found = list(iter_zip(path, wanted=lambda name: name == member_name, label=label))
    if not found:
        raise SourceUnavailable(f"{label or path}: no {member_name} in the annotations zip")
    try:
        document = json.loads(found[0].data)
        images = _records(document, "images", ("id", "file_name"))
        licenses = _records(document, "licenses", ("id", "name"))
        categories = _records(document, "categories", ("id", "name"))
        annotations = _records(document, "annotations", ("image_id", "category_id"))
    except ValueError as error:
        raise SourceUnavailable(f"{label or path}: {member_name} is not COCO's format ({error})") from None
    category_names = {category["id"]: str(category["name"]) for category in categories}
    by_image: dict[int, set[str]] = {}
    for annotation in annotations:
        name = category_names.get(annotation["category_id"])
        if name is not None:
            by_image.setdefault(annotation["image_id"], set()).add(name)
    return Annotations(
        images={f"{split}/{image['file_name']}": image for image in images},
        licenses={license["id"]: (from_url(license.get("url")), str(license["name"])) for license in licenses},
        categories_by_image=by_image,
        category_names=frozenset(category_names.values()),
    )


def _records(document: Any, key: str, fields: Iterable[str]) -> list[dict[str, Any]]:
    """`document[key]`, checked to be a list of objects that each have `fields`."""
    if not isinstance(document, dict) or not isinstance(document.get(key), list):
        raise ValueError(f"no {key} list")
    records = document[key]
    for record in records:
        if not isinstance(record, dict) or any(name not in record for name in fields):
            raise ValueError(f"an entry of {key} lacks {', '.join(fields)}")
    return records


CONNECTOR = Dump(CocoConfig.from_connection, client, SOURCE, plan, ingest_part, ingest_options)
