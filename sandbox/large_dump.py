"""Large ILSVRC-style train tars, for benchmarks and fan-out tests: `N` per-class tars of `M` small JPEGs each.

Real ILSVRC2012 is 1,000 class tars of about 1,300 photos; ingestion at that scale cannot be measured on the
few hundred photos of the stand-in archives. A generated dump has ILSVRC's layout (`<wnid>.tar` members
holding `<wnid>_<n>.JPEG`), made of the library's photos scaled to 160 to 500 pixels on their long side: every
image is a distinct (photo, size) pair, so every one is a new object in the lake. One class tar may be cut in
the middle of a photo (`corrupt_class`), as a broken download of an inner archive would be.

The sandbox serves them at `/imagenet/generated/<name>/ILSVRC2012_img_train.tar`, where the name says the
shape (`500x100`, `6x5-corrupt2`); `.../manifest.json` beside it gives its md5 for a connection to pin (a
sandbox convenience: real hosts publish no checksum). A dump is built once into the generated-dumps folder
(`COLORFLOW_SANDBOX_GENERATED`, default a folder under the system's temporary directory) and served from
disk; 50,000 photos take about a minute on two cores. Build ahead of time with

    python -m sandbox.large_dump 500x100
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import re
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse
from PIL import Image

from sandbox.imagenet import ARCHIVE_TIME, TAR_MEDIA_TYPE, encode, tar_bytes
from sandbox.library import PhotoLibrary

PREFIX = "imagenet/generated"
TRAIN_TAR = "ILSVRC2012_img_train.tar"
MANIFEST = "manifest.json"
SMALLEST_SIDE, LARGEST_SIDE = 160, 500
SIDES = LARGEST_SIDE - SMALLEST_SIDE + 1
RECIPE = "scaled2"  # part of a built dump's folder name: a change of recipe must not serve old builds
# Large enough for real ILSVRC's shape; the bound keeps a typo in a URL from filling the disk.
MOST_IMAGES = 1_300_000
NAME = re.compile(r"(?P<classes>[1-9]\d*)x(?P<per_class>[1-9]\d*)(?:-corrupt(?P<corrupt>\d+))?")
_building = threading.Lock()


@dataclass(frozen=True)
class LargeDump:
    """The shape of a generated train tar: how many classes, how many photos each, which class tar is cut."""

    classes: int
    per_class: int
    corrupt_class: int | None = None

    def __post_init__(self) -> None:
        if self.classes * self.per_class > MOST_IMAGES:
            raise ValueError(f"{self.classes} x {self.per_class} photos is over the {MOST_IMAGES} a dump may hold")
        if self.corrupt_class is not None and not 0 <= self.corrupt_class < self.classes:
            raise ValueError(f"class {self.corrupt_class} is not one of the {self.classes} classes")

    @classmethod
    def parse(cls, name: str) -> LargeDump:
        match = NAME.fullmatch(name)
        if match is None:
            raise ValueError(f"not a generated dump's name (<classes>x<per class>[-corrupt<class>]): {name!r}")
        corrupt = match["corrupt"]
        return cls(int(match["classes"]), int(match["per_class"]), int(corrupt) if corrupt is not None else None)

    @property
    def name(self) -> str:
        corrupt = f"-corrupt{self.corrupt_class}" if self.corrupt_class is not None else ""
        return f"{self.classes}x{self.per_class}{corrupt}"

    @property
    def images(self) -> int:
        return self.classes * self.per_class

    @staticmethod
    def wnid(class_index: int) -> str:
        """A WordNet-id-shaped class name no real ImageNet class has (real ones start n0 to n1 and n4)."""
        return f"n{90_000_000 + class_index:08d}"

    def folder(self, generated: Path, library: PhotoLibrary) -> Path:
        """Where this dump lies: its photos depend on the library's size and the recipe, so both are named."""
        return generated / f"{self.name}-library{len(library.photos)}-{RECIPE}"

    def build(self, generated: Path, library: PhotoLibrary, workers: int | None = None) -> Path:
        """The train tar, built unless it is there already; its manifest is written beside it."""
        folder = self.folder(generated, library)
        tar = folder / TRAIN_TAR
        with _building:
            if (folder / MANIFEST).is_file():
                return tar
            distinct = len(library.photos) * SIDES
            if self.images > distinct:
                raise ValueError(f"{self.images} photos asked for; the library makes {distinct} distinct ones")
            folder.mkdir(parents=True, exist_ok=True)
            partial = tar.with_name(TRAIN_TAR + ".part")
            with partial.open("wb") as out, tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as outer:
                for class_index, data in enumerate(_class_tars(self, library.variants, workers or os.cpu_count() or 1)):
                    info = tarfile.TarInfo(f"{self.wnid(class_index)}.tar")
                    info.size, info.mode, info.mtime, info.uname, info.gname = (
                        len(data),
                        0o644,
                        ARCHIVE_TIME,
                        "root",
                        "root",
                    )
                    outer.addfile(info, io.BytesIO(data))
            with partial.open("rb") as written:
                md5 = hashlib.file_digest(written, "md5").hexdigest()
            partial.replace(tar)
            manifest = {"name": self.name, "images": self.images, "bytes": tar.stat().st_size, "md5": md5}
            (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            return tar


def generated_folder() -> Path:
    """Where generated dumps are kept between sandbox processes."""
    configured = os.environ.get("COLORFLOW_SANDBOX_GENERATED")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "colorflow-sandbox-dumps"


def _class_tars(dump: LargeDump, variants: int, workers: int) -> Iterator[bytes]:
    """The class tars in order, built by `workers` processes."""
    # Spawned, not forked: the sandbox builds from a request thread, and a fork of a threaded server can
    # inherit a lock some other thread held.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, initializer=_use_library, initargs=(variants,)) as pool:
        yield from pool.map(_class_tar, [dump] * dump.classes, range(dump.classes), chunksize=1)


_library: PhotoLibrary | None = None


def _use_library(variants: int) -> None:
    global _library
    os.environ["COLORFLOW_SANDBOX_VARIANTS"] = str(variants)
    _library = PhotoLibrary()


def _class_tar(dump: LargeDump, class_index: int) -> bytes:
    """One class tar: photo k of the dump is library photo k // SIDES at long side 160 + k % SIDES, so that
    consecutive photos share a rendered original."""
    assert _library is not None
    wnid = dump.wnid(class_index)
    files: list[tuple[str, bytes | None]] = []
    for index in range(dump.per_class):
        k = class_index * dump.per_class + index
        image = _library.image(k // SIDES)
        # Scaled to exactly this long side, up as well as down, so that no two photos share their bytes.
        scale = (SMALLEST_SIDE + k % SIDES) / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR
        )
        files.append((f"{wnid}_{index + 1}.JPEG", encode(image, "JPEG")))
    data = tar_bytes(files)
    if class_index == dump.corrupt_class:
        return data[: len(data) // 2]  # cut in the middle of a photo
    return data


def create_router(library: PhotoLibrary) -> APIRouter:
    router = APIRouter(tags=["imagenet"])

    def built(name: str) -> Path:
        try:
            dump = LargeDump.parse(name)
            return dump.build(generated_folder(), library)
        except ValueError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None

    @router.api_route(f"/{{name}}/{TRAIN_TAR}", methods=["GET", "HEAD"], summary="A generated ILSVRC-style train tar")
    def train_tar(name: str) -> FileResponse:
        # Starlette's FileResponse answers Range and If-Range from the file, without reading it into memory.
        return FileResponse(built(name), media_type=TAR_MEDIA_TYPE, filename=TRAIN_TAR)

    @router.get(f"/{{name}}/{MANIFEST}", summary="A generated dump's size and md5, for a connection to pin")
    def manifest(name: str) -> dict[str, object]:
        return json.loads((built(name).parent / MANIFEST).read_text())

    return router


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.large_dump", description="Build a large ILSVRC-style train tar for the sandbox."
    )
    parser.add_argument("name", help="the dump's shape, <classes>x<per class>[-corrupt<class>], e.g. 500x100")
    parser.add_argument(
        "--folder", type=Path, default=None, help="the generated-dumps folder (default: as the sandbox)"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes encoding photos (default: every core)")
    args = parser.parse_args(argv)
    library = PhotoLibrary()
    tar = LargeDump.parse(args.name).build(args.folder or generated_folder(), library, args.workers)
    print(json.dumps({"tar": str(tar), **json.loads((tar.parent / MANIFEST).read_text())}))


if __name__ == "__main__":
    main()
