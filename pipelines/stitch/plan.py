"""The first step of a build: decide the version and cut its members into shards, writing nothing.

The version is a hash of the member list and the transform parameters, so planning the same data twice
names the same version, and an already published version is a no-op. The plan is small enough for an
XCom, and its shards can be dealt out to as many workers as an orchestrator allows."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.catalog import Catalog
from pipelines.stitch.params import SPLITS, ShardParams
from pipelines.stitch.publish import DATASETS_PREFIX, manifest_key
from pipelines.stitch.select import DatasetImage, drop_near_duplicates, select_accepted, split_of
from pipelines.storage import ObjectStore


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


def plan_build(store: ObjectStore, catalog: Catalog, params: ShardParams) -> BuildPlan:
    """Decide the version and its shards (see the module docstring); nothing is written."""
    candidates = select_accepted(catalog, params)
    kept, dropped = drop_near_duplicates(candidates, params.near_duplicate_distance)
    members = sorted(
        (candidates.member(position, split_of(candidates.sha256[position], params.split_ratios)) for position in kept),
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
