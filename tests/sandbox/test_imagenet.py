"""The ImageNet dump host serves archives with the real Imagenette and ILSVRC2012 layouts, the CMYK and PNG
oddities of the real sets, HTTP ranges and a broken mirror, and no checksum files (the real hosts publish
none). Requests go to a real sandbox process.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile

import pytest
import requests
from PIL import Image

from sandbox.imagenet import (
    ILSVRC_TRAIN_PER_CLASS,
    ILSVRC_VAL_IMAGES,
    ILSVRC_WNIDS,
    IMAGENETTE_TRAIN_PER_CLASS,
    IMAGENETTE_VAL_PER_CLASS,
    IMAGENETTE_WNIDS,
    archive_md5s,
)
from sandbox.library import PhotoLibrary

ARCHIVES = ("imagenette2-160.tgz", "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


@pytest.fixture(scope="module")
def archives(sandbox_url: str) -> dict[str, bytes]:
    """Each archive as the host serves it whole."""
    fetched = {}
    for name in ARCHIVES:
        response = requests.get(f"{sandbox_url}/imagenet/{name}", timeout=60)
        response.raise_for_status()
        fetched[name] = response.content
    return fetched


def files_of(data: bytes) -> dict[str, bytes]:
    """The regular files of a tar or tgz, by name."""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {info.name: archive.extractfile(info).read() for info in archive.getmembers() if info.isfile()}


def test_imagenette_layout_and_short_side(archives: dict[str, bytes]) -> None:
    files = files_of(archives["imagenette2-160.tgz"])
    images = {name: data for name, data in files.items() if name.endswith(".JPEG")}
    pattern = re.compile(r"imagenette2-160/(train|val)/(n\d{8})/[^/]+\.JPEG")
    assert all(pattern.fullmatch(name) for name in images)
    per_split_class = {(match[1], match[2]) for match in map(pattern.fullmatch, images)}
    assert per_split_class == {(split, wnid) for split in ("train", "val") for wnid in IMAGENETTE_WNIDS}
    assert len(images) == len(IMAGENETTE_WNIDS) * (IMAGENETTE_TRAIN_PER_CLASS + IMAGENETTE_VAL_PER_CLASS)
    assert all(name.split("/")[-1].startswith("ILSVRC2012_val_") for name in images if "/val/" in name)
    assert {min(Image.open(io.BytesIO(data)).size) for data in images.values()} == {160}
    labels = files["imagenette2-160/noisy_imagenette.csv"].decode().splitlines()
    assert labels[0].startswith("path,noisy_labels_0") and len(labels) == len(images) + 1


def test_ilsvrc_train_is_a_tar_of_class_tars_and_val_is_flat(archives: dict[str, bytes]) -> None:
    class_tars = files_of(archives["ILSVRC2012_img_train.tar"])
    assert sorted(class_tars) == [f"{wnid}.tar" for wnid in sorted(ILSVRC_WNIDS)]
    for name, data in class_tars.items():
        wnid = name.removesuffix(".tar")
        inner = files_of(data)
        assert len(inner) == ILSVRC_TRAIN_PER_CLASS
        assert all(re.fullmatch(rf"{wnid}_\d+\.JPEG", member) for member in inner)
    val = files_of(archives["ILSVRC2012_img_val.tar"])
    assert sorted(val) == [f"ILSVRC2012_val_{serial:08d}.JPEG" for serial in range(1, ILSVRC_VAL_IMAGES + 1)]
    assert max(max(Image.open(io.BytesIO(data)).size) for data in val.values()) > 160  # native size, not -160


@pytest.mark.parametrize("archive", ["imagenette2-160.tgz", "ILSVRC2012_img_train.tar"])
def test_one_cmyk_jpeg_and_one_png_named_jpeg(archives: dict[str, bytes], archive: str) -> None:
    files = files_of(archives[archive])
    if archive.endswith(".tar"):
        files = {f"{outer}/{inner}": data for outer, tar in files.items() for inner, data in files_of(tar).items()}
    kinds = {}
    for name, data in files.items():
        if name.endswith(".JPEG"):
            with Image.open(io.BytesIO(data)) as image:
                kinds[name] = (image.format, image.mode)
    odd = {name: kind for name, kind in kinds.items() if kind != ("JPEG", "RGB")}
    assert sorted(odd.values()) == [("JPEG", "CMYK"), ("PNG", "RGB")]


def test_no_checksum_files_but_the_md5s_to_pin_are_those_of_the_served_bytes(
    sandbox_url: str, archives: dict[str, bytes], library: PhotoLibrary
) -> None:
    """Neither real host publishes a checksum file, so neither does the stand-in; a connection pins its md5s."""
    for path in ("imagenette2-160.tgz.md5", "ILSVRC2012.md5", "corrupt/imagenette2-160.tgz.md5"):
        assert requests.get(f"{sandbox_url}/imagenet/{path}", timeout=30).status_code == 404
    assert archive_md5s(library) == {name: hashlib.md5(data).hexdigest() for name, data in archives.items()}


def test_ranges_head_and_validators(sandbox_url: str, archives: dict[str, bytes]) -> None:
    url = f"{sandbox_url}/imagenet/ILSVRC2012_img_val.tar"
    data = archives["ILSVRC2012_img_val.tar"]
    head = requests.head(url, timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data) and not head.content
    assert head.headers["Accept-Ranges"] == "bytes" and head.headers["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    part = requests.get(url, headers={"Range": "bytes=1000-"}, timeout=30)
    assert part.status_code == 206 and part.content == data[1000:]
    assert part.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    stale = requests.get(url, headers={"Range": "bytes=1000-", "If-Range": '"0123"'}, timeout=30)
    assert stale.status_code == 200 and stale.content == data
    beyond = requests.get(url, headers={"Range": f"bytes={len(data)}-"}, timeout=30)
    assert beyond.status_code == 416


def test_broken_mirror_flips_a_byte(sandbox_url: str, archives: dict[str, bytes]) -> None:
    for name in ARCHIVES:
        broken = requests.get(f"{sandbox_url}/imagenet/corrupt/{name}", timeout=60).content
        assert len(broken) == len(archives[name]) and broken != archives[name]
        assert sum(a != b for a, b in zip(broken, archives[name], strict=True)) == 1
