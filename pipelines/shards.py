"""Stitch every accepted image, from every source, into one immutable dataset version of CIE Lab samples in
WebDataset tar shards: `datasets/<version>/<split>/<split>-NNNNN.tar` plus `datasets/<version>/manifest.json`.

A build has three steps, so an orchestrator can fan the middle one out over workers:

1. `plan_build`: select accepted images (optionally by source and fetch date), drop copies of the same
   photo that reached the lake from different sources, give each image its split by hashing its content,
   and cut the members into shards. The version is a hash of the member list and the transform
   parameters, so planning the same data twice names the same version, and an already published version
   is a no-op.
2. `write_shard`: for each shard, decode, orient, crop, resize and convert its images, writing the tar
   atomically. Shard bytes are reproducible (fixed tar metadata, sorted members), so rewriting one after a
   crash gives the same object.
3. `publish`: check every shard is in the lake, record membership in the catalog, then write the
   manifest. The manifest is the version's only mark of existence and goes last: a build killed at any
   point leaves no visible version, and its rerun completes it.

Samples are keyed by the image's sha256 and hold `lab.npy` (uint8, `load_size` square, encoding in
`pipelines.lab`) and `json` (sources, split, raw key). Training crops and flips at random, so shards keep a
margin (286 for 256 crops) and no augmentation.

    colorflow dataset build --source unsplash --source flickr --workers 2
    colorflow dataset show <version>
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import logging
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from datetime import time as clock_time
from typing import Any, BinaryIO

import cv2
import numpy as np
import simplejpeg
from PIL import Image as PILImage
from PIL import ImageOps
from sqlalchemy import select

from pipelines.catalog import Catalog, DatasetMember, DatasetVersion, Image, ImageStatus, Sighting, utcnow
from pipelines.image_facts import DECODED_FORMATS, EXIF_ORIENTATION, as_rgb
from pipelines.lab import LAB_ENCODING, lab8_from_npy, npy_header, npy_view, rgb_to_lab8
from pipelines.near_duplicates import keep_first
from pipelines.settings import NEAR_DUPLICATE_DISTANCE
from pipelines.storage import ObjectNotFound, ObjectStore, open_store

logger = logging.getLogger(__name__)

DATASETS_PREFIX = "datasets"
SHARD_LAYOUT_VERSION = 1  # bump when sample contents change, so old and new shards never share a version
SPLITS = ("train", "val", "test")
QUERY_BATCH_ROWS = 10_000  # rows fetched from the catalog at a time when streaming candidates
# libjpeg's DCT scaling (1/2, 1/4, 1/8) leaves at most a 2x reduction; above that, area averaging avoids
# the aliasing a bilinear resize would add.
AREA_RESIZE_FACTOR = 2.0
# Every EXIF block in a JPEG starts with this identifier (APP1 segment, EXIF 2.3 section 4.7.2).
EXIF_APP1_IDENTIFIER = b"Exif\x00\x00"
JPEG_MARKER_PREFIX, JPEG_APP1, JPEG_START_OF_SCAN = 0xFF, 0xE1, 0xDA
# EXIF orientation to the transpose that shows the image upright (the table Pillow's exif_transpose uses).
ORIENTATION_TRANSPOSE = {
    2: PILImage.Transpose.FLIP_LEFT_RIGHT,
    3: PILImage.Transpose.ROTATE_180,
    4: PILImage.Transpose.FLIP_TOP_BOTTOM,
    5: PILImage.Transpose.TRANSPOSE,
    6: PILImage.Transpose.ROTATE_270,
    7: PILImage.Transpose.TRANSVERSE,
    8: PILImage.Transpose.ROTATE_90,
}
READ_BUFFER = 256 << 10  # tarfile's stream default (10 KiB) means dozens of reads and joins per sample
CROP_TOLERANCE = 0.10
JPEG_EXTENSIONS = frozenset({"jpg", "jpeg"})
NPY_EXTENSION = "npy"


class TransformError(ValueError):
    """An accepted image that still cannot become a sample; it is left out with this reason, not fatal."""


@dataclass(frozen=True)
class ShardParams:
    """What a dataset version is made of. Only the transform fields enter the version hash: the filters act
    through the member list, so two filters that select the same images name the same version."""

    load_size: int = 286  # training takes random 256 crops, as in pix2pix (load 286, crop 256)
    shard_size: int = 500  # samples per shard: about 120 MB, large enough to stream efficiently
    split_ratios: tuple[tuple[str, float], ...] = (("train", 0.90), ("val", 0.05), ("test", 0.05))
    near_duplicate_distance: int = NEAR_DUPLICATE_DISTANCE  # perceptual-hash bits of 64
    sources: tuple[str, ...] = ()  # empty: every source
    since: date | None = None  # first fetched on or after this day (UTC)
    until: date | None = None  # first fetched before this day (UTC)

    def __post_init__(self) -> None:
        if self.load_size < 16 or self.shard_size < 1:
            raise ValueError("load_size must be at least 16 and shard_size at least 1")
        names = [name for name, _ in self.split_ratios]
        if sorted(names) != sorted(SPLITS) or any(ratio < 0 for _, ratio in self.split_ratios):
            raise ValueError(f"split_ratios must give a non-negative ratio to each of {SPLITS}")
        if not abs(sum(ratio for _, ratio in self.split_ratios) - 1.0) < 1e-6:
            raise ValueError("split_ratios must add up to 1")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ShardParams:
        """From JSON-ish values (DAG params, CLI): ratios as a mapping, days as ISO strings; None is default."""
        given = {name: value for name, value in values.items() if value is not None}
        if isinstance(given.get("split_ratios"), dict):
            given["split_ratios"] = tuple((name, float(ratio)) for name, ratio in given["split_ratios"].items())
        for day in ("since", "until"):
            if isinstance(given.get(day), str):
                given[day] = date.fromisoformat(given[day])
        if "sources" in given:
            given["sources"] = tuple(sorted(given["sources"]))
        return cls(**given)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["split_ratios"] = dict(self.split_ratios)
        values["sources"] = list(self.sources)
        values["since"] = self.since.isoformat() if self.since else None
        values["until"] = self.until.isoformat() if self.until else None
        return values

    def transform_fields(self) -> dict[str, Any]:
        return {
            "load_size": self.load_size,
            "shard_size": self.shard_size,
            "split_ratios": dict(self.split_ratios),
            "encoding": LAB_ENCODING["name"],
            "layout": SHARD_LAYOUT_VERSION,
        }


@dataclass(frozen=True)
class DatasetImage:
    """One image of a dataset version: its bytes' address and where it goes."""

    sha256: str
    raw_key: str
    format: str
    sources: tuple[str, ...]
    split: str = ""


