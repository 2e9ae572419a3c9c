"""What the sandbox's dump hosts share (ImageNet, COCO): archives built once and kept in memory, served
intact and through a broken mirror (`corrupt/...`, one byte flipped while the checksum files still publish
the true digests), with md5sum files, all through `sandbox.ranges.file_response` (Range, If-Range, HEAD).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from sandbox.ranges import file_response

CORRUPT_MIRROR = "corrupt"


def corrupted(data: bytes) -> bytes:
    """`data` with one byte in the middle flipped: same length, different digest, as a bad mirror serves."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def checksum_listing(files: dict[str, bytes]) -> str:
    """md5sum's output for `files`: `<md5>  <name>` lines."""
    return "".join(f"{hashlib.md5(data).hexdigest()}  {name}\n" for name, data in files.items())


class DumpShelf:
    """Archives built on first request and then kept in memory, each under its path below the prefix.

    Building takes a second or two, so requests that arrive together wait for the first build instead of
    repeating it.
    """

    def __init__(self, builders: Mapping[str, Callable[[], bytes]]) -> None:
        self._builders = dict(builders)
        self._built: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def get(self, path: str) -> bytes:
        with self._lock:
            if path not in self._built:
                self._built[path] = self._builders[path]()
            return self._built[path]


def add_dump_routes(
    router: APIRouter, shelf: DumpShelf, media_types: Mapping[str, str], checksum_files: Mapping[str, Sequence[str]]
) -> None:
    """Serve each archive of `shelf` and each checksum file, at their paths and under the broken mirror.

    `media_types` maps archive paths to media types; `checksum_files` maps a checksum file's path to the
    archive paths it lists (by file name, as md5sum prints them when run in the archives' folder).
    """
    for mirror in ("", f"/{CORRUPT_MIRROR}"):
        for path in shelf:
            router.add_api_route(
                f"{mirror}/{path}",
                _archive_route(shelf, path, media_types[path], broken=bool(mirror)),
                methods=["GET", "HEAD"],
                response_class=Response,
                summary=f"{path}{' with one byte flipped' if mirror else ''}",
            )
        for checksum_path, covered in checksum_files.items():
            router.add_api_route(
                f"{mirror}/{checksum_path}",
                _checksum_route(shelf, tuple(covered)),
                methods=["GET"],
                response_class=PlainTextResponse,
                summary=f"md5sum lines of {', '.join(covered)}",
            )


def _archive_route(shelf: DumpShelf, path: str, media_type: str, broken: bool) -> Callable[[Request], Response]:
    def serve(request: Request) -> Response:
        data = shelf.get(path)
        filename = path.rsplit("/", 1)[-1]
        return file_response(request, corrupted(data) if broken else data, media_type, filename=filename)

    return serve


def _checksum_route(shelf: DumpShelf, paths: tuple[str, ...]) -> Callable[[], PlainTextResponse]:
    # Always the true digests, on the broken mirror too: that is what makes it a broken mirror.
    def listing() -> PlainTextResponse:
        return PlainTextResponse(checksum_listing({path.rsplit("/", 1)[-1]: shelf.get(path) for path in paths}))

    return listing
