"""Serve bytes the way a real static file host, S3 or GCS does, so that download code meets real HTTP here.

Dump hosts in the sandbox (blobs, ImageNet, COCO and Kaggle archives) answer through `file_response`, which
speaks the parts of RFC 9110 that resumable downloads depend on:
- validators: a strong `ETag` (the quoted MD5 of the bytes, as S3 gives for single-part objects) and
  `Last-Modified`, plus `Accept-Ranges: bytes` and `Content-Length`;
- `HEAD`, answered with the headers a `GET` would get and no body;
- one `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` → 206 with `Content-Range: bytes a-b/total`; a range
  that starts past the end → 416 with `Content-Range: bytes */total`; several ranges → the whole file (200),
  as S3 and many servers answer rather than with multipart bodies; a malformed header is ignored (200);
- `If-Range` naming another version (a different ETag or date) → the whole file (200), so a client that
  resumes a file that changed meanwhile starts over instead of splicing two versions.
"""

from __future__ import annotations

import hashlib
import re
import time
from email.utils import formatdate, parsedate_to_datetime
from typing import Literal

from fastapi import Request
from fastapi.responses import Response

# Files in the sandbox are made when the process starts, so that is when they were last modified; a fixed
# value keeps `Last-Modified` (and `If-Range` with a date) stable across requests.
PROCESS_STARTED = time.time()
_SINGLE_RANGE = re.compile(r"^(\d*)-(\d*)$")
UNSATISFIABLE: Literal["unsatisfiable"] = "unsatisfiable"


def strong_etag(data: bytes) -> str:
    """The ETag S3 gives a single-part object: its MD5 in hex, quoted."""
    return f'"{hashlib.md5(data).hexdigest()}"'


def file_response(
    request: Request,
    data: bytes,
    media_type: str,
    filename: str | None = None,
    *,
    etag: str | None = None,
    last_modified: float = PROCESS_STARTED,
    accept_ranges: bool = True,
) -> Response:
    """`data` as the answer to `request` (GET or HEAD), honouring `Range` and `If-Range`.

    `etag` spares hashing large bytes on every request when the caller already knows their digest; it must
    be quoted. `last_modified` is a Unix time. `accept_ranges=False` plays a server without range support:
    no `Accept-Ranges` header, and `Range` is ignored.
    """
    total = len(data)
    headers = {
        "ETag": etag or strong_etag(data),
        "Last-Modified": formatdate(last_modified, usegmt=True),
    }
    if accept_ranges:
        headers["Accept-Ranges"] = "bytes"
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'

    requested = request.headers.get("range") if accept_ranges else None
    if requested and _if_range_holds(request.headers.get("if-range"), headers["ETag"], last_modified):
        span = _parse_range(requested, total)
        if span == UNSATISFIABLE:
            headers["Content-Range"] = f"bytes */{total}"
            return Response(b"", status_code=416, headers=headers, media_type=media_type)
        if span is not None:
            first, last = span
            headers["Content-Range"] = f"bytes {first}-{last}/{total}"
            return _answer(request, memoryview(data)[first : last + 1], 206, headers, media_type)
    return _answer(request, memoryview(data), 200, headers, media_type)


def _answer(request: Request, body: memoryview, status: int, headers: dict[str, str], media_type: str) -> Response:
    # HEAD announces the length a GET would get; Starlette keeps a Content-Length it is given.
    headers = {**headers, "Content-Length": str(len(body))}
    content = b"" if request.method == "HEAD" else body
    return Response(content, status_code=status, headers=headers, media_type=media_type)


def _if_range_holds(condition: str | None, etag: str, last_modified: float) -> bool:
    """Whether a `Range` may be honoured: no `If-Range`, or one naming this very version (RFC 9110 13.1.5).

    Only a strong ETag can match; a weak one (`W/"..."`) never does. A date matches only the exact
    `Last-Modified` second.
    """
    if condition is None:
        return True
    condition = condition.strip()
    if condition.startswith(('"', "W/")):
        return condition == etag
    try:
        return int(parsedate_to_datetime(condition).timestamp()) == int(last_modified)
    except (TypeError, ValueError):
        return False


def _parse_range(header: str, total: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """`(first, last)` inclusive for one satisfiable byte range, "unsatisfiable", or None to send everything
    (another unit, several ranges, or a malformed header, which RFC 9110 says to ignore)."""
    unit, _, ranges = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in ranges:
        return None
    match = _SINGLE_RANGE.match(ranges.strip())
    if match is None or match.groups() == ("", ""):
        return None
    start, end = match.groups()
    if start == "":  # the last `end` bytes
        suffix = int(end)
        if suffix == 0 or total == 0:
            return UNSATISFIABLE
        return max(total - suffix, 0), total - 1
    first = int(start)
    if end and int(end) < first:
        return None
    if first >= total:
        return UNSATISFIABLE
    last = min(int(end), total - 1) if end else total - 1
    return first, last