@dataclass(frozen=True)
class AcceptedImage:
    """An accepted image before de-duplication, with what the choice between copies looks at."""

    member: DatasetImage
    phash: str | None
    first_seen_at: datetime


@dataclass
class ShardSpec:
    """One shard to write: its key and members, in the order they go into the tar."""

    key: str
    split: str
    members: list[DatasetImage]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "split": self.split, "members": [asdict(member) for member in self.members]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ShardSpec:
        members = [DatasetImage(**{**member, "sources": tuple(member["sources"])}) for member in values["members"]]
        return cls(key=values["key"], split=values["split"], members=members)


@dataclass
class BuildPlan:
    """Everything `publish` needs besides the shards' own results; small enough for an XCom."""

    version: str
    params: ShardParams
    shards: list[ShardSpec]
    source_mix: dict[str, int]
    duplicates_dropped: dict[str, str] = field(default_factory=dict)
    published: bool = False

    @property
    def manifest_key(self) -> str:
        return manifest_key(self.version)

    def summary(self) -> dict[str, Any]:
        """The plan without its member lists (those travel with each shard)."""
        return {
            "version": self.version,
            "params": self.params.to_dict(),
            "source_mix": self.source_mix,
            "duplicates_dropped": self.duplicates_dropped,
            "published": self.published,
            "shards": len(self.shards),
        }


def group_shards(shards: Sequence[ShardSpec], max_groups: int) -> list[list[dict[str, Any]]]:
    """Shards dealt round-robin into at most `max_groups` lists (one per mapped task): an orchestrator caps
    how many tasks one map may start, and a dataset may have more shards than that."""
    groups = [[spec.to_dict() for spec in shards[start::max_groups]] for start in range(max_groups)]
    return [group for group in groups if group]


