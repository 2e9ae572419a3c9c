"""Applying a takedown: record it, withdraw its images, remove their bytes, mark the models that saw them,
and write the impact report.

The order makes a killed run safe to repeat: the impact is assessed first (nothing changes if MLflow cannot
answer); the catalog then marks the images withdrawn in one transaction, which at once keeps them out of
every later build and refuses them at ingestion; only then are the bytes deleted and the models tagged, and
a repeat finishes whatever is left. A repeat that finds nothing left to do changes nothing, not even the
report."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from pipelines.catalog import Catalog, Image, ImageStatus, Sighting, Takedown, Withdrawal, as_utc, utcnow
from pipelines.raw_zone import quarantine_key
from pipelines.storage import ObjectStore
from pipelines.takedowns.impact import Impact, assess
from pipelines.takedowns.report import report_keys, write_report
from pipelines.takedowns.request import TakedownRequest, matching_images

logger = logging.getLogger(__name__)

# The build_dataset params a rebuild repeats from an affected version (the DAG's own params).
REBUILD_PARAMS = ("sources", "since", "until", "load_size", "shard_size", "split_ratios")


@dataclass
class TakedownOutcome:
    """What a takedown found and changed; `known` is False when it named nothing in the catalog."""

    takedown_id: str
    request: TakedownRequest
    known: bool
    images: list[str] = field(default_factory=list)
    newly_withdrawn: list[str] = field(default_factory=list)
    objects_deleted: list[str] = field(default_factory=list)
    models_tagged: list[str] = field(default_factory=list)
    impact: Impact = field(default_factory=lambda: Impact([]))
    report: dict[str, Any] = field(default_factory=dict)
    report_written: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.newly_withdrawn or self.objects_deleted or self.models_tagged or self.report_written)

    def rebuild_confs(self) -> list[dict[str, Any]]:
        """build_dataset confs that rebuild each affected version without the withdrawn images."""
        confs = []
        for version in self.impact.dataset_versions:
            conf = {name: version.params[name] for name in REBUILD_PARAMS if name in version.params}
            if conf not in confs:
                confs.append(conf)
        return confs


def apply_takedown(
    request: TakedownRequest, store: ObjectStore, catalog: Catalog, tracking_uri: str
) -> TakedownOutcome:
    """Apply `request`; idempotent, and a request that names nothing known changes nothing."""
    takedown_id = request.takedown_id
    matched = matching_images(catalog, request)
    outcome = TakedownOutcome(takedown_id, request, known=bool(matched))
    if not matched:
        logger.warning("takedown %s: nothing known matches %s; nothing changed", takedown_id, request.describe())
        return outcome
    with catalog.session() as session:
        earlier = set(session.scalars(select(Withdrawal.image_sha256).where(Withdrawal.takedown_id == takedown_id)))
    outcome.images = sorted(earlier | set(matched))
    outcome.impact = assess(catalog, tracking_uri, outcome.images)
    record = _withdraw(catalog, request, outcome.images)
    outcome.newly_withdrawn = sorted(set(outcome.images) - earlier)
    outcome.objects_deleted = _delete_bytes(store, catalog, outcome.images)
    outcome.models_tagged = _tag_models(tracking_uri, outcome.impact, takedown_id)
    outcome.report = _report(record, catalog, outcome)
    outcome.report_written = write_report(store, takedown_id, outcome.report)
    logger.info(
        "takedown %s: %d images (%d newly withdrawn), %d objects deleted, %d model versions tagged",
        takedown_id,
        len(outcome.images),
        len(outcome.newly_withdrawn),
        len(outcome.objects_deleted),
        len(outcome.models_tagged),
    )
    return outcome


def _withdraw(catalog: Catalog, request: TakedownRequest, shas: list[str]) -> dict[str, Any]:
    """Record the takedown (first request kept as it was) and withdraw its images; the takedown's row."""
    now = utcnow()
    row = {
        "id": request.takedown_id,
        "selector": request.selector,
        "reason": request.reason,
        "requested_by": request.requested_by,
        "requested_at": now,
    }
    withdrawals = [{"takedown_id": request.takedown_id, "image_sha256": sha, "withdrawn_at": now} for sha in shas]
    with catalog.session() as session:
        catalog.upsert(session, Takedown, [row], key=["id"])
        catalog.upsert(session, Withdrawal, withdrawals, key=["takedown_id", "image_sha256"])
        session.execute(
            update(Image)
            .where(Image.sha256.in_(shas), Image.status != ImageStatus.WITHDRAWN)
            .values(status=ImageStatus.WITHDRAWN, verdict_at=now)
        )
        stored = session.get(Takedown, request.takedown_id)
        return {
            "id": stored.id,
            "selector": stored.selector,
            "reason": stored.reason,
            "requested_by": stored.requested_by,
            "requested_at": as_utc(stored.requested_at).isoformat(),
        }


def _delete_bytes(store: ObjectStore, catalog: Catalog, shas: list[str]) -> list[str]:
    """Delete each image's raw object and quarantine copy that is still there; the keys deleted."""
    with catalog.session() as session:
        raw_keys = dict(
            session.execute(select(Image.sha256, Image.raw_key).where(Image.sha256.in_(shas))).tuples().all()
        )
    deleted = []
    for sha256, key in sorted(raw_keys.items()):
        for candidate in (key, quarantine_key(sha256, key)):
            if store.exists(candidate):
                store.delete(candidate)
                deleted.append(candidate)
    return deleted


def _tag_models(tracking_uri: str, impact: Impact, takedown_id: str) -> list[str]:
    if not impact.model_versions:
        return []
    from mlflow.tracking import MlflowClient

    from models.lineage import mark_withdrawn

    client = MlflowClient(tracking_uri)
    return [
        f"{model.name}/{model.version}" for model in impact.model_versions if mark_withdrawn(client, model, takedown_id)
    ]


def _report(record: dict[str, Any], catalog: Catalog, outcome: TakedownOutcome) -> dict[str, Any]:
    with catalog.session() as session:
        rows = session.execute(
            select(Sighting.image_sha256, Sighting.source, Sighting.source_id, Sighting.page_url, Sighting.author)
            .where(Sighting.image_sha256.in_(outcome.images))
            .order_by(Sighting.image_sha256, Sighting.source, Sighting.source_id)
        ).all()
    sightings: dict[str, list[dict[str, str | None]]] = {sha: [] for sha in outcome.images}
    for sha256, source, source_id, page_url, author in rows:
        sightings[sha256].append({"source": source, "source_id": source_id, "page_url": page_url, "author": author})
    json_key, html_key = report_keys(outcome.takedown_id)
    return {
        "takedown": record,
        "images": [{"sha256": sha, "sightings": sightings[sha]} for sha in outcome.images],
        **outcome.impact.as_dict(),
        "report": {"json": json_key, "html": html_key},
    }
