"""The parameters of a build, which every step reads: the filters that choose its images, how they are split
and cut into shards, and the transform whose fields name the version."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from pipelines.lab import LAB_ENCODING
from pipelines.settings import NEAR_DUPLICATE_DISTANCE

SHARD_LAYOUT_VERSION = 1  # bump when sample contents change, so old and new shards never share a version
SPLITS = ("train", "val", "test")


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