def manifest_key(version: str) -> str:
    return f"{DATASETS_PREFIX}/{version}/manifest.json"


def split_of(sha256: str, split_ratios: Sequence[tuple[str, float]]) -> str:
    """The split an image belongs to, from its content hash alone: it never moves as the dataset grows, and
    a photo met again from another source lands where it was."""
    position = int(sha256[:15], 16) / 16**15
    cumulative = 0.0
    for name, ratio in split_ratios:
        cumulative += ratio
        if position < cumulative:
            return name
    return split_ratios[-1][0]


def select_accepted(catalog: Catalog, params: ShardParams) -> list[AcceptedImage]:
    """Accepted images with at least one sighting inside the filters, each with every source it came from."""
    query = (
        select(Image.sha256, Image.raw_key, Image.format, Image.phash, Image.first_seen_at, Sighting.source)
        .join(Sighting, Sighting.image_sha256 == Image.sha256)
        .where(Image.status == ImageStatus.ACCEPTED)
    )
    if params.sources:
        query = query.where(Sighting.source.in_(params.sources))
    if params.since:
        query = query.where(Sighting.fetched_at >= datetime.combine(params.since, clock_time(), UTC))
    if params.until:
        query = query.where(Sighting.fetched_at < datetime.combine(params.until, clock_time(), UTC))
    # In sha256 order (the index's own), an image's sightings arrive together: each image is built once,
    # streamed from the cursor, without holding every row first.
    query = query.order_by(Image.sha256).execution_options(yield_per=QUERY_BATCH_ROWS)
    accepted: list[AcceptedImage] = []
    with catalog.session() as session:
        for sha256, group in itertools.groupby(session.execute(query), key=lambda row: row[0]):
            rows = list(group)
            first = rows[0]
            member = DatasetImage(sha256, first.raw_key, first.format, tuple(sorted({row.source for row in rows})))
            accepted.append(AcceptedImage(member=member, phash=first.phash, first_seen_at=first.first_seen_at))
    return accepted


def drop_near_duplicates(
    candidates: Iterable[AcceptedImage], max_distance: int
) -> tuple[list[AcceptedImage], dict[str, str]]:
    """Keep one image per photo: the first seen (so a growing dataset keeps the members it had), dropping
    any whose perceptual hash is within `max_distance` bits of a kept one. Identical bytes are one image
    already (the lake is content-addressed); this catches the same photo re-encoded or resized by another
    source, which the quality stage can miss when two sources were validated at the same time.

    Returns the kept candidates and, for each dropped image, the image it copies."""
    ordered = sorted(candidates, key=lambda candidate: (candidate.first_seen_at, candidate.member.sha256))
    # Hashes of different lengths are never alike; each length is its own greedy pass.
    by_hash_length: dict[int, list[tuple[str, str]]] = {}
    for candidate in ordered:
        if candidate.phash:
            by_hash_length.setdefault(len(candidate.phash), []).append((candidate.phash, candidate.member.sha256))
    originals: dict[str, str] = {}
    for group in by_hash_length.values():
        selection = keep_first([phash for phash, _ in group], max_distance)
        for position in selection.dropped.tolist():
            originals[group[position][1]] = group[selection.nearest_kept[position]][1]
    kept = [candidate for candidate in ordered if candidate.member.sha256 not in originals]
    dropped = {
        candidate.member.sha256: originals[candidate.member.sha256]
        for candidate in ordered
        if candidate.member.sha256 in originals
    }
    return kept, dropped


