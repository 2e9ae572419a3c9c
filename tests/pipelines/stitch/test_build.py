"""Dataset versions of Lab shards, built from a real lake and catalog after the real quality stage: manifest
integrity; stable splits as the dataset grows; duplicates across sources; bad input left out with a reason; a
build killed midway."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import webdataset
from sqlalchemy import func, select, update

from embedded.polling import wait_until
from pipelines.catalog import Catalog, DatasetMember, DatasetVersion, SightingRecord
from pipelines.catalog import Image as ImageRow
from pipelines.quality import validate_batch
from pipelines.raw_zone import ingest_photo
from pipelines.stitch import (
    ShardParams,
    group_shards,
    iter_samples,
    load_manifest,
    load_shard,
    manifest_key,
    plan_build,
    stitch_dataset,
)
from pipelines.stitch.select import split_of
from pipelines.storage import FileStore, ObjectNotFound
from sandbox.library import PhotoLibrary
from tests.corpus import encode

REPO_ROOT = Path(__file__).resolve().parents[3]
LIBRARY = PhotoLibrary()
# Library photos are numbered variant * 9 + base; these are all different photos (not near duplicates).
DISTINCT = [variant * 9 + base for variant in range(0, 40, 3) for base in (0, 1, 2, 3, 4, 6, 7, 8)]
SMALL = ShardParams(load_size=64, shard_size=4)


def offer(store: FileStore, catalog: Catalog, data: bytes, source: str, source_id: str) -> str:
    record = SightingRecord(source, source_id, f"https://{source}.example/{source_id}", license="CC-BY-2.0")
    return ingest_photo(store, catalog, data, record, run_id="ingest", name_hint=f"{source_id}.jpg").sha256


def validate(store: FileStore, catalog: Catalog, run_id: str) -> None:
    summary = validate_batch(store, catalog, run_id)
    assert summary["rejected"] == 0, summary["by_reason"]


def offer_photos(store: FileStore, catalog: Catalog, numbers: list[int]) -> list[str]:
    sources = ("unsplash", "flickr", "instagram")
    return [
        offer(store, catalog, LIBRARY.encode(number), sources[index % 3], f"photo-{number}")
        for index, number in enumerate(numbers)
    ]


def shard_files(store: FileStore) -> dict[str, str]:
    return {key: hashlib.sha256(store.get(key)).hexdigest() for key in store.list("datasets/")}


def test_manifest_matches_its_shards_and_the_catalog(store: FileStore, catalog: Catalog) -> None:
    offer_photos(store, catalog, DISTINCT[:18])
    validate(store, catalog, "validate-1")

    manifest = stitch_dataset(store, catalog, SMALL)

    assert manifest == load_manifest(store, manifest["version"])
    assert manifest["sample_count"] == 18 == sum(manifest["splits"].values()) == sum(manifest["source_mix"].values())
    assert manifest["source_mix"] == {"flickr": 6, "instagram": 6, "unsplash": 6}
    assert manifest["encoding"]["name"] == "lab8-opencv" and manifest["params"]["load_size"] == 64
    keys_seen = []
    for shard in manifest["shards"]:
        data = store.get(shard["key"])
        assert hashlib.sha256(data).hexdigest() == shard["sha256"] and len(data) == shard["bytes"]
        samples = list(iter_samples(store, shard["key"]))
        assert len(samples) == shard["samples"] <= SMALL.shard_size
        # WebDataset's own reader agrees: the layout is the standard one.
        standard = list(webdataset.WebDataset(str(store.root / shard["key"]), shardshuffle=False).decode())
        assert [(s["__key__"], s["json"]["split"]) for s in standard] == [(s.key, s.meta["split"]) for s in samples]
        assert all(np.array_equal(a["lab.npy"], b.lab8) for a, b in zip(standard, samples, strict=True))
        for sample in samples:
            assert sample.lab8.shape == (64, 64, 3) and sample.lab8.dtype == np.uint8
            assert sample.meta["split"] == shard["split"] == split_of(sample.key, SMALL.split_ratios)
            keys_seen.append(sample.key)
    assert len(set(keys_seen)) == 18
    with catalog.session() as session:
        members = session.execute(select(DatasetMember.image_sha256, DatasetMember.shard)).all()
        assert session.scalar(select(DatasetVersion.sample_count)) == 18
    assert sorted(sha for sha, _ in members) == sorted(keys_seen)


def test_building_again_is_a_no_op(store: FileStore, catalog: Catalog) -> None:
    offer_photos(store, catalog, DISTINCT[:6])
    validate(store, catalog, "validate-1")
    first = stitch_dataset(store, catalog, SMALL)
    objects = shard_files(store)

    again = stitch_dataset(store, catalog, SMALL)

    assert again == first  # the same manifest, created_at included: nothing was rebuilt
    assert shard_files(store) == objects
    assert catalog.count(DatasetMember) == 6 and catalog.count(DatasetVersion) == 1


def test_images_keep_their_split_when_the_dataset_grows(store: FileStore, catalog: Catalog) -> None:
    params = ShardParams(load_size=32, shard_size=50, split_ratios=(("train", 0.6), ("val", 0.2), ("test", 0.2)))
    offer_photos(store, catalog, DISTINCT[:20])
    validate(store, catalog, "validate-1")
    before = stitch_dataset(store, catalog, params)
    offer_photos(store, catalog, DISTINCT[20:40])
    validate(store, catalog, "validate-2")

    after = stitch_dataset(store, catalog, params)

    def splits(manifest: dict) -> dict[str, str]:
        return {s.key: s.meta["split"] for shard in manifest["shards"] for s in iter_samples(store, shard["key"])}

    assert after["version"] != before["version"] and after["sample_count"] == 40
    old, new = splits(before), splits(after)
    assert {key: new[key] for key in old} == old
    assert all(count > 0 for count in after["splits"].values())


def test_same_photo_from_two_sources_is_kept_once(store: FileStore, catalog: Catalog) -> None:
    """Two validations that ran at the same time can both accept a copy; the stitch keeps the first."""
    original = offer(store, catalog, LIBRARY.encode(0), "unsplash", "a")
    smaller = LIBRARY.image(0).resize((400, 260)).convert("RGB")
    copy = offer(store, catalog, encode(smaller, "JPEG", quality=92, optimize=True), "flickr", "b")
    other = offer(store, catalog, LIBRARY.encode(1), "flickr", "c")
    accept_as_is(store, catalog)

    plan = plan_build(store, catalog, SMALL)

    assert plan.duplicates_dropped == {copy: original}
    members = [member.sha256 for key in plan.shards for member in load_shard(store, key).members]
    assert sorted(members) == sorted([original, other])


def accept_as_is(store: FileStore, catalog: Catalog) -> None:
    """Accept every pending image, with the perceptual hash the quality stage would record."""
    from pipelines.image_facts import extract_facts

    with catalog.session() as session:
        for sha256, key in session.execute(select(ImageRow.sha256, ImageRow.raw_key)).all():
            facts = extract_facts(store.get(key))
            session.execute(
                update(ImageRow).where(ImageRow.sha256 == sha256).values(status="accepted", phash=facts.phash)
            )


def test_filters_select_by_source(store: FileStore, catalog: Catalog) -> None:
    offer_photos(store, catalog, DISTINCT[:9])
    validate(store, catalog, "validate-1")

    manifest = stitch_dataset(store, catalog, ShardParams(load_size=32, sources=("flickr",)))

    assert manifest["source_mix"] == {"flickr": 3} and manifest["params"]["sources"] == ["flickr"]


def test_an_unreadable_accepted_image_is_left_out_with_its_reason(store: FileStore, catalog: Catalog) -> None:
    good = offer(store, catalog, LIBRARY.encode(0), "unsplash", "good")
    broken = offer(store, catalog, LIBRARY.encode(1)[:5000], "unsplash", "cut")
    with catalog.session() as session:
        session.execute(update(ImageRow).values(status="accepted"))

    manifest = stitch_dataset(store, catalog, SMALL)

    assert manifest["sample_count"] == 1
    assert [failure["sha256"] for failure in manifest["failures"]] == [broken]
    assert "cannot decode" in manifest["failures"][0]["reason"]
    assert [member.key for shard in manifest["shards"] for member in iter_samples(store, shard["key"])] == [good]
    with catalog.session() as session:
        assert session.scalars(select(DatasetMember.image_sha256)).all() == [good]


def test_tasks_pass_shard_keys_and_find_the_members_in_the_lake(store: FileStore, catalog: Catalog) -> None:
    """A million members would not fit an XCom: the plan leaves each shard's member list in the lake, and the
    groups dealt to the write tasks hold shard keys only. The version, hashed a member at a time, is the hash
    of the whole member list."""
    accepted = offer_photos(store, catalog, DISTINCT[:10])
    validate(store, catalog, "validate-1")

    plan = plan_build(store, catalog, SMALL)

    groups = group_shards(plan.shards, max_groups=2)
    assert sorted(key for group in groups for key in group) == sorted(plan.shards) and len(groups) == 2
    specs = [load_shard(store, key) for key in plan.shards]
    assert [spec.key for spec in specs] == plan.shards
    members = [member.sha256 for spec in specs for member in spec.members]
    assert sorted(members) == sorted(accepted) and plan.samples == 10
    identity = {"members": members, "transform": SMALL.transform_fields()}
    assert plan.version == hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    summary = json.dumps(plan.summary())
    assert not any(sha256 in summary for sha256 in accepted)


def test_a_build_killed_midway_leaves_no_version_and_its_rerun_completes(
    store: FileStore, catalog: Catalog, tmp_path: Path
) -> None:
    offer_photos(store, catalog, DISTINCT[:40])
    validate(store, catalog, "validate-1")
    plan = plan_build(store, catalog, ShardParams(load_size=128, shard_size=2))
    version, shard_count = plan.version, len(plan.shards)
    env = {
        **os.environ,
        "COLORFLOW_HOME": str(tmp_path / "home"),
        "COLORFLOW_LAKE_URL": f"file://{store.root}",
        "COLORFLOW_CATALOG_URL": catalog.url,
    }
    command = [sys.executable, "-m", "pipelines.stitch", "build", "--load-size", "128", "--shard-size", "2"]
    build = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_until(
        lambda: any(key.endswith(".tar") for key in store.list("datasets/")),
        timeout_s=60,
        interval_s=0.005,
        what="the build's first shard",
    )
    build.send_signal(signal.SIGKILL)
    build.wait()

    written = [key for key in store.list("datasets/") if key.endswith(".tar")]
    assert 0 < len(written) < shard_count, "the build should have been killed between its first and last shard"
    with pytest.raises(ObjectNotFound):
        load_manifest(store, version)
    assert catalog.count(DatasetVersion) == 0

    rerun = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"dataset {version}: 40 samples in {shard_count} shards" in rerun.stdout
    manifest = json.loads(store.get(manifest_key(version)))
    for shard in manifest["shards"]:
        assert hashlib.sha256(store.get(shard["key"])).hexdigest() == shard["sha256"]
    with catalog.session() as session:
        assert session.scalar(select(func.count()).select_from(DatasetMember)) == 40
