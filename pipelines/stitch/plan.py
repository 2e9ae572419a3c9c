"""The first step of a build: decide the version and cut its members into shards.

The version is a hash of the member list and the transform parameters, so planning the same data twice
names the same version, and an already published version is a no-op. Each shard's member list is written
to the lake beside the version (`datasets/<version>/members/<shard>.json`, same bytes on every replan), so
what travels between tasks is shard keys: a million members would not fit an orchestrator's XCom."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.catalog import Catalog
from pipelines.stitch.layout import manifest_key, members_key, shard_key
from pipelines.stitch.params import SPLITS, ShardParams
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
    """Everything `publish` needs besides the shards' own results; its summary is small enough for an XCom."""

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
        """The plan without its member lists (those wait in the lake, one per shard)."""
        return {
            "version": self.version,
            "params": self.params.to_dict(),
            "source_mix": self.source_mix,
            "duplicates_dropped": len(self.duplicates_dropped),
            "published": self.published,
            "shards": len(self.shards),
        }


def save_shard(store: ObjectStore, spec: ShardSpec) -> None:
    """A planned shard's member list into the lake, for its writer and for `publish`."""
    store.put(members_key(spec.key), json.dumps(spec.to_dict()).encode())


def load_shard(store: ObjectStore, shard_key: str) -> ShardSpec:
    """A planned shard with its members, as `save_shard` left it in the lake."""
    return ShardSpec.from_dict(json.loads(store.get(members_key(shard_key))))


def group_shards(shards: Sequence[ShardSpec], max_groups: int) -> list[list[str]]:
    """Shard keys dealt round-robin into at most `max_groups` lists (one per mapped task): an orchestrator
    caps how many tasks one map may start, and a dataset may have more shards than that."""
    groups = [[spec.key for spec in shards[start::max_groups]] for start in range(max_groups)]
    return [group for group in groups if group]


def plan_build(store: ObjectStore, catalog: Catalog, params: ShardParams) -> BuildPlan:
    """Decide the version and its shards (see the module docstring); of an unpublished version, writes the
    shards' member lists and nothing else."""
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
            shards.append(
                ShardSpec(shard_key(version, split, number), split, in_split[start : start + params.shard_size])
            )
    # Each image counts once in the mix, under the first source (by name) that offered it.
    source_mix = dict(sorted(Counter(member.sources[0] for member in members).items()))
    published = store.exists(manifest_key(version))
    if not published:
        for spec in shards:
            save_shard(store, spec)
    return BuildPlan(
        version=version,
        params=params,
        shards=shards,
        source_mix=source_mix,
        duplicates_dropped=dropped,
        published=published,
    )