def plan_build(store: ObjectStore, catalog: Catalog, params: ShardParams) -> BuildPlan:
    """Decide the version and its shards (see the module docstring); nothing is written."""
    kept, dropped = drop_near_duplicates(select_accepted(catalog, params), params.near_duplicate_distance)
    members = sorted(
        (replace(candidate.member, split=split_of(candidate.member.sha256, params.split_ratios)) for candidate in kept),
        key=lambda member: (SPLITS.index(member.split), member.sha256),
    )
    identity = {"members": [member.sha256 for member in members], "transform": params.transform_fields()}
    version = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    shards: list[ShardSpec] = []
    for split in SPLITS:
        in_split = [member for member in members if member.split == split]
        for number, start in enumerate(range(0, len(in_split), params.shard_size)):
            key = f"{DATASETS_PREFIX}/{version}/{split}/{split}-{number:05d}.tar"
            shards.append(ShardSpec(key, split, in_split[start : start + params.shard_size]))
    # Each image counts once in the mix, under the first source (by name) that offered it.
    source_mix = dict(sorted(Counter(member.sources[0] for member in members).items()))
    return BuildPlan(
        version=version,
        params=params,
        shards=shards,
        source_mix=source_mix,
        duplicates_dropped=dropped,
        published=store.exists(manifest_key(version)),
    )


def transform_image(data: bytes, image_format: str, load_size: int) -> np.ndarray:
    """Raw bytes to a `load_size` square of 8-bit Lab, as a person sees the photo (EXIF orientation
    applied), center-cropped and resized. Raises `TransformError` for anything that cannot be read."""
    try:
        if image_format == NPY_EXTENSION:
            return np.ascontiguousarray(_square(_lab_array(data), load_size))
        if image_format in JPEG_EXTENSIONS:
            try:
                return rgb_to_lab8(_decode_jpeg(data, load_size))
            except ValueError:  # CMYK, lossless or otherwise unusual JPEG: Pillow reads what libjpeg-turbo won't
                pass
        return rgb_to_lab8(_decode_other(data, load_size))
    except TransformError:
        raise
    except Exception as error:  # a decoder's own error, whatever its type: one image, not the build
        raise TransformError(f"cannot decode {image_format}: {error}") from error


def _decode_jpeg(data: bytes, load_size: int) -> np.ndarray:
    """The fast path: libjpeg-turbo decodes straight into an array at the smallest DCT scale that still
    covers `load_size`, so a 1600x1200 photo costs about a quarter of a full decode."""
    rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=load_size, min_width=load_size)
    orientation = _exif_orientation(data)
    square = _square(rgb, load_size)
    # A center square turns with the photo, so orienting after the crop shows the same pixels for less work.
    if orientation in ORIENTATION_TRANSPOSE:
        square = np.asarray(PILImage.fromarray(square).transpose(ORIENTATION_TRANSPOSE[orientation]))
    return square


def _exif_orientation(data: bytes) -> int:
    """The JPEG's EXIF orientation (1, upright, when it has none). Most photos reaching the stitch carry no
    EXIF at all, and finding that out costs far less than parsing the headers with Pillow."""
    if not _may_have_exif(data):
        return 1
    with PILImage.open(io.BytesIO(data)) as header:
        return header.getexif().get(EXIF_ORIENTATION, 1)


def _may_have_exif(data: bytes) -> bool:
    """Whether an APP1 segment holds EXIF. Header segments all come before the first scan, so walking their
    markers stops after a few hundred bytes, where a byte search reads through the whole compressed image
    (a tenth of a millisecond at 1600x1200). Bytes that are not a clean run of segments, which Pillow
    still reads, fall back to that search: a false "maybe" only costs the header parse."""
    position = 2  # past SOI
    while position + 4 <= len(data) and data[position] == JPEG_MARKER_PREFIX:
        marker = data[position + 1]
        if marker == JPEG_START_OF_SCAN:
            return False
        if marker == JPEG_MARKER_PREFIX:  # a fill byte before a marker
            position += 1
            continue
        if marker == JPEG_APP1 and data.startswith(EXIF_APP1_IDENTIFIER, position + 4):
            return True
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return EXIF_APP1_IDENTIFIER in data


def _decode_other(data: bytes, load_size: int) -> np.ndarray:
    with PILImage.open(io.BytesIO(data), formats=DECODED_FORMATS) as image:
        image.draft("RGB", (load_size, load_size))
        upright = ImageOps.exif_transpose(image)
        return _square(np.asarray(as_rgb(upright)), load_size)


def _lab_array(data: bytes) -> np.ndarray:
    """A Kaggle sample: already 8-bit Lab in this encoding, so it skips any RGB round trip."""
    try:
        return lab8_from_npy(data)
    except ValueError as error:
        raise TransformError(str(error)) from None


