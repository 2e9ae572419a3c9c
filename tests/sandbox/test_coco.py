"""The COCO dump host serves zips with the real COCO 2017 layout, annotation files with COCO's schema and its
eight licenses, grayscale photos among color ones, Flickr origins that the Flickr stand-in really serves,
HTTP ranges and a broken mirror, and no checksum files (COCO publishes none). Requests go to a real sandbox
process.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image

from sandbox.coco import SPLITS, archive_md5s
from sandbox.flickr import FlickrCatalogue
from sandbox.library import PhotoLibrary
from tests.captures.coco import COCO_LICENSES

ZIPS = ("zips/train2017.zip", "zips/val2017.zip", "annotations/annotations_trainval2017.zip")


@pytest.fixture(scope="module")
def zips(sandbox_url: str) -> dict[str, bytes]:
    fetched = {}
    for path in ZIPS:
        response = requests.get(f"{sandbox_url}/coco/{path}", timeout=60)
        response.raise_for_status()
        fetched[path] = response.content
    return fetched


def instances(zips: dict[str, bytes], split: str) -> dict:
    with zipfile.ZipFile(io.BytesIO(zips["annotations/annotations_trainval2017.zip"])) as archive:
        return json.loads(archive.read(f"annotations/instances_{split}.json"))


def test_zip_layouts(zips: dict[str, bytes]) -> None:
    for split, count in SPLITS.items():
        with zipfile.ZipFile(io.BytesIO(zips[f"zips/{split}.zip"])) as archive:
            names = archive.namelist()
        assert names[0] == f"{split}/"
        assert len(names) == count + 1 and all(re.fullmatch(rf"{split}/\d{{12}}\.jpg", name) for name in names[1:])
    with zipfile.ZipFile(io.BytesIO(zips["annotations/annotations_trainval2017.zip"])) as archive:
        assert {f"annotations/instances_{split}.json" for split in SPLITS} <= set(archive.namelist())


def test_annotations_follow_cocos_schema_and_match_the_images(zips: dict[str, bytes]) -> None:
    for split in SPLITS:
        document = instances(zips, split)
        assert set(document) == {"info", "licenses", "images", "annotations", "categories"}
        assert {item["id"]: item["name"] for item in document["licenses"]} == COCO_LICENSES
        with zipfile.ZipFile(io.BytesIO(zips[f"zips/{split}.zip"])) as archive:
            for image in document["images"]:
                assert set(image) == {
                    "license", "file_name", "coco_url", "height", "width", "date_captured", "flickr_url", "id"
                }  # fmt: skip
                assert image["file_name"] == f"{image['id']:012d}.jpg" and image["license"] in COCO_LICENSES
                assert image["coco_url"] == f"http://images.cocodataset.org/{split}/{image['file_name']}"
                with Image.open(io.BytesIO(archive.read(f"{split}/{image['file_name']}"))) as picture:
                    assert picture.size == (image["width"], image["height"])
        image_ids = {image["id"] for image in document["images"]}
        assert {annotation["image_id"] for annotation in document["annotations"]} < image_ids  # some have none


def test_some_photos_are_grayscale(zips: dict[str, bytes]) -> None:
    with zipfile.ZipFile(io.BytesIO(zips["zips/val2017.zip"])) as archive:
        modes = [Image.open(io.BytesIO(archive.read(name))).mode for name in archive.namelist()[1:]]
    assert 0 < modes.count("L") < len(modes) and set(modes) == {"L", "RGB"}


def test_flickr_urls_name_photos_the_flickr_stand_in_serves(sandbox_url: str, zips: dict[str, bytes]) -> None:
    """Each COCO photo is a Flickr stand-in photo: its flickr_url's id and secret fetch that photo there, at
    COCO's 640-pixel size (`_z`) where Flickr has it."""
    catalogue = FlickrCatalogue(PhotoLibrary())
    for image in instances(zips, "val2017")["images"][:20]:
        parsed = urlsplit(image["flickr_url"])
        assert parsed.scheme == "http" and parsed.hostname.endswith(".staticflickr.com")
        server, name = parsed.path.strip("/").split("/")
        photo_id, _secret, *suffix = name.removesuffix(".jpg").split("_")
        photo = catalogue.by_id[photo_id]
        assert photo.license == image["license"]
        assert suffix == ["z"] or not catalogue.has_size(photo, "z")
        served = requests.get(f"{sandbox_url}/flickr/live/{server}/{name}", timeout=30)
        assert served.status_code == 200 and served.url.endswith(name)  # not redirected to the placeholder
        assert Image.open(io.BytesIO(served.content)).size == catalogue.size_of(photo.number, (suffix or [""])[0])


def test_no_checksums_ranges_and_broken_mirror(sandbox_url: str, zips: dict[str, bytes], library: PhotoLibrary) -> None:
    pins = archive_md5s(library)
    assert pins == {path.rsplit("/", 1)[-1]: hashlib.md5(data).hexdigest() for path, data in zips.items()}
    for path, data in zips.items():
        assert requests.get(f"{sandbox_url}/coco/{path}.md5", timeout=30).status_code == 404
        broken = requests.get(f"{sandbox_url}/coco/corrupt/{path}", timeout=60).content
        assert len(broken) == len(data) and hashlib.md5(broken).hexdigest() != pins[path.rsplit("/", 1)[-1]]
    url = f"{sandbox_url}/coco/zips/val2017.zip"
    part = requests.get(url, headers={"Range": "bytes=-100"}, timeout=30)
    assert part.status_code == 206 and part.content == zips["zips/val2017.zip"][-100:]
    head = requests.head(url, timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(zips["zips/val2017.zip"])
