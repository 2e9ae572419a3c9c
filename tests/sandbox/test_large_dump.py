"""Generated ILSVRC-style train tars: the real layout, distinct photos of 160 to 500 pixels, a cut class tar
where asked, a manifest whose md5 is the file's, and served with ranges by the sandbox."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import requests
from PIL import Image

from pipelines.archives import CorruptArchive, iter_tar
from sandbox.large_dump import MANIFEST, LargeDump
from sandbox.library import PhotoLibrary


def test_a_generated_dump_has_ilsvrcs_layout_and_distinct_photos(tmp_path: Path, library: PhotoLibrary) -> None:
    dump = LargeDump.parse("3x4-corrupt1")
    tar = dump.build(tmp_path, library, workers=1)
    manifest = json.loads((tar.parent / MANIFEST).read_text())
    assert manifest["md5"] == hashlib.md5(tar.read_bytes()).hexdigest() and manifest["images"] == 12

    with tarfile.open(tar) as outer:
        class_tars = {member.name: outer.extractfile(member).read() for member in outer.getmembers()}
    assert list(class_tars) == ["n90000000.tar", "n90000001.tar", "n90000002.tar"]
    photos = []
    for name in ("n90000000.tar", "n90000002.tar"):
        for member in iter_tar(io.BytesIO(class_tars[name])):
            assert member.name.startswith(name.removesuffix(".tar") + "_") and member.name.endswith(".JPEG")
            with Image.open(io.BytesIO(member.data)) as image:
                assert 160 <= max(image.size) <= 500
            photos.append(member.data)
    assert len({hashlib.sha256(photo).digest() for photo in photos}) == len(photos) == 8
    with pytest.raises(CorruptArchive):
        list(iter_tar(io.BytesIO(class_tars["n90000001.tar"])))

    assert dump.build(tmp_path, library) == tar  # built once


def test_every_photo_of_a_dump_is_distinct_even_past_the_library_photos_own_size(
    tmp_path: Path, library: PhotoLibrary
) -> None:
    """Photo k is library photo k // 341 at long side 160 + k % 341: the second class here reaches 500 px,
    larger than the library's photos, which are scaled up rather than repeated."""
    tar = LargeDump.parse("2x341").build(tmp_path, library, workers=2)
    with tarfile.open(tar) as outer:
        digests = [
            hashlib.sha256(member.data).digest()
            for class_tar in outer.getmembers()
            for member in iter_tar(io.BytesIO(outer.extractfile(class_tar).read()))
        ]
    assert len(set(digests)) == len(digests) == 682


def test_names_say_the_shape_and_bad_ones_are_refused() -> None:
    assert LargeDump.parse("500x100") == LargeDump(500, 100)
    assert LargeDump.parse("6x5-corrupt2").name == "6x5-corrupt2"
    for name in ("500", "0x5", "6x5-corrupt9", "2000x1000"):
        with pytest.raises(ValueError):
            LargeDump.parse(name)


def test_the_sandbox_serves_a_generated_dump_with_ranges(sandbox_url: str) -> None:
    folder = f"{sandbox_url}/imagenet/generated/4x3"
    manifest = requests.get(f"{folder}/manifest.json", timeout=120).json()
    whole = requests.get(f"{folder}/ILSVRC2012_img_train.tar", timeout=60)
    assert hashlib.md5(whole.content).hexdigest() == manifest["md5"]
    tail = requests.get(f"{folder}/ILSVRC2012_img_train.tar", headers={"Range": "bytes=1000-"}, timeout=60)
    assert tail.status_code == 206 and tail.content == whole.content[1000:]
    assert (
        requests.get(f"{sandbox_url}/imagenet/generated/lots/ILSVRC2012_img_train.tar", timeout=10).status_code == 404
    )