def _square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Center-crop to a square and resize it to `size` (works on RGB and Lab alike: both are 3 x uint8).

    When the short side is already within `CROP_TOLERANCE` of `size` (JPEG's DCT scaling usually lands
    there), the center `size` square is cut out directly: a few percent tighter framing, no resampling blur,
    and a tenth of the transform's time saved."""
    height, width = pixels.shape[:2]
    side = min(height, width)
    if size <= side <= size * (1 + CROP_TOLERANCE):
        side = size
    top, left = (height - side) // 2, (width - side) // 2
    square = pixels[top : top + side, left : left + side]
    if side == size:
        return square  # a view: the Lab conversion reads it in place
    interpolation = cv2.INTER_AREA if side >= AREA_RESIZE_FACTOR * size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)


@dataclass(frozen=True)
class Sample:
    """One sample read back from a shard."""

    key: str
    lab8: np.ndarray
    meta: dict[str, Any]


class _HashingWriter:
    """Passes bytes through to the lake while counting and hashing them, so the manifest's checksum costs no
    second read of the shard."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


class _TarShard:
    """Samples in the WebDataset layout (`<key>.json`, `<key>.lab.npy`, consecutive), written with
    tarfile's own headers but without its copy loop: the Lab pixels go from the array to the lake in one
    write, which matters when writing a shard costs little more than decoding its JPEGs."""

    def __init__(self, sink: _HashingWriter) -> None:
        self.sink = sink

    def add(self, member: DatasetImage, lab8: np.ndarray) -> None:
        meta = {"sha256": member.sha256, "sources": list(member.sources), "split": member.split, "raw": member.raw_key}
        text = json.dumps(meta, sort_keys=True).encode()
        pixels = memoryview(lab8).cast("B")
        npy = npy_header(lab8.shape, lab8.dtype.str)
        # Everything but the pixels goes out in one write: a sample is three writes, not seven.
        self.sink.write(
            b"".join(
                (
                    _tar_header(f"{member.sha256}.json", len(text)),
                    text,
                    _padding(len(text)),
                    _tar_header(f"{member.sha256}.lab.npy", len(npy) + len(pixels)),
                    npy,
                )
            )
        )
        self.sink.write(pixels)
        self.sink.write(_padding(len(npy) + len(pixels)))

    def close(self) -> None:
        """The end-of-archive marker (two zero blocks), padded to a whole record as tarfile does."""
        self.sink.write(bytes(2 * tarfile.BLOCKSIZE))
        self.sink.write(bytes(-self.sink.size % tarfile.RECORDSIZE))


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uname, info.gname = size, 0o444, "colorflow", "colorflow"
    return info.tobuf(tarfile.USTAR_FORMAT)  # mtime 0: the same samples give the same bytes


def _padding(size: int) -> bytes:
    return bytes(-size % tarfile.BLOCKSIZE)


def write_shard(store: ObjectStore, spec: ShardSpec, load_size: int) -> dict[str, Any]:
    """Transform the shard's images and write its tar atomically; returns what the manifest records about
    it. An image that fails is left out with its reason; a missing raw object is a lake fault and raises."""
    started = time.perf_counter()
    written: list[str] = []
    failures: list[dict[str, str]] = []
    with store.open_write(spec.key) as target:
        sink = _HashingWriter(target)
        tar = _TarShard(sink)
        for member in spec.members:
            data = store.get(member.raw_key)
            try:
                lab8 = transform_image(data, member.format, load_size)
            except TransformError as error:
                failures.append({"sha256": member.sha256, "reason": str(error)})
                logger.warning("left out %s: %s", member.sha256, error)
                continue
            tar.add(member, lab8)
            written.append(member.sha256)
        tar.close()
    elapsed = time.perf_counter() - started
    logger.info(
        "wrote %s: %d samples, %.1f MB in %.1f s (%.0f images/s)",
        spec.key,
        len(written),
        sink.size / 1e6,
        elapsed,
        len(spec.members) / max(elapsed, 1e-9),
    )
    return {
        "key": spec.key,
        "split": spec.split,
        "samples": len(written),
        "bytes": sink.size,
        "sha256": sink.digest.hexdigest(),
        "members": written,
        "failures": failures,
    }


def publish(store: ObjectStore, catalog: Catalog, plan: dict[str, Any], shards: Sequence[dict[str, Any]]) -> dict:
    """Make the version visible: verify the shards, record membership, write the manifest last.

    `plan` is `BuildPlan.summary()`. Publishing a version that already has a manifest returns that manifest
    unchanged, so a retried or repeated build never rewrites history."""
    version = plan["version"]
    key = manifest_key(version)
    if store.exists(key):
        return load_manifest(store, version)
    shards = sorted(shards, key=lambda shard: shard["key"])
    for shard in shards:
        try:
            size = store.size(shard["key"])
        except ObjectNotFound:
            raise RuntimeError(f"shard {shard['key']} is missing: the version cannot be published") from None
        if size != shard["bytes"]:
            raise RuntimeError(f"shard {shard['key']} has {size} bytes, {shard['bytes']} were written")
    split_counts = {split: sum(s["samples"] for s in shards if s["split"] == split) for split in SPLITS}
    manifest = {
        "version": version,
        "created_at": utcnow().isoformat(),
        "params": plan["params"],
        "encoding": LAB_ENCODING,
        "sample_count": sum(split_counts.values()),
        "splits": split_counts,
        "source_mix": plan["source_mix"],
        "duplicates_dropped": len(plan["duplicates_dropped"]),
        "failures": [failure for shard in shards for failure in shard["failures"]],
        "shards": [{key: shard[key] for key in ("key", "split", "samples", "bytes", "sha256")} for shard in shards],
    }
    _record_membership(catalog, manifest, shards)
    store.put(key, json.dumps(manifest, indent=2).encode())
    logger.info("published dataset %s: %d samples %s", version, manifest["sample_count"], split_counts)
    return manifest


def _record_membership(catalog: Catalog, manifest: dict[str, Any], shards: Sequence[dict[str, Any]]) -> None:
    version = manifest["version"]
    members = [
        {"version": version, "image_sha256": sha256, "split": shard["split"], "shard": shard["key"]}
        for shard in shards
        for sha256 in shard["members"]
    ]
    row = {
        "version": version,
        "manifest_key": manifest_key(version),
        "params": manifest["params"],
        "sample_count": manifest["sample_count"],
        "created_at": utcnow(),
    }
    with catalog.session() as session:
        catalog.upsert(session, DatasetVersion, [row], key=["version"])
        catalog.upsert(session, DatasetMember, members, key=["version", "image_sha256"])


def latest_version(catalog: Catalog) -> str | None:
    """The most recently published dataset version, if any."""
    with catalog.session() as session:
        return session.scalar(select(DatasetVersion.version).order_by(DatasetVersion.created_at.desc()).limit(1))


def load_manifest(store: ObjectStore, version: str) -> dict[str, Any]:
    """A published version's manifest; `ObjectNotFound` when the version was never (fully) published."""
    return json.loads(store.get(manifest_key(version)))


