"""Dataset versions of Lab shards, built from a real lake and catalog after the real quality stage: the Lab
encoding's accuracy, orientation and the Kaggle arrays' direct path; manifest integrity; stable splits as
the dataset grows; duplicates across sources; bad input left out with a reason; a build killed midway."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import webdataset
from PIL import Image
from skimage import color
from sqlalchemy import func, select, update

from embedded.polling import wait_until
from pipelines.catalog import Catalog, DatasetMember, DatasetVersion, SightingRecord
from pipelines.catalog import Image as ImageRow
from pipelines.lab import decode_lab8, lab8_to_npy, rgb_to_lab8
from pipelines.quality import validate_batch
from pipelines.raw_zone import ingest_photo
from pipelines.shards import (
    ShardParams,
    iter_samples,
    load_manifest,
    manifest_key,
    plan_build,
    split_of,
    stitch_dataset,
    transform_image,
)
from pipelines.storage import FileStore, ObjectNotFound
from sandbox.kaggle import to_opencv_lab
from sandbox.library import PhotoLibrary
from tests.corpus import with_jpeg_comment

REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARY = PhotoLibrary()
# Library photos are numbered variant * 9 + base; these are all different photos (not near duplicates).
DISTINCT = [variant * 9 + base for variant in range(0, 40, 3) for base in (0, 1, 2, 3, 4, 6, 7, 8)]
SMALL = ShardParams(load_size=64, shard_size=4)


def jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=92, **options)
    return buffer.getvalue()


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


def test_lab_encoding_round_trips_within_one_unit() -> None:
    photo = np.asarray(LIBRARY.image(0).convert("RGB").resize((96, 96)))
    png = io.BytesIO()
    Image.fromarray(photo).save(png, "PNG")
    lab8 = transform_image(png.getvalue(), "png", 96)
    error = np.abs(decode_lab8(lab8) - color.rgb2lab(photo)).reshape(-1, 3).mean(axis=0)
    assert lab8.dtype == np.uint8 and lab8.shape == (96, 96, 3)
    assert np.all(error < 1.0), f"mean absolute error L, a, b = {error}"


@pytest.mark.parametrize(
    "reshape",
    [
        pytest.param(lambda data: data, id="as-saved"),
        pytest.param(lambda data: with_jpeg_comment(data, b"x" * 60_000), id="after-a-60kb-comment"),
    ],
)
def test_jpeg_is_shown_upright_and_center_cropped(reshape: Callable[[bytes], bytes]) -> None:
    upright = LIBRARY.image(0).convert("RGB").resize((120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter: a viewer rotates it 90 degrees clockwise
    stored = reshape(jpeg(upright.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes()))
    expected = transform_image(jpeg(upright), "jpg", 64)
    got = transform_image(stored, "jpg", 64)
    assert got.shape == (64, 64, 3)
    error = {turns: np.abs(np.rot90(got, turns).astype(int) - expected).mean() for turns in range(4)}
    assert min(error, key=error.get) == 0 and error[0] < 6, error


def test_exif_words_outside_an_exif_segment_do_not_turn_a_photo() -> None:
    photo = LIBRARY.image(1).convert("RGB").resize((120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6
    # An EXIF block quoted in a comment is not the photo's EXIF: Pillow ignores it, and so must the stitch.
    quoted = with_jpeg_comment(jpeg(photo), b"Exif\x00\x00" + exif.tobytes())
    assert np.array_equal(transform_image(quoted, "jpg", 64), transform_image(jpeg(photo), "jpg", 64))


def test_a_photo_close_to_the_load_size_is_cropped_not_resampled() -> None:
    photo = np.asarray(LIBRARY.image(2).convert("RGB").resize((104, 100)))
    png = io.BytesIO()
    Image.fromarray(photo).save(png, "PNG")
    assert np.array_equal(transform_image(png.getvalue(), "png", 96), rgb_to_lab8(photo[2:98, 4:100]))


def test_kaggle_lab_arrays_enter_without_an_rgb_round_trip() -> None:
    lab = to_opencv_lab(LIBRARY.image(1))
    got = transform_image(lab8_to_npy(lab), "npy", 286)
    assert np.array_equal(got, cv2.resize(lab, (286, 286), interpolation=cv2.INTER_LINEAR))
    assert np.array_equal(transform_image(lab8_to_npy(lab), "npy", 224), lab)


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
    copy = offer(store, catalog, jpeg(LIBRARY.image(0).resize((400, 260)), optimize=True), "flickr", "b")
    other = offer(store, catalog, LIBRARY.encode(1), "flickr", "c")
    accept_as_is(store, catalog)

    plan = plan_build(store, catalog, SMALL)

    assert plan.duplicates_dropped == {copy: original}
    assert sorted(member.sha256 for shard in plan.shards for member in shard.members) == sorted([original, other])


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
    command = [sys.executable, "-m", "pipelines.shards", "build", "--load-size", "128", "--shard-size", "2"]
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
