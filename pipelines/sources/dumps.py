"""What dataset-dump connectors (ImageNet, COCO) share: where a dump host is, the slice of a dump a run
takes, a work area that survives a retried task, verified downloads, and storing archive members.

A dump connector differs from a web connector: it does not discover photos one by one but downloads one
large archive, verifies it, and then reads its members in order. So:
- Every archive is downloaded, resumably, into the run's work area and verified *before* any member is
  registered. A corrupted archive (or a wrong checksum) fails the run with `ChecksumMismatch` and leaves
  the lake and the catalog exactly as they were.
- The md5 an archive is verified against is the one pinned in the connection, else the one the connector
  pins in code for the archive as its publisher made it. No checksum file is ever asked for: the real hosts
  (s3.amazonaws.com/fast-ai-imageclas, image-net.org, images.cocodataset.org) publish none. An archive with
  neither is taken unverified, and the log says so with its md5, for the operator to pin.
- Members are read from the verified archive as a stream (tar) or one by one (zip), never unpacked to
  disk, and each is mapped to a sighting by the connector (`to_sighting`), which returns None for members
  outside the subset or outside the dump's layout.
- Source ids already in the catalog are skipped in batches, so a rerun reads the archive again but writes
  nothing, and `max_images` counts every member taken into the slice (stored now or already known): the
  slice is the first `max_images` wanted members, the same on every run, and a rerun adds nothing.
- A run fans out: one task plans it (downloads and verifies every archive, then divides the members into
  `DumpPart`s of about equal bytes, each holding the share of `max_images` its members hold in order), and
  mapped tasks each store one part. A part that fails (a corrupt inner tar) fails alone, naming what it
  read; a retried part finds what it stored before in place and adds nothing twice.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from pipelines.archives import ArchiveEntry
from pipelines.catalog import Catalog, SightingRecord
from pipelines.downloads import DownloadResult, download
from pipelines.http import HttpClient, HttpPolicy, redact_url
from pipelines.raw_zone import RawZoneWriter
from pipelines.settings import Settings
from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)

# Members held in memory between two catalog look-ups: 100 ImageNet photos are about 11 MB.
BATCH_SIZE = 100
# A dump host may pause between chunks of a multi-GiB body far longer than an API does between answers.
READ_TIMEOUT_S = 300.0
MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")
SOURCE_NAME = re.compile(r"[a-z0-9_-]+")


@dataclass(frozen=True)
class DumpHost:
    """Where a dump's archives are published, and checksums pinned by the operator.

    `checksums` maps an archive's file name to its md5: pinned in the connection for archives whose md5 the
    connector does not know (COCO publishes none), or for a mirror's own version of a dump. It takes
    precedence over `published`, the md5s a connector pins in code for the archives as published.
    """

    service: ClassVar[str] = "dump"
    published: ClassVar[Mapping[str, str]] = {}
    base_url: str
    checksums: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        for name, digest in self.checksums.items():
            if not MD5_HEX.fullmatch(str(digest)):
                raise ValueError(f"the pinned checksum for {name} is not an md5 (32 hex digits): {digest!r}")

    @classmethod
    def from_connection(cls, connection: Any) -> Self:
        """From an Airflow connection (or anything with `.host` and `.extra_dejson`): host = the base URL of
        the dump host, extra `{"md5": {"<archive file name>": "<md5>"}}` = pinned checksums (optional)."""
        base_url = (connection.host or "").strip()
        if not base_url:
            raise ValueError(f"the {cls.service} connection needs host = the dump host's base URL")
        if "://" not in base_url:
            base_url = f"https://{base_url}"
        extra = getattr(connection, "extra_dejson", None) or {}
        pinned = extra.get("md5") or {}
        if not isinstance(pinned, Mapping):
            raise ValueError(f"the {cls.service} connection's extra md5 must map archive file names to md5s")
        return cls(base_url=base_url, checksums={str(name): str(digest) for name, digest in pinned.items()})

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def checksum(self, file_name: str) -> str | None:
        """The md5 to verify the archive `file_name` against: the connection's pin, else the published one."""
        return self.checksums.get(file_name) or self.published.get(file_name)