def iter_samples(store: ObjectStore, key: str) -> Iterator[Sample]:
    """Stream one shard's samples back: the reading half of `_TarShard`, for training and checks."""
    with store.open_read(key) as stream, _open_tar(stream) as tar:
        parts: dict[str, bytes] = {}
        current = None
        for entry in tar:
            if not entry.isfile():
                continue
            sample_key, _, extension = entry.name.partition(".")
            if current is not None and sample_key != current:
                yield _decode_sample(current, parts)
                parts = {}
            current = sample_key
            parts[extension] = tar.extractfile(entry).read()
        if current is not None:
            yield _decode_sample(current, parts)


def _open_tar(stream: BinaryIO) -> tarfile.TarFile:
    """Random access where the lake allows it (a local file), else a forward-only stream (S3). tarfile's
    stream mode copies its buffer on every read, which alone halves the loader's speed on local disk."""
    if stream.seekable():
        return tarfile.open(fileobj=stream, mode="r:")
    return tarfile.open(fileobj=stream, mode="r|", bufsize=READ_BUFFER)


def _decode_sample(key: str, parts: dict[str, bytes]) -> Sample:
    return Sample(key=key, lab8=npy_view(parts["lab.npy"]), meta=json.loads(parts["json"]))


def _write_shard_in_worker(lake_url: str, spec: dict[str, Any], load_size: int) -> dict[str, Any]:
    return write_shard(open_store(lake_url), ShardSpec.from_dict(spec), load_size)


