"""The lake audit: does the lake hold exactly what the catalog says, and nothing half-written?

Every stage writes the object before the row that names it, so a crash leaves at worst an object without
its row, never the reverse; a catalog that lost acknowledged commits, or hands that deleted objects, leave
drift that nothing else would notice. The audit compares the two and reports each kind of drift:

- a raw object with no image row (or not named by a content hash at all);
- an image row whose raw object is missing (a withdrawn image's is missing on purpose);
- a withdrawn image whose bytes are still in the lake (a takedown cut short);
- a raw object whose bytes do not hash to its name (with `checksums`);
- a sighting of an image the catalog does not have;
- a dataset version recorded without its manifest, a dataset member in a shard that is missing, a shard
  whose bytes differ from its manifest (with `checksums`);
- a staged write or multipart upload left unfinished for longer than `stale_after`.

Cost is linear in the lake's size and memory is bounded by one bucket: the raw zone is listed once, in
key order and in pages, and matched bucket by bucket (`raw/<two hex digits>/`) against the image rows of
the same hash range, read through the primary key. Objects and rows younger than `grace` are left out, so
a run in progress is not mistaken for drift.

`repair` rebuilds what the lake itself can rebuild: an image row from its object's bytes (the photo is
pending again; its sighting returns when the ingestion that stored it runs again, and the finding names
that day), a missing raw object from its quarantine copy, a withdrawn image's bytes are deleted, and unfinished writes
are thrown away. The rest
is reported for a person to decide.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select

from pipelines.catalog import Catalog, DatasetMember, DatasetVersion, Image, ImageStatus, Sighting, as_utc, utcnow
from pipelines.raw_zone import RAW_PREFIX, quarantine_key
from pipelines.stitch import manifest_key
from pipelines.storage import ObjectEntry, ObjectNotFound, ObjectStore

logger = logging.getLogger(__name__)

BUCKETS = [f"{number:02x}" for number in range(256)]
CONTENT_ADDRESS = re.compile(r"raw/(?P<bucket>[0-9a-f]{2})/(?P<sha256>(?P=bucket)[0-9a-f]{62})\.(?P<extension>\w+)")
HASH_CHUNK_BYTES = 1 << 20
REPORT_PREFIX = "reports/audit"
SHOWN_PER_KIND = 20  # findings printed per kind; the JSON report lists every one


class LakeDrift(RuntimeError):
    """The audit found drift that is still there: retrying cannot help, a person must look."""


class Drift(StrEnum):
    """Each way the lake and the catalog can disagree."""

    ORPHAN_OBJECT = "raw object with no image row"
    MISSING_OBJECT = "image row whose raw object is missing"
    WITHDRAWN_OBJECT = "withdrawn image whose bytes are still in the lake"
    CORRUPT_OBJECT = "raw object whose bytes do not match its name"
    UNKNOWN_IMAGE = "sighting of an image the catalog does not have"
    MISSING_MANIFEST = "dataset version recorded without its manifest"
    MISSING_SHARD = "dataset members in a shard that is missing"
    ALTERED_SHARD = "shard whose bytes differ from its manifest"
    UNFINISHED_WRITE = "staged write or multipart upload left unfinished"


@dataclass
class Finding:
    kind: Drift
    subject: str  # the object key, image, sighting or upload concerned
    detail: str
    repaired: str | None = None  # what the repair did, when it could


@dataclass
class AuditReport:
    lake: str
    started_at: datetime
    checksums: bool
    repair: bool
    scanned: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    finished_at: datetime | None = None

    @property
    def unrepaired(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.repaired is None]

    def counts(self) -> dict[str, int]:
        return dict(Counter(finding.kind.name.lower() for finding in self.findings))

    def to_dict(self) -> dict[str, Any]:
        return {
            "lake": self.lake,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "checksums": self.checksums,
            "repair": self.repair,
            "scanned": dict(self.scanned),
            "counts": self.counts(),
            "repaired": sum(finding.repaired is not None for finding in self.findings),
            "findings": [{**asdict(finding), "kind": finding.kind.name.lower()} for finding in self.findings],
        }

    def summary(self) -> str:
        """What a person reads first: what was scanned, then each kind of drift with its first findings."""
        scanned = ", ".join(f"{count} {what}" for what, count in sorted(self.scanned.items()))
        lines = [f"lake audit of {self.lake}: scanned {scanned or 'nothing'}"]
        if not self.findings:
            lines.append("no drift: the lake and the catalog agree")
        for kind in Drift:
            found = [finding for finding in self.findings if finding.kind is kind]
            if not found:
                continue
            repaired = sum(finding.repaired is not None for finding in found)
            lines.append(f"{len(found)} {kind.value}" + (f" ({repaired} repaired)" if repaired else ""))
            for finding in found[:SHOWN_PER_KIND]:
                outcome = f" -> {finding.repaired}" if finding.repaired else ""
                lines.append(f"  {finding.subject}: {finding.detail}{outcome}")
            if len(found) > SHOWN_PER_KIND:
                lines.append(f"  ... and {len(found) - SHOWN_PER_KIND} more (all in the JSON report)")
        return "\n".join(lines)


def audit_lake(
    store: ObjectStore,
    catalog: Catalog,
    *,
    checksums: bool = False,
    repair: bool = False,
    grace: timedelta = timedelta(hours=1),
    stale_after: timedelta = timedelta(days=1),
) -> AuditReport:
    """Compare the lake with the catalog; with `repair`, rebuild what can be rebuilt (see the module)."""
    report = AuditReport(store.url, utcnow(), checksums, repair)
    settled_before = report.started_at - grace
    _audit_raw_zone(store, catalog, report, settled_before)
    _audit_sightings(catalog, report)
    _audit_datasets(store, catalog, report, settled_before)
    _audit_unfinished_writes(store, report, report.started_at - stale_after)
    report.finished_at = utcnow()
    logger.info("lake audit finished: %s", report.counts() or "no drift")
    return report


def write_report(store: ObjectStore, report: AuditReport, name: str) -> str:
    """Keep the report in the lake under `reports/audit/<name>.json`; returns its key."""
    key = f"{REPORT_PREFIX}/{name}.json"
    store.put(key, json.dumps(report.to_dict(), indent=2).encode())
    return key


def check_lake(store: ObjectStore, catalog: Catalog, report_name: str, **options: Any) -> AuditReport:
    """Audit (`options` as for `audit_lake`), log the summary, keep the report in the lake, and raise
    `LakeDrift` when drift remains, so a scheduled audit fails and alerts."""
    report = audit_lake(store, catalog, **options)
    key = write_report(store, report, report_name)
    logger.info("%s\nreport: %s", report.summary(), store.uri(key))
    if report.unrepaired:
        counts = ", ".join(
            f"{count} {kind}" for kind, count in Counter(f.kind.value for f in report.unrepaired).items()
        )
        raise LakeDrift(f"the lake and the catalog disagree: {counts}; see {store.uri(key)}")
    return report


def _listing_place(entry: ObjectEntry) -> str:
    """Where a raw key sorts among the bucket folders: its first part below `raw/`, with the slash when it is
    a folder, because a listing puts `raw/ab.txt` before `raw/ab/...`."""
    rest = entry.key[len(RAW_PREFIX) + 1 :]
    folder, slash, _ = rest.partition("/")
    return folder + slash


def _audit_raw_zone(store: ObjectStore, catalog: Catalog, report: AuditReport, settled_before: datetime) -> None:
    groups = itertools.groupby(store.entries(f"{RAW_PREFIX}/"), key=_listing_place)
    pending = next(groups, None)
    for number, bucket in enumerate(BUCKETS):
        # Keys outside the 256 hash buckets sort between them: none can be a content address.
        while pending is not None and pending[0] < f"{bucket}/":
            _report_strays(list(pending[1]), report, settled_before)
            pending = next(groups, None)
        objects: list[ObjectEntry] = []
        if pending is not None and pending[0] == f"{bucket}/":
            objects = list(pending[1])
            pending = next(groups, None)
        _audit_bucket(store, catalog, report, bucket, objects, settled_before)
        if number % 32 == 31:
            logger.info("lake audit: raw zone %d%% (%d objects)", (number + 1) * 100 // 256, report.scanned["objects"])
    while pending is not None:
        _report_strays(list(pending[1]), report, settled_before)
        pending = next(groups, None)


def _report_strays(objects: Sequence[ObjectEntry], report: AuditReport, settled_before: datetime) -> None:
    report.scanned["objects"] += len(objects)
    for entry in objects:
        if entry.modified < settled_before:
            report.findings.append(Finding(Drift.ORPHAN_OBJECT, entry.key, "not named by a content hash"))


def _audit_bucket(
    store: ObjectStore,
    catalog: Catalog,
    report: AuditReport,
    bucket: str,
    objects: list[ObjectEntry],
    settled_before: datetime,
) -> None:
    upper = BUCKETS[int(bucket, 16) + 1] if bucket != BUCKETS[-1] else None
    query = select(Image.sha256, Image.raw_key, Image.first_seen_at, Image.status).where(Image.sha256 >= bucket)
    with catalog.session() as session:
        rows, withdrawn = {}, set()
        for sha256, key, seen, status in session.execute(query.where(Image.sha256 < upper) if upper else query):
            if status == ImageStatus.WITHDRAWN:
                withdrawn.add(key)
            else:
                rows[key] = (sha256, seen)
    report.scanned["objects"] += len(objects)
    report.scanned["images"] += len(rows)
    listed = {entry.key for entry in objects}
    orphans = []
    for entry in objects:
        address = CONTENT_ADDRESS.fullmatch(entry.key)
        corrupt = report.checksums and address is not None and _sha256_of(store, entry.key) != address["sha256"]
        if corrupt:
            report.findings.append(Finding(Drift.CORRUPT_OBJECT, entry.key, "partial or altered bytes"))
        if entry.key in withdrawn:
            _report_withdrawn(store, report, entry.key)
            continue
        if entry.key in rows or entry.modified >= settled_before:
            continue
        if address is None:
            report.findings.append(Finding(Drift.ORPHAN_OBJECT, entry.key, "not named by a content hash"))
        elif not corrupt:
            orphans.append((entry, address))
    if orphans:
        _report_orphans(store, catalog, report, orphans)
    missing = [
        (key, sha256) for key, (sha256, seen) in rows.items() if key not in listed and as_utc(seen) < settled_before
    ]
    if missing:
        _report_missing(store, catalog, report, missing)


def _report_orphans(
    store: ObjectStore, catalog: Catalog, report: AuditReport, orphans: list[tuple[ObjectEntry, re.Match]]
) -> None:
    for entry, address in orphans:
        day = entry.modified.date().isoformat()
        finding = Finding(Drift.ORPHAN_OBJECT, entry.key, f"written {day}; no image row")
        report.findings.append(finding)
        if not report.repair:
            continue
        data = store.get(entry.key)
        if hashlib.sha256(data).hexdigest() != address["sha256"]:
            finding.detail += "; its bytes do not match its name, so no row is rebuilt"
            continue
        catalog.add_image(address["sha256"], entry.key, address["extension"], len(data))
        finding.repaired = (
            f"image row rebuilt from its bytes (pending); its sighting returns when the ingestion runs of {day} "
            "run again"
        )


def _report_withdrawn(store: ObjectStore, report: AuditReport, key: str) -> None:
    finding = Finding(Drift.WITHDRAWN_OBJECT, key, "a takedown withdrew it; rerun the takedown or repair")
    report.findings.append(finding)
    if report.repair:
        store.delete(key)
        finding.repaired = "deleted"


def _report_missing(store: ObjectStore, catalog: Catalog, report: AuditReport, missing: list[tuple[str, str]]) -> None:
    shas = [sha256 for _, sha256 in missing]
    with catalog.session() as session:
        seen_in: dict[str, list[str]] = {}
        query = select(Sighting.image_sha256, Sighting.source, Sighting.source_id, Sighting.run_id)
        for sha256, source, source_id, run_id in session.execute(query.where(Sighting.image_sha256.in_(shas))):
            seen_in.setdefault(sha256, []).append(f"{source} {source_id} (run {run_id})")
    for key, sha256 in missing:
        sightings = seen_in.get(sha256)
        detail = (
            "rerun the ingestion of " + "; ".join(sightings) if sightings else "no sighting names where it came from"
        )
        finding = Finding(Drift.MISSING_OBJECT, key, detail)
        report.findings.append(finding)
        if report.repair:
            copy = quarantine_key(sha256, key)
            try:
                if _sha256_of(store, copy) == sha256:
                    store.copy(copy, key)
                    finding.repaired = f"restored from {copy}"
            except ObjectNotFound:
                pass


def _audit_sightings(catalog: Catalog, report: AuditReport) -> None:
    query = (
        select(Sighting.source, Sighting.source_id, Sighting.image_sha256)
        .outerjoin(Image, Image.sha256 == Sighting.image_sha256)
        .where(Image.sha256.is_(None))
    )
    with catalog.session() as session:
        report.scanned["sightings"] += session.scalar(select(func.count()).select_from(Sighting))
        for source, source_id, sha256 in session.execute(query.execution_options(yield_per=1000)):
            report.findings.append(Finding(Drift.UNKNOWN_IMAGE, f"{source} {source_id}", f"names image {sha256}"))


def _audit_datasets(store: ObjectStore, catalog: Catalog, report: AuditReport, settled_before: datetime) -> None:
    with catalog.session() as session:
        versions = session.execute(select(DatasetVersion.version, DatasetVersion.created_at)).all()
    for version, created_at in versions:
        report.scanned["dataset versions"] += 1
        listed = {entry.key: entry for entry in store.entries(f"datasets/{version}/")}
        manifest = None
        if manifest_key(version) in listed:
            manifest = json.loads(store.get(manifest_key(version)))
        elif as_utc(created_at) < settled_before:
            report.findings.append(Finding(Drift.MISSING_MANIFEST, version, f"recorded {created_at:%Y-%m-%d %H:%M}"))
        with catalog.session() as session:
            members = session.execute(
                select(DatasetMember.shard, func.count())
                .where(DatasetMember.version == version)
                .group_by(DatasetMember.shard)
            ).all()
        shards = {shard: f"{count} members" for shard, count in members}
        for shard in (manifest or {}).get("shards", []):
            shards.setdefault(shard["key"], "listed in the manifest")
        report.scanned["shards"] += len(shards)
        for shard, detail in sorted(shards.items()):
            if shard not in listed:
                report.findings.append(Finding(Drift.MISSING_SHARD, shard, detail))
        if report.checksums and manifest:
            for shard in manifest["shards"]:
                if shard["key"] in listed and _sha256_of(store, shard["key"]) != shard["sha256"]:
                    report.findings.append(Finding(Drift.ALTERED_SHARD, shard["key"], f"in dataset {version}"))


def _audit_unfinished_writes(store: ObjectStore, report: AuditReport, stale_before: datetime) -> None:
    for write in store.unfinished_writes():
        report.scanned["unfinished writes"] += 1
        if write.started_at >= stale_before:
            continue
        finding = Finding(Drift.UNFINISHED_WRITE, write.name, f"started {write.started_at:%Y-%m-%d %H:%M}")
        report.findings.append(finding)
        if report.repair:
            store.discard(write)
            finding.repaired = "thrown away"


def _sha256_of(store: ObjectStore, key: str) -> str:
    digest = hashlib.sha256()
    with store.open_read(key) as source:
        while chunk := source.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`colorflow lake audit`."""
    parser.add_argument(
        "--repair",
        action="store_true",
        help="rebuild what the lake can rebuild: image rows from their objects' bytes, raw objects from their"
        " quarantine copies; throw stale unfinished writes away",
    )
    parser.add_argument(
        "--checksums", action="store_true", help="also hash every raw object and shard (reads the whole lake)"
    )
    parser.add_argument(
        "--grace-minutes",
        type=float,
        default=60,
        help="leave out objects and rows younger than this, which a running task may still be writing (60)",
    )
    parser.add_argument(
        "--stale-after-hours", type=float, default=24, help="unfinished writes older than this are drift (24)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Audit the configured lake; 1 when drift remains."""
    from pipelines.catalog import open_catalog
    from pipelines.settings import get_settings
    from pipelines.storage import open_store

    settings = get_settings()
    try:
        check_lake(
            open_store(settings=settings),
            open_catalog(settings),
            f"cli-{utcnow():%Y%m%dT%H%M%S.%fZ}",
            checksums=args.checksums,
            repair=args.repair,
            grace=timedelta(minutes=args.grace_minutes),
            stale_after=timedelta(hours=args.stale_after_hours),
        )
    except LakeDrift as drift:
        print(drift, file=sys.stderr)
        return 1
    return 0
