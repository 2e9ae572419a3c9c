"""A generic blob host, for tests and benchmarks of downloads: bytes of any size on demand, served like S3.

Under the sandbox host's `/files` prefix:
- `GET|HEAD blob/{size}.bin?seed=N`: `size` deterministic pseudo-random bytes (the same for the same size
  and seed in every sandbox process), up to 256 MiB, through `sandbox.ranges.file_response` (ETag, ranges,
  If-Range). `no_ranges=1` plays a server without range support: `Range` is ignored and the whole file comes.
- `GET blob/{size}.bin.md5?seed=N`: `<md5 hex>  <size>.bin`, the md5sum line that dump hosts publish.
- `_admin/stats`: how many blob requests were served, how many asked for a range, and the latest requests
  (method, size, seed, Range, If-Range, status), so tests can see how a client resumed; `POST _admin/reset`
  empties them.

Blobs are generated with numpy's PCG64 (256 MiB in about half a second) and kept in a small LRU cache, since
a resuming client asks for the same blob many times.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from sandbox.library import PhotoLibrary
from sandbox.ranges import file_response

PREFIX = "files"

MAX_BLOB_BYTES = 256 * 1024 * 1024
CACHE_BYTES = 512 * 1024 * 1024  # a few large blobs, or many small ones; the newest is always kept
LOGGED_REQUESTS = 1000  # enough for any one test, small enough to return as JSON
MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Blob:
    data: bytes
    md5: str


def generate_blob(size: int, seed: int) -> bytes:
    """`size` pseudo-random bytes fixed by `seed`: PCG64's raw output, little-endian whatever the machine."""
    words = np.random.PCG64(seed).random_raw((size + 7) // 8)
    return words.astype("<u8", copy=False).tobytes()[:size]


class BlobHost:
    """The cache and the request log of one sandbox process, shared by its request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int], Blob] = OrderedDict()
        self._log: deque[dict[str, Any]] = deque(maxlen=LOGGED_REQUESTS)
        self.requests = 0
        self.ranged_requests = 0

    def blob(self, size: int, seed: int) -> Blob:
        # Generating under the lock keeps two threads from building the same 256 MiB twice.
        with self._lock:
            key = (size, seed)
            found = self._cache.get(key)
            if found is None:
                data = generate_blob(size, seed)
                found = Blob(data, hashlib.md5(data).hexdigest())
                self._cache[key] = found
                while sum(len(blob.data) for blob in self._cache.values()) > CACHE_BYTES and len(self._cache) > 1:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(key)
            return found

    def record(self, request: Request, size: int, seed: int, status: int) -> None:
        entry = {
            "method": request.method,
            "size": size,
            "seed": seed,
            "range": request.headers.get("range"),
            "if_range": request.headers.get("if-range"),
            "status": status,
        }
        with self._lock:
            self.requests += 1
            self.ranged_requests += entry["range"] is not None
            self._log.append(entry)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self.requests, "ranged_requests": self.ranged_requests, "log": list(self._log)}

    def reset(self) -> None:
        with self._lock:
            self.requests = self.ranged_requests = 0
            self._log.clear()


def _no_such_blob(size: int) -> Response:
    return PlainTextResponse(f"No such blob: sizes go up to {MAX_BLOB_BYTES} bytes, not {size}", status_code=404)


def create_router(library: PhotoLibrary) -> APIRouter:
    """The blob host's routes; `library` is unused, since blobs are not photos."""
    host = BlobHost()
    router = APIRouter(tags=["files"])

    @router.api_route("/blob/{size}.bin", methods=["GET", "HEAD"], summary="Deterministic pseudo-random bytes")
    def blob(
        request: Request,
        size: int,
        seed: int = Query(0, ge=0, description="Which bytes: the same seed gives the same blob."),
        no_ranges: bool = Query(False, description="Act as a server without range support."),
    ) -> Response:
        if not 0 <= size <= MAX_BLOB_BYTES:
            return _no_such_blob(size)
        found = host.blob(size, seed)
        response = file_response(
            request, found.data, MEDIA_TYPE, f"{size}.bin", etag=f'"{found.md5}"', accept_ranges=not no_ranges
        )
        host.record(request, size, seed, response.status_code)
        return response

    @router.get("/blob/{size}.bin.md5", summary="The blob's checksum line, as md5sum writes it")
    def blob_md5(size: int, seed: int = Query(0, ge=0)) -> Response:
        if not 0 <= size <= MAX_BLOB_BYTES:
            return _no_such_blob(size)
        return PlainTextResponse(f"{host.blob(size, seed).md5}  {size}.bin\n")

    @router.get("/_admin/stats", tags=["admin"], summary="Blob requests served, ranged ones, the latest requests")
    def stats() -> dict[str, Any]:
        return host.stats()

    @router.post("/_admin/reset", tags=["admin"], summary="Empty the request counters and log")
    def reset() -> dict[str, int]:
        host.reset()
        return {"requests": 0}

    return router