def stitch_dataset(
    store: ObjectStore, catalog: Catalog, params: ShardParams, workers: int = 1, lake_url: str | None = None
) -> dict[str, Any]:
    """Plan, write and publish in one process (CLI, benchmarks, tests); the DAG runs the same three steps as
    tasks. With `workers` > 1 shards are written by that many processes, which open the lake at
    `lake_url`."""
    plan = plan_build(store, catalog, params)
    if plan.published:
        logger.info("dataset %s is already published", plan.version)
        return load_manifest(store, plan.version)
    logger.info("building dataset %s: %d shards", plan.version, len(plan.shards))
    if workers > 1 and len(plan.shards) > 1:
        if lake_url is None:
            raise ValueError("several workers need the lake URL to open the store in each process")
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(_write_shard_in_worker, lake_url, spec.to_dict(), params.load_size) for spec in plan.shards
            ]
            results = [future.result() for future in futures]
    else:
        results = [write_shard(store, spec, params.load_size) for spec in plan.shards]
    return publish(store, catalog, plan.summary(), results)


def describe(manifest: dict[str, Any]) -> str:
    """A few lines a person reads after a build: size, splits, source mix, anything left out."""
    size_mb = sum(shard["bytes"] for shard in manifest["shards"]) / 1e6
    lines = [
        f"dataset {manifest['version']}: {manifest['sample_count']} samples in {len(manifest['shards'])} shards "
        f"({size_mb:.1f} MB), {manifest['params']['load_size']} px Lab",
        "  splits: " + ", ".join(f"{split} {count}" for split, count in manifest["splits"].items()),
        "  sources: " + ", ".join(f"{source} {count}" for source, count in sorted(manifest["source_mix"].items())),
        f"  near duplicates dropped: {manifest['duplicates_dropped']}, left out: {len(manifest['failures'])}",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`colorflow dataset build|show` (and `python -m pipelines.shards`)."""
    commands = parser.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    build = commands.add_parser(
        "build",
        help="build (or find) the dataset version of the accepted images",
        description="Stitch the accepted images into a dataset version of Lab shards in the lake, or find the"
        " version they already make; prints its summary. The DAG build_dataset runs the same steps.",
    )
    build.add_argument("--source", action="append", default=None, help="only images from this source (repeatable)")
    build.add_argument("--since", help="only images first fetched on or after this day (YYYY-MM-DD)")
    build.add_argument("--until", help="only images first fetched before this day (YYYY-MM-DD)")
    build.add_argument(
        "--load-size", type=int, default=ShardParams.load_size, help="side of the stored square (%(default)s)"
    )
    build.add_argument("--shard-size", type=int, default=ShardParams.shard_size, help="samples per shard (%(default)s)")
    build.add_argument("--workers", type=int, default=1, help="processes writing shards (%(default)s)")
    build.set_defaults(run=_build)
    show = commands.add_parser(
        "show", help="print a published version's summary", description="Print a published version's summary."
    )
    show.add_argument("version", help="the dataset version (as build prints it)")
    show.set_defaults(run=_show)


def _show(args: argparse.Namespace) -> int:
    from pipelines.settings import get_settings

    try:
        print(describe(load_manifest(open_store(settings=get_settings()), args.version)))
    except ObjectNotFound:
        print(f"error: no published dataset version {args.version}", file=sys.stderr)
        return 1
    return 0


def _build(args: argparse.Namespace) -> int:
    from pipelines.catalog import open_catalog
    from pipelines.settings import get_settings

    settings = get_settings()
    store = open_store(settings=settings)
    params = ShardParams.from_dict(
        {
            "sources": args.source,
            "since": args.since,
            "until": args.until,
            "load_size": args.load_size,
            "shard_size": args.shard_size,
        }
    )
    manifest = stitch_dataset(store, open_catalog(settings), params, workers=args.workers, lake_url=settings.lake_url)
    print(describe(manifest))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.shards", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
