"""COCO dump host: small zips with the layout and annotation schema of the real COCO 2017 downloads.

Under the sandbox host's `/coco` prefix (standing for http://images.cocodataset.org):
- `zips/val2017.zip` (`val2017/000000xxxxxx.jpg`) and `zips/train2017.zip` (`train2017/...`);
- `annotations/annotations_trainval2017.zip` with `annotations/instances_{train,val}2017.json` and
  `annotations/captions_{train,val}2017.json`;
- `corrupt/<any of the above>`: a broken mirror, one byte flipped in each zip.

No checksums, as COCO publishes none: a connection to this host pins the zips' md5s (`archive_md5s`), as an
operator pins COCO's, and against those the broken mirror's zips fail verification.

`instances_*.json` has COCO's keys: `info`, the real eight `licenses` (ids 1 to 8, names and URLs as COCO
lists them), `images` (`license`, `file_name`, `coco_url`, `height`, `width`, `date_captured`, `flickr_url`,
`id`), `annotations` (a box around the photo's subject where COCO has a category for it; some images have
none, as 48 real val2017 images have none) and `categories`. About one image in seven is grayscale, as
COCO holds grayscale photos too.

COCO's images came from Flickr, and so do these: each is a photo of the Flickr stand-in (`sandbox.flickr`),
and its `flickr_url` names that photo's real id and secret there (in the form
`http://farm66.staticflickr.com/65535/<flickr id>_<secret>_z.jpg`, COCO's 640-pixel size; a library photo
smaller than that is named at the largest size the Flickr stand-in has), so the same photo reached through
Flickr and through COCO can be recognized as one. COCO's license ids are Flickr's ids 1 to 8, so only photos
under one of those licenses are taken, and each keeps its Flickr license. The bytes are COCO's own JPEG
encoding, not Flickr's, so the two copies have different SHA-256s, as they do for real.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from fastapi import APIRouter

from sandbox.dumps import DumpShelf, add_dump_routes
from sandbox.flickr import FARM, FlickrCatalogue
from sandbox.library import PhotoLibrary

PREFIX = "coco"

SPLITS = {"train2017": 40, "val2017": 60}  # images per split
ANNOTATIONS = "annotations_trainval2017"
COCO_SIZE = "z"  # the Flickr size COCO downloaded (640 pixels on the longest edge)
FIRST_PHOTO = 200  # library photos from here on, so COCO holds other photos than the ImageNet dumps
GRAYSCALE_EVERY = 7
JPEG_QUALITY = 85  # COCO's own encoding: different bytes from the Flickr stand-in's (quality 88)
ZIP_TIME = (2017, 8, 31, 12, 0, 0)  # fixed, so the zips and their md5s are the same in every process
ZIP_MEDIA_TYPE = "application/zip"
# COCO's licenses exactly as instances_*2017.json lists them; the ids are Flickr's license ids.
LICENSES = (
    (1, "Attribution-NonCommercial-ShareAlike License", "http://creativecommons.org/licenses/by-nc-sa/2.0/"),
    (2, "Attribution-NonCommercial License", "http://creativecommons.org/licenses/by-nc/2.0/"),
    (3, "Attribution-NonCommercial-NoDerivs License", "http://creativecommons.org/licenses/by-nc-nd/2.0/"),
    (4, "Attribution License", "http://creativecommons.org/licenses/by/2.0/"),
    (5, "Attribution-ShareAlike License", "http://creativecommons.org/licenses/by-sa/2.0/"),
    (6, "Attribution-NoDerivs License", "http://creativecommons.org/licenses/by-nd/2.0/"),
    (7, "No known copyright restrictions", "http://flickr.com/commons/usage/"),
    (8, "United States Government Work", "http://www.usa.gov/copyright.shtml"),
)
# COCO categories (official ids) for the library's base photos; the others show nothing COCO labels.
CATEGORIES = {
    "astronaut.png": (1, "person", "person"),
    "grace_hopper.jpg": (1, "person", "person"),
    "motorcycle_left.png": (4, "motorcycle", "vehicle"),
    "chelsea.png": (17, "cat", "animal"),
    "coffee.png": (47, "cup", "kitchen"),
    "flower.jpg": (64, "potted plant", "furniture"),
}
INFO = {
    "description": "COCO 2017 Dataset",
    "url": "http://cocodataset.org",
    "version": "1.0",
    "year": 2017,
    "contributor": "COCO Consortium",
    "date_created": "2017/09/01",
}
CAPTURED_BEFORE = datetime(2013, 11, 25, 14, 0, 0)


@dataclass(frozen=True)
class CocoImage:
    """One image of the dump: its COCO record's facts and the library photo it shows."""

    id: int
    split: str
    number: int
    license: int
    grayscale: bool
    flickr_path: str  # the photo on Flickr's static host: /<server>/<id>_<secret>_<size>.jpg
    date_captured: str

    @property
    def file_name(self) -> str:
        return f"{self.id:012d}.jpg"

    @property
    def member(self) -> str:
        return f"{self.split}/{self.file_name}"

    @property
    def flickr_url(self) -> str:
        return f"http://farm{FARM}.staticflickr.com{self.flickr_path}"

    @property
    def coco_url(self) -> str:
        return f"http://images.cocodataset.org/{self.split}/{self.file_name}"


