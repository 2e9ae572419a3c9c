"""ImageNet dump host: small archives with the layouts of the real Imagenette and ILSVRC2012 downloads.

Under the sandbox host's `/imagenet` prefix (standing for https://s3.amazonaws.com/fast-ai-imageclas for
Imagenette and the ImageNet download site for ILSVRC2012):
- `imagenette2-160.tgz`: `imagenette2-160/{train,val}/<wnid>/<name>.JPEG` for the 10 Imagenette classes,
  every image scaled so its short side is 160 pixels as in the real -160 variant, plus the
  `imagenette2-160/noisy_imagenette.csv` label file the real archive carries.
- `ILSVRC2012_img_train.tar`: a tar of per-class tars (`n01440764.tar`, ...), each holding
  `n01440764_<n>.JPEG` at the photos' native size; `ILSVRC2012_img_val.tar`: flat
  `ILSVRC2012_val_00000001.JPEG`, ...
- `corrupt/<any of the above>`: a broken mirror. Each archive has one byte flipped, so a client that skips
  verification would register damaged data.

No checksum files, as neither real host publishes one. These archives are not the published ones, whose md5s
the connector pins in code (torchvision's), so a connection to this host pins theirs (`archive_md5s`).

Like the real sets, the Imagenette archive and the ILSVRC train tar each hold one CMYK JPEG and one PNG file
named `.JPEG` (ILSVRC2012's train set has 22 CMYK JPEGs and one PNG, n02105855_2933.JPEG), which a connector
must store as they are. Archives are built from the photo library on first request (about 5 MB in all, a few
seconds) and kept in memory; tar and gzip headers carry fixed times, so the bytes and their md5 are the same
in every process. Everything is served through `sandbox.ranges.file_response` (Range, If-Range, HEAD).

"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from fastapi import APIRouter
from PIL import Image

from sandbox.dumps import DumpShelf, add_dump_routes
from sandbox.library import PhotoLibrary

PREFIX = "imagenet"

IMAGENETTE = "imagenette2-160"
# The Imagenette classes: tench, English springer, cassette player, chain saw, church, French horn,
# garbage truck, gas pump, golf ball, parachute.
IMAGENETTE_WNIDS = (
    "n01440764",
    "n02102040",
    "n02979186",
    "n03000684",
    "n03028079",
    "n03394916",
    "n03417042",
    "n03425413",
    "n03445777",
    "n03888257",
)
IMAGENETTE_SHORT_SIDE = 160
IMAGENETTE_TRAIN_PER_CLASS = 6
IMAGENETTE_VAL_PER_CLASS = 2
# Ten ILSVRC2012 classes: five shared with Imagenette, plus vine snake and Shetland sheepdog (the classes of
# real CMYK and PNG oddities), tabby cat, racer and orange.
ILSVRC_WNIDS = (
    "n01440764",
    "n01739381",
    "n02105855",
    "n02123045",
    "n03000684",
    "n03028079",
    "n03417042",
    "n03888257",
    "n04037443",
    "n07747607",
)
ILSVRC_TRAIN_PER_CLASS = 5
ILSVRC_VAL_IMAGES = 20
ILSVRC_TRAIN = "ILSVRC2012_img_train.tar"
ILSVRC_VAL = "ILSVRC2012_img_val.tar"
# Library photos each archive draws from, so the two sets hold different photos.
IMAGENETTE_FIRST_PHOTO = 0
ILSVRC_FIRST_PHOTO = 100
ARCHIVE_TIME = 1575590400  # 2019-12-06, when imagenette2 was published; fixed so bytes are reproducible
JPEG_QUALITY = 90
TAR_MEDIA_TYPE = "application/x-tar"
TGZ_MEDIA_TYPE = "application/x-gzip"


@dataclass(frozen=True)
class ArchiveMember:
    """One image as it sits in an archive, with the library photo it shows and how it is encoded."""

    name: str
    number: int
    encoding: str  # "JPEG", "CMYK" (a CMYK JPEG) or "PNG" (a PNG under a .JPEG name)


def encode(image: Image.Image, encoding: str) -> bytes:
    """`image` as a file of the given kind; CMYK and PNG stand for the oddities real ImageNet holds."""
    buffer = io.BytesIO()
    if encoding == "PNG":
        image.save(buffer, format="PNG")
    elif encoding == "CMYK":
        image.convert("CMYK").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def short_side(image: Image.Image, side: int) -> Image.Image:
    """`image` scaled so its shorter side is `side` pixels (never up), as fast.ai made the -160 variant."""
    width, height = image.size
    scale = side / min(width, height)
    if scale >= 1:
        return image
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)


def tar_bytes(files: Iterable[tuple[str, bytes | None]]) -> bytes:
    """An uncompressed tar of `(name, data)` pairs (data None: a directory), with fixed owners and times."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.mtime, info.uname, info.gname = ARCHIVE_TIME, "root", "root"
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class ImageNetDumps:
    """The layouts of the three archives, and their bytes built from the library."""

    def __init__(self, library: PhotoLibrary) -> None:
        self.library = library
        self.shelf = DumpShelf(
            {f"{IMAGENETTE}.tgz": self._imagenette, ILSVRC_TRAIN: self._ilsvrc_train, ILSVRC_VAL: self._ilsvrc_val}
        )

    @cached_property
    def imagenette_members(self) -> list[ArchiveMember]:
        """The Imagenette images: per class the train images, then the val ones named as ILSVRC val files."""
        members, number = [], IMAGENETTE_FIRST_PHOTO
        for class_index, wnid in enumerate(IMAGENETTE_WNIDS):
            for index in range(IMAGENETTE_TRAIN_PER_CLASS):
                name = f"{IMAGENETTE}/train/{wnid}/{wnid}_{1000 + (class_index * 131 + index * 7919) % 30000}.JPEG"
                members.append(ArchiveMember(name, number, _encoding_at(class_index, index)))
                number += 1
            for index in range(IMAGENETTE_VAL_PER_CLASS):
                serial = 1 + (class_index * IMAGENETTE_VAL_PER_CLASS + index) * 487
                members.append(
                    ArchiveMember(f"{IMAGENETTE}/val/{wnid}/ILSVRC2012_val_{serial:08d}.JPEG", number, "JPEG")
                )
                number += 1
        return members

    @cached_property
    def ilsvrc_train_members(self) -> list[ArchiveMember]:
        """Per-class members named `<wnid>/<wnid>_<n>.JPEG`: the part before the slash is the inner tar."""
        members, number = [], ILSVRC_FIRST_PHOTO
        for class_index, wnid in enumerate(ILSVRC_WNIDS):
            for index in range(ILSVRC_TRAIN_PER_CLASS):
                name = f"{wnid}/{wnid}_{2000 + (class_index * 173 + index * 6113) % 40000}.JPEG"
                members.append(ArchiveMember(name, number, _encoding_at(class_index, index)))
                number += 1
        return members

    @cached_property
    def ilsvrc_val_members(self) -> list[ArchiveMember]:
        first = ILSVRC_FIRST_PHOTO + len(ILSVRC_WNIDS) * ILSVRC_TRAIN_PER_CLASS
        return [
            ArchiveMember(f"ILSVRC2012_val_{serial:08d}.JPEG", first + serial - 1, "JPEG")
            for serial in range(1, ILSVRC_VAL_IMAGES + 1)
        ]

    def _imagenette(self) -> bytes:
        members = self.imagenette_members
        directories = [f"{IMAGENETTE}/"] + [
            f"{IMAGENETTE}/{split}/{wnid}/" if wnid else f"{IMAGENETTE}/{split}/"
            for split in ("train", "val")
            for wnid in ("", *IMAGENETTE_WNIDS)
        ]
        images = [
            (member.name, encode(short_side(self.library.image(member.number), IMAGENETTE_SHORT_SIDE), member.encoding))
            for member in members
        ]
        # noisy_imagenette.csv: every image with its label at 0 to 50% label noise (here always the true one).
        rows = ["path,noisy_labels_0,noisy_labels_1,noisy_labels_5,noisy_labels_25,noisy_labels_50,is_valid"]
        for member in members:
            _, split, wnid, _ = member.name.split("/")
            rows.append(f"{member.name.removeprefix(IMAGENETTE + '/')},{','.join([wnid] * 5)},{split == 'val'}")
        files: list[tuple[str, bytes | None]] = [(directory, None) for directory in directories]
        files += [*images, (f"{IMAGENETTE}/noisy_imagenette.csv", "\n".join(rows).encode() + b"\n")]
        return gzip.compress(tar_bytes(files), mtime=ARCHIVE_TIME)

    def _ilsvrc_train(self) -> bytes:
        by_class: dict[str, list[tuple[str, bytes | None]]] = {}
        for member in self.ilsvrc_train_members:
            wnid, file_name = member.name.split("/")
            by_class.setdefault(wnid, []).append(
                (file_name, encode(self.library.image(member.number), member.encoding))
            )
        return tar_bytes((f"{wnid}.tar", tar_bytes(files)) for wnid, files in by_class.items())

    def _ilsvrc_val(self) -> bytes:
        return tar_bytes(
            (member.name, encode(self.library.image(member.number), member.encoding))
            for member in self.ilsvrc_val_members
        )


def _encoding_at(class_index: int, index: int) -> str:
    """The first class's second image is a CMYK JPEG and the second class's third a disguised PNG."""
    return {(0, 1): "CMYK", (1, 2): "PNG"}.get((class_index, index), "JPEG")


def archive_md5s(library: PhotoLibrary) -> dict[str, str]:
    """The md5 of every archive this stand-in serves, by file name: what a connection to it pins. Builds them
    all (a few seconds); the bytes do not depend on the library's anchor date."""
    return ImageNetDumps(library).shelf.md5s()


def create_router(library: PhotoLibrary) -> APIRouter:
    dumps = ImageNetDumps(library)
    router = APIRouter(tags=["imagenet"])
    add_dump_routes(
        router,
        dumps.shelf,
        media_types={f"{IMAGENETTE}.tgz": TGZ_MEDIA_TYPE, ILSVRC_TRAIN: TAR_MEDIA_TYPE, ILSVRC_VAL: TAR_MEDIA_TYPE},
    )
    return router