@dataclass(frozen=True)
class Subset:
    """The slice of a dump one run takes: some splits, some classes, at most `max_images` images.

    None means no restriction. The meaning of a class is the dump's own (ImageNet wnids, COCO category
    names); a member whose class the archive does not say (ILSVRC val images) is outside any class subset.
    """

    splits: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None
    max_images: int | None = None

    def __post_init__(self) -> None:
        for name in ("splits", "classes"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str):
                raise ValueError(f"{name} must be a sequence of names, not the string {value!r}")
            if not value:
                raise ValueError(f"an empty {name} selects nothing; use None to take every one")
            object.__setattr__(self, name, tuple(dict.fromkeys(str(item) for item in value)))
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be at least 1 (or None for no limit), got {self.max_images}")

    @classmethod
    def from_params(
        cls,
        splits: Sequence[str] | str | None = None,
        classes: Sequence[str] | str | None = None,
        max_images: int | str | None = None,
    ) -> Subset:
        """From DAG params, where lists may come as comma-separated text, an empty list means "all", and an
        empty or zero `max_images` means no limit."""

        def names(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
            items = value.split(",") if isinstance(value, str) else (value or [])
            cleaned = tuple(str(item).strip() for item in items if str(item).strip())
            return cleaned or None

        limit = int(max_images) if max_images not in (None, "") else None
        return cls(splits=names(splits), classes=names(classes), max_images=limit or None)

    def wants_split(self, split: str) -> bool:
        return self.splits is None or split in self.splits

    def wants_class(self, label: str | None) -> bool:
        return self.classes is None or label in self.classes

    def wants(self, split: str, label: str | None) -> bool:
        return self.wants_split(split) and self.wants_class(label)

    def check(self, splits: Iterable[str], what: str) -> None:
        """Refuse split names the dump does not have, so a typo fails at once instead of selecting nothing."""
        known = tuple(splits)
        unknown = [split for split in self.splits or () if split not in known]
        if unknown:
            raise ValueError(f"{what} has no split {', '.join(unknown)} (it has {', '.join(known)})")


EVERYTHING = Subset()  # the whole dump: every split, every class, no limit


@dataclass(frozen=True)
class DumpPart:
    """One mapped task's share of a run: members `first` to `stop` (in the archive's own order) of one
    verified archive, or its members of one `split` when the archive cannot be read by ranges (a .tgz), and
    at most `take` of them into the slice. Travels between tasks as a dict (`asdict`, `DumpPart(**...)`)."""

    archive_url: str
    first: int = 0
    stop: int | None = None
    split: str | None = None
    take: int | None = None

    @property
    def label(self) -> str:
        """What a log line or an error names this part by."""
        where = f"members {self.first} to {self.stop}" if self.stop is not None else f"split {self.split or 'all'}"
        return f"{redact_url(self.archive_url)} ({where})"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def divide(
    archive_url: str,
    sizes: Sequence[int],
    part_bytes: float,
    budget: int | None = None,
    wanted: Callable[[int], int] | None = None,
) -> tuple[list[DumpPart], int | None]:
    """An archive's members (by `sizes`, in order; 0 for members the run does not want) as contiguous parts
    of about `part_bytes` each. With a `budget` of images, only the members holding the slice's first
    `budget` wanted members are planned (`wanted(i)` counts member i's), each part taking what its members
    hold and the last one what is left of the budget; returns the parts and the budget still unspent."""
    count = len(sizes)
    takes: list[int] = []
    if budget is not None:
        if wanted is None:
            raise ValueError("a budget of images needs a count of what each member holds")
        left = budget
        count = 0
        while count < len(sizes) and left > 0:
            held = wanted(count) if sizes[count] else 0
            takes.append(min(held, left))
            left -= takes[-1]
            count += 1
    parts: list[DumpPart] = []
    first, filled, total = 0, 0, 0
    for index in range(count):
        filled += sizes[index]
        total += sizes[index]
        # A part closes where the next member's middle would pass the next multiple of `part_bytes`.
        following = sizes[index + 1] / 2 if index + 1 < count else 0
        if total + following > (len(parts) + 1) * part_bytes or index == count - 1:
            take = sum(takes[first : index + 1]) if budget is not None else None
            if filled or take:
                parts.append(DumpPart(archive_url, first, index + 1, take=take))
            elif parts:  # members with nothing to take join the part before, which counts them as skipped
                parts[-1] = replace(parts[-1], stop=index + 1)
            else:
                continue  # ... or the part after
            first, filled = index + 1, 0
    spent = sum(takes)
    return [part for part in parts if part.take != 0], (None if budget is None else budget - spent)


def part_bytes(total_bytes: int, parts: int) -> float:
    """The bytes each of `parts` parts should hold for a run of `total_bytes`."""
    if parts < 1:
        raise ValueError(f"a run needs at least one part, got {parts}")
    return max(1, total_bytes) / parts


def in_one_process(
    planned: tuple[list[DumpPart], Counter[str]], store_part: Callable[[DumpPart], dict[str, int]]
) -> dict[str, int]:
    """A whole run without Airflow: every planned part stored in turn, the counts added to the plan's."""
    parts, counts = planned
    for part in parts:
        counts.update(store_part(part))
    return dict(counts)


def planned_archive(work_area: Path, part: DumpPart) -> Path:
    """The verified download a part reads: the plan put it in the work area, and a part never downloads."""
    path = work_area / archive_file_name(part.archive_url)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {part.label} reads what the run's plan downloaded")
    return path


def work_dir(settings: Settings, source: str) -> Path:
    """The folder a source's downloads go to: `<home>/work/<source>`, the same path on every try, so a task
    retried after being killed mid-download finds its `.part` file and continues it."""
    if not SOURCE_NAME.fullmatch(source):
        raise ValueError(f"not a source name: {source!r}")
    path = settings.home / "work" / source
    path.mkdir(parents=True, exist_ok=True)
    return path


def client(settings: Settings) -> HttpClient:
    """An HTTP client for dump hosts, allowed to reach the allow-listed (sandbox) hosts."""
    return HttpClient(HttpPolicy(allowed_hosts=frozenset(settings.http_allowed_hosts), read_timeout_s=READ_TIMEOUT_S))


def archive_file_name(url: str) -> str:
    name = PurePosixPath(urlsplit(url).path).name
    if not name:
        raise ValueError(f"no file name in {redact_url(url)}")
    return name


def fetch_verified(host: DumpHost, http: HttpClient, url: str, work_area: Path) -> DownloadResult:
    """`url` downloaded (or continued, or reused) into `work_area` and verified against the md5 `host` holds
    for its file name. Without one it is taken unverified, and the warning names the md5 it has, so the
    operator can pin it and hold later runs to this version of the archive."""
    file_name = archive_file_name(url)
    checksum = host.checksum(file_name)
    result = download(http, url, work_area / file_name, checksum=checksum, algorithm="md5")
    if checksum is None:
        logger.warning(
            "%s was downloaded unverified: no md5 is pinned for %s. Its md5 is %s; pin it in the %s connection"
            ' (extra {"md5": {"%s": "%s"}}) to hold later runs to this version',
            redact_url(url),
            file_name,
            result.digest,
            host.service,
            file_name,
            result.digest,
        )
    return result


def download_counts(results: Iterable[DownloadResult]) -> Counter[str]:
    """What the downloads of a run did, for its summary next to the member counts."""
    counts: Counter[str] = Counter(archive_bytes=0, archives_reused=0, resumed_from_bytes=0)
    for result in results:
        counts["archive_bytes"] += result.size
        counts["archives_reused"] += result.reused
        counts["resumed_from_bytes"] += result.resumed_from
    return counts


def member_url(archive_url: str, member_name: str) -> str:
    """Where a member's bytes came from: the archive's URL with the member's path as the fragment."""
    return f"{archive_url}#{member_name}"


def store_members(
    members: Iterable[ArchiveEntry],
    to_sighting: Callable[[ArchiveEntry], SightingRecord | None],
    store: ObjectStore,
    catalog: Catalog,
    run_id: str,
    max_images: int | None = None,
    batch_size: int = BATCH_SIZE,
) -> dict[str, int]:
    """Store each archive member `to_sighting` takes, unless its source id is already in the catalog.

    Returns counts: `stored` (new sightings), `already_known` (taken but seen before), `skipped` (not taken:
    outside the subset or the layout), `objects_written` (new objects in the lake), `withdrawn` (refused: a
    takedown withdrew them). Reading stops once
    `max_images` members were taken, so the rest of the archive is never read. Rows are recorded a batch at
    a time, after the batch's objects.
    """
    counts: Counter[str] = Counter(stored=0, already_known=0, skipped=0, objects_written=0, withdrawn=0)
    if max_images is not None and max_images < 1:
        return dict(counts)
    batch: list[tuple[ArchiveEntry, SightingRecord]] = []
    taken = 0
    with RawZoneWriter(store, catalog, run_id, batch_size) as writer:
        for member in members:
            sighting = to_sighting(member)
            if sighting is None:
                counts["skipped"] += 1
                continue
            batch.append((member, sighting))
            taken += 1
            if len(batch) >= batch_size:
                _store_batch(batch, writer, catalog, counts)
                batch.clear()
            if max_images is not None and taken >= max_images:
                break
        _store_batch(batch, writer, catalog, counts)
    logger.info("took %d archive members: %s", taken, dict(counts))
    return dict(counts)


def _store_batch(
    batch: list[tuple[ArchiveEntry, SightingRecord]], writer: RawZoneWriter, catalog: Catalog, counts: Counter
) -> None:
    before = Counter(writer.counts)
    # A withdrawn member is refused first: its sighting is in the catalog (the tombstone), not merely known.
    batch = [(member, sighting) for member, sighting in batch if not writer.refuses(sighting)]
    known: set[tuple[str, str]] = set()
    for source in {sighting.source for _, sighting in batch}:
        ids = [sighting.source_id for _, sighting in batch if sighting.source == source]
        known.update((source, source_id) for source_id in catalog.known_source_ids(source, ids))
    new = 0
    for member, sighting in batch:
        if (sighting.source, sighting.source_id) in known:
            counts["already_known"] += 1
            continue
        # A source id met twice in one batch is stored once; the second counts as already known.
        known.add((sighting.source, sighting.source_id))
        new += writer.add(member.data, sighting, name_hint=member.name) is not None
    writer.flush()
    added = writer.counts["sightings_added"] - before["sightings_added"]
    counts["stored"] += added
    counts["already_known"] += new - added
    counts["objects_written"] += writer.counts["objects_written"] - before["objects_written"]
    counts["withdrawn"] += writer.counts["withdrawn"] - before["withdrawn"]