class CocoDumps:
    """The images of each split, their annotation files, and the zips, built from the library."""

    def __init__(self, library: PhotoLibrary) -> None:
        self.library = library
        paths = {f"zips/{split}.zip": (lambda split=split: self._images_zip(split)) for split in SPLITS}
        paths[f"annotations/{ANNOTATIONS}.zip"] = self._annotations_zip
        self.shelf = DumpShelf(paths)

    @cached_property
    def images(self) -> list[CocoImage]:
        """The dump's images, split by split; only photos under a license COCO has (Flickr's 1 to 8)."""
        catalogue = FlickrCatalogue(self.library)
        openly_licensed = [photo for photo in self.library.photos[FIRST_PHOTO:] if 1 <= photo.license_id <= 8]
        images, taken = [], iter(openly_licensed)
        for split, count in SPLITS.items():
            for _ in range(count):
                photo = next(taken)
                captured = CAPTURED_BEFORE - timedelta(seconds=photo.number * 104_729)
                images.append(
                    CocoImage(
                        id=100_000 + photo.number * 1_277,
                        split=split,
                        number=photo.number,
                        license=photo.license_id,
                        grayscale=len(images) % GRAYSCALE_EVERY == 3,
                        flickr_path=catalogue.static_path_at_most(catalogue.photos[photo.number], COCO_SIZE),
                        date_captured=captured.strftime("%Y-%m-%d %H:%M:%S"),
                    )
                )
        return images

    def image_bytes(self, image: CocoImage) -> bytes:
        picture = self.library.image(image.number)
        buffer = io.BytesIO()
        (picture.convert("L") if image.grayscale else picture).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue()

    def instances(self, split: str) -> dict[str, Any]:
        """`instances_<split>.json` as COCO writes it, with a box around each photo's subject."""
        records, annotations = [], []
        for image in (image for image in self.images if image.split == split):
            width, height = self.library.size(image.number)
            records.append(
                {
                    "license": image.license,
                    "file_name": image.file_name,
                    "coco_url": image.coco_url,
                    "height": height,
                    "width": width,
                    "date_captured": image.date_captured,
                    "flickr_url": image.flickr_url,
                    "id": image.id,
                }
            )
            category = CATEGORIES.get(self.library.photos[image.number].base)
            if category:
                box = [round(width * 0.1, 2), round(height * 0.1, 2), round(width * 0.8, 2), round(height * 0.8, 2)]
                x, y, w, h = box
                annotations.append(
                    {
                        "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                        "area": round(w * h, 2),
                        "iscrowd": 0,
                        "image_id": image.id,
                        "bbox": box,
                        "category_id": category[0],
                        "id": 900_000 + image.id,
                    }
                )
        categories = sorted({(number, name, group) for number, name, group in CATEGORIES.values()})
        return {
            "info": INFO,
            "licenses": [{"url": url, "id": number, "name": name} for number, name, url in LICENSES],
            "images": records,
            "annotations": annotations,
            "categories": [{"supercategory": group, "id": number, "name": name} for number, name, group in categories],
        }

    def captions(self, split: str) -> dict[str, Any]:
        """`captions_<split>.json`: the same images, one caption each, so a reader must pick the right file."""
        instances = self.instances(split)
        captions = [
            {"image_id": record["id"], "id": 700_000 + record["id"], "caption": "A photo of something colorful."}
            for record in instances["images"]
        ]
        return {**instances, "annotations": captions, "categories": []}

    def _images_zip(self, split: str) -> bytes:
        files = [(image.member, self.image_bytes(image)) for image in self.images if image.split == split]
        return zip_bytes([(f"{split}/", None), *sorted(files)], compress=False)

    def _annotations_zip(self) -> bytes:
        files: list[tuple[str, bytes | None]] = [("annotations/", None)]
        for split in SPLITS:
            for kind, document in (("instances", self.instances(split)), ("captions", self.captions(split))):
                files.append((f"annotations/{kind}_{split}.json", json.dumps(document).encode()))
        return zip_bytes(files, compress=True)


def zip_bytes(files: list[tuple[str, bytes | None]], compress: bool) -> bytes:
    """A zip of `(name, data)` pairs (data None: a folder) with fixed times; JPEGs are stored, JSON deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = (0o40755 if data is None else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED if compress and data is not None else zipfile.ZIP_STORED
            archive.writestr(info, data or b"")
    return buffer.getvalue()


def archive_md5s(library: PhotoLibrary) -> dict[str, str]:
    """The md5 of every zip this stand-in serves, by file name: what a connection to it pins. Builds them all
    (a few seconds); the bytes do not depend on the library's anchor date."""
    return CocoDumps(library).shelf.md5s()


def create_router(library: PhotoLibrary) -> APIRouter:
    dumps = CocoDumps(library)
    router = APIRouter(tags=["coco"])
    add_dump_routes(router, dumps.shelf, media_types=dict.fromkeys(dumps.shelf, ZIP_MEDIA_TYPE))
    return router
