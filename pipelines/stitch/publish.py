"""The last step of a build, and what reads its result: a dataset version made visible, found and
described.

`publish` checks every shard is in the lake, records membership in the catalog, writes the version's card
(`card`), then writes the manifest. The manifest is the version's only mark of existence and goes last: a
build killed at any point leaves no visible version, and its rerun completes it."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from pipelines.catalog import Catalog, DatasetMember, DatasetVersion, utcnow
from pipelines.lab import LAB_ENCODING
from pipelines.stitch.card import write_card
from pipelines.stitch.layout import manifest_key
from pipelines.stitch.params import SPLITS
from pipelines.stitch.plan import load_shard
from pipelines.storage import ObjectNotFound, ObjectStore

logger = logging.getLogger(__name__)


def publish(store: ObjectStore, catalog: Catalog, plan: dict[str, Any], shards: Sequence[dict[str, Any]]) -> dict:
    """Make the version visible: verify the shards, record membership, write the card, the manifest last.

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
        "duplicates_dropped": plan["duplicates_dropped"],
        "failures": [failure for shard in shards for failure in shard["failures"]],
        "shards": [{key: shard[key] for key in ("key", "split", "samples", "bytes", "sha256")} for shard in shards],
    }
    _record_membership(store, catalog, manifest, shards)
    write_card(store, catalog, manifest)
    store.put(key, json.dumps(manifest, indent=2).encode())
    logger.info("published dataset %s: %d samples %s", version, manifest["sample_count"], split_counts)
    return manifest


def _record_membership(
    store: ObjectStore, catalog: Catalog, manifest: dict[str, Any], shards: Sequence[dict[str, Any]]
) -> None:
    """One shard's members at a time, from its member list in the lake less the images its writer left
    out: a million members never sit in memory or an XCom together."""
    version = manifest["version"]
    row = {
        "version": version,
        "manifest_key": manifest_key(version),
        "params": manifest["params"],
        "sample_count": manifest["sample_count"],
        "created_at": utcnow(),
    }
    with catalog.session() as session:
        catalog.upsert(session, DatasetVersion, [row], key=["version"])
        for shard in shards:
            left_out = {failure["sha256"] for failure in shard["failures"]}
            members = [
                {"version": version, "image_sha256": member.sha256, "split": shard["split"], "shard": shard["key"]}
                for member in load_shard(store, shard["key"]).members
                if member.sha256 not in left_out
            ]
            catalog.upsert(session, DatasetMember, members, key=["version", "image_sha256"])


def latest_version(catalog: Catalog) -> str | None:
    """The most recently published dataset version, if any."""
    with catalog.session() as session:
        return session.scalar(select(DatasetVersion.version).order_by(DatasetVersion.created_at.desc()).limit(1))


def load_manifest(store: ObjectStore, version: str) -> dict[str, Any]:
    """A published version's manifest; `ObjectNotFound` when the version was never (fully) published."""
    return json.loads(store.get(manifest_key(version)))


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
