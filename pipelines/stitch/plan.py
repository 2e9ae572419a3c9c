"""The first step of a build: decide the version and cut its members into shards.

The version is a hash of the member list and the transform parameters, so planning the same data twice
names the same version, and an already published version is a no-op. Each shard's member list is written
to the lake beside the version (`datasets/<version>/members/<shard>.json`, same bytes on every replan), so
what travels between tasks is shard keys: a million members would not fit an orchestrator's XCom.

Planning streams: the catalog is read in two passes (`select`). What stays in memory through the second is
the kept images' sha256s (about 120 bytes each) and one open shard per split; the first pass's
near-duplicate search peaks higher, about 0.5 KB per image (0.76 GiB in all at a million, `bench/scale.py`)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.catalog import Catalog
from pipelines.stitch.layout import manifest_key, members_key, shard_key
from pipelines.stitch.params import SPLITS, ShardParams
from pipelines.stitch.select import DatasetImage, keep_one_per_photo, split_of, stream_members
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
    samples: int
    shards: list[str] = field(default_factory=list)  # keys, in split then number order; none once published
    source_mix: dict[str, int] = field(default_factory=dict)
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
            "samples": self.samples,
            "shards": len(self.shards),
        }


def save_shard(store: ObjectStore, spec: ShardSpec) -> None:
    """A planned shard's member list into the lake, for its writer and for `publish`."""
    store.put(members_key(spec.key), json.dumps(spec.to_dict()).encode())


def load_shard(store: ObjectStore, shard_key: str) -> ShardSpec:
    """A planned shard with its members, as `save_shard` left it in the lake."""
    return ShardSpec.from_dict(json.loads(store.get(members_key(shard_key))))


def group_shards(shard_keys: Sequence[str], max_groups: int) -> list[list[str]]:
    """Shard keys dealt round-robin into at most `max_groups` lists (one per mapped task): an orchestrator
    caps how many tasks one map may start, and a dataset may have more shards than that."""
    groups = [list(shard_keys[start::max_groups]) for start in range(max_groups)]
    return [group for group in groups if group]


def plan_build(store: ObjectStore, catalog: Catalog, params: ShardParams) -> BuildPlan:
    """Decide the version and its shards (see the module docstring); of an unpublished version, writes the
    shards' member lists and nothing else."""
    one_per_photo = keep_one_per_photo(catalog, params)
    version = version_of(one_per_photo.kept, params)
    plan = BuildPlan(version, params, len(one_per_photo.kept), duplicates_dropped=one_per_photo.dropped)
    if store.exists(manifest_key(version)):
        plan.published = True
        return plan
    members = stream_members(catalog, params, one_per_photo.kept)
    plan.shards, plan.source_mix = _cut_shards(store, version, params.shard_size, members)
    return plan


def version_of(kept: Sequence[str], params: ShardParams) -> str:
    """The sha256 of `{"members": [...], "transform": {...}}` as `json.dumps(..., sort_keys=True)` writes it,
    members in split then sha256 order, fed to the hash a member at a time rather than built as one string."""
    splits = [split_of(sha256, params.split_ratios) for sha256 in kept]
    digest = hashlib.sha256(b'{"members": [')
    separator = b""
    for split in SPLITS:
        for sha256, member_split in zip(kept, splits, strict=True):
            if member_split == split:
                digest.update(separator + b'"' + sha256.encode() + b'"')
                separator = b", "
    transform = json.dumps(params.transform_fields(), sort_keys=True)
    digest.update(f'], "transform": {transform}}}'.encode())
    return digest.hexdigest()[:16]


def _cut_shards(
    store: ObjectStore, version: str, shard_size: int, members: Iterable[DatasetImage]
) -> tuple[list[str], dict[str, int]]:
    """Members (sha256 order) into shards of each split, each shard's list saved as soon as it is full: the
    shard keys, in split then number order, and the source mix, where each image counts once, under the
    first source (by name) that offered it."""
    filling: dict[str, list[DatasetImage]] = {split: [] for split in SPLITS}
    keys: dict[str, list[str]] = {split: [] for split in SPLITS}
    source_mix: Counter[str] = Counter()

    def close(split: str) -> None:
        key = shard_key(version, split, len(keys[split]))
        save_shard(store, ShardSpec(key, split, filling[split]))
        keys[split].append(key)
        filling[split] = []

    for member in members:
        source_mix[member.sources[0]] += 1
        filling[member.split].append(member)
        if len(filling[member.split]) == shard_size:
            close(member.split)
    for split in SPLITS:
        if filling[split]:
            close(split)
    return [key for split in SPLITS for key in keys[split]], dict(sorted(source_mix.items()))
