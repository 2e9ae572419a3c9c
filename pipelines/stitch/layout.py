"""Where a dataset version lives in the lake: one owner for every key under `datasets/<version>/`."""

from __future__ import annotations

DATASETS_PREFIX = "datasets"


def manifest_key(version: str) -> str:
    """The manifest: written last, the version's only mark of existence."""
    return f"{DATASETS_PREFIX}/{version}/manifest.json"


def card_keys(version: str) -> dict[str, str]:
    """The dataset card beside the manifest, for people (`card.md`) and for programs (`card.json`); written
    just before the manifest, so every version published since cards exist has one."""
    return {name: f"{DATASETS_PREFIX}/{version}/{name}" for name in ("card.md", "card.json")}


def shard_key(version: str, split: str, number: int) -> str:
    return f"{DATASETS_PREFIX}/{version}/{split}/{split}-{number:05d}.tar"


def members_key(shard: str) -> str:
    """Where a planned shard's member list waits for its writer and for `publish`."""
    version_prefix, _split, name = shard.rsplit("/", 2)
    return f"{version_prefix}/members/{name.removesuffix('.tar')}.json"
