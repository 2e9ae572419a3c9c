"""What the sandbox's dump hosts share (ImageNet, COCO): archives built once and kept in memory, served
intact and through a broken mirror (`corrupt/...`, one byte flipped), all through
`sandbox.ranges.file_response` (Range, If-Range, HEAD).

No checksum files are served, as the real hosts publish none. The stand-ins' archives are not the published
ones whose md5s a connector pins in code, so a client pins theirs (`DumpShelf.md5s`) in its connection, as an
operator pins a mirror's; against those pins the broken mirror's archives fail verification.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sandbox.ranges import file_response

CORRUPT_MIRROR = "corrupt"


def corrupted(data: bytes) -> bytes:
    """`data` with one byte in the middle flipped: same length, different digest, as a bad mirror serves."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


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

    def md5s(self) -> dict[str, str]:
        """The md5 of every archive by file name, as a connection pins them (building each one)."""
        return {path.rsplit("/", 1)[-1]: hashlib.md5(self.get(path)).hexdigest() for path in self}


def add_dump_routes(router: APIRouter, shelf: DumpShelf, media_types: Mapping[str, str]) -> None:
    """Serve each archive of `shelf` at its path and under the broken mirror; `media_types` maps archive
    paths to media types."""
    for mirror in ("", f"/{CORRUPT_MIRROR}"):
        for path in shelf:
            router.add_api_route(
                f"{mirror}/{path}",
                _archive_route(shelf, path, media_types[path], broken=bool(mirror)),
                methods=["GET", "HEAD"],
                response_class=Response,
                summary=f"{path}{' with one byte flipped' if mirror else ''}",
            )


def _archive_route(shelf: DumpShelf, path: str, media_type: str, broken: bool) -> Callable[[Request], Response]:
    def serve(request: Request) -> Response:
        data = shelf.get(path)
        filename = path.rsplit("/", 1)[-1]
        return file_response(request, corrupted(data) if broken else data, media_type, filename=filename)

    return serve
