"""Download large files (dataset dumps of many GiB) so that no byte is fetched twice and no bad byte is kept.

    result = download(http, "https://host/ILSVRC2012_img_val.tar", work / "ILSVRC2012_img_val.tar",
                      checksum="29b22e2961454d5413ddabcf34fc5622")

- The bytes go to `<target>.part`, a path fixed by `target`, so a task killed mid-download and retried (or
  a connection cut mid-stream) continues with `Range: bytes=<size of .part>-` instead of from zero.
- The server's validator (strong ETag, else Last-Modified) is kept in `<target>.part.etag` and sent as
  `If-Range`: if the file changed on the server, it answers with the whole new file, and the download starts
  over instead of splicing two versions. A server that ignores `Range` (200 to a ranged request) is
  handled the same way.
- A complete file is checked against the expected checksum before it is renamed into place (atomically),
  so `target` exists only when it is whole and verified; a mismatch deletes the bytes.
- When `target` already exists and verifies, nothing is requested: reruns are free.

One download per target at a time: two processes appending to the same `.part` would interleave their bytes
(Airflow never runs two tries of one task at once).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import requests
import urllib3

from pipelines.http import CHUNK_BYTES, HttpClient, HttpError, IncompleteBody, redact_url

logger = logging.getLogger(__name__)

PROGRESS_STEP = 0.10  # log every tenth of a download of known size
PROGRESS_BYTES_UNKNOWN_SIZE = 256 * 1024 * 1024  # without a length, log every this many bytes
MAX_RESUME_BACKOFF_S = 30.0
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
# How a stream breaks when the connection is cut or the body ends early: each is resumed, not fatal.
_CUT_SHORT = (
    requests.exceptions.ChunkedEncodingError,
    requests.ConnectionError,
    requests.Timeout,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
)


class ChecksumMismatch(RuntimeError):
    """The downloaded bytes are not the ones the checksum stands for; they have been deleted."""

    def __init__(self, url: str, algorithm: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{redact_url(url)}: the {algorithm} of the download is {actual}, but {expected} was expected;"
            " the file was deleted"
        )
        self.url = redact_url(url)
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class DownloadResult:
    """`resumed_from`: bytes already on disk when this call first continued a download (0: from the start)."""

    path: Path
    size: int
    digest: str
    resumed_from: int
    reused: bool


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of a file, read in blocks, so dumps of any size hash in constant memory."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, algorithm).hexdigest()


def download(
    http: HttpClient,
    url: str,
    target: Path,
    *,
    checksum: str | None = None,
    algorithm: str = "md5",
    headers: Mapping[str, str] | None = None,
    max_resumes: int = 20,
) -> DownloadResult:
    """Fetch `url` into `target`, resuming a `.part` left by an earlier try, and verify `checksum` if given.

    A connection cut or a short body is resumed up to `max_resumes` times, after which IncompleteBody is
    raised and the `.part` is kept for the next try of the task. Statuses other than 200, 206 and 416 raise
    HttpError; a wrong checksum raises ChecksumMismatch.
    """
    expected = _normalized_checksum(checksum, algorithm)
    shown = redact_url(url)
    if target.exists():
        digest = file_digest(target, algorithm)
        if expected is None or digest == expected:
            logger.info("%s is already in %s (%s %s); nothing to download", shown, target, algorithm, digest)
            return DownloadResult(target, target.stat().st_size, digest, resumed_from=0, reused=True)
        logger.warning("%s does not match the expected %s %s; downloading it again", target, algorithm, expected)
        target.unlink()

    transfer = _Transfer(http, url, target, headers or {})
    resumes = 0
    while not transfer.attempt():
        resumes += 1
        if resumes > max_resumes:
            raise IncompleteBody(
                f"{shown}: incomplete after {max_resumes} resumes ({transfer.interruption}); "
                f"{transfer.part_size()} bytes are kept in {transfer.part} for the next try"
            )
        backoff = min(http.policy.backoff_s * 2 ** (resumes - 1), MAX_RESUME_BACKOFF_S)
        logger.warning(
            "%s: %s; continuing from byte %d in %.1fs (resume %d of %d)",
            shown,
            transfer.interruption,
            transfer.part_size(),
            backoff,
            resumes,
            max_resumes,
        )
        time.sleep(backoff)

    digest = file_digest(transfer.part, algorithm)
    if expected is not None and digest != expected:
        transfer.discard()
        raise ChecksumMismatch(url, algorithm, expected, digest)
    size = transfer.part_size()
    # Sidecar first: if the process dies between the two, a whole .part without it is still verified next time.
    transfer.sidecar.unlink(missing_ok=True)
    os.replace(transfer.part, target)
    logger.info("%s: %d bytes in %s, %s %s", shown, size, target, algorithm, digest)
    return DownloadResult(target, size, digest, resumed_from=transfer.resumed_from, reused=False)


class _Transfer:
    """The state of one download between attempts: where its bytes go and what the server said."""

    def __init__(self, http: HttpClient, url: str, target: Path, headers: Mapping[str, str]) -> None:
        self.http, self.url, self.shown, self.headers = http, url, redact_url(url), headers
        self.part = target.with_name(target.name + ".part")
        self.sidecar = target.with_name(target.name + ".part.etag")
        self.resumed_from = 0
        self.interruption = ""  # why the last attempt did not complete, for the log
        target.parent.mkdir(parents=True, exist_ok=True)

    def part_size(self) -> int:
        return self.part.stat().st_size if self.part.exists() else 0

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)

    def attempt(self) -> bool:
        """One request: True when the `.part` is complete, False when another attempt should continue it
        (the stream broke, or the bytes on disk turned out not to fit the server's file and were dropped)."""
        offset = self.part_size()
        validator = self.sidecar.read_text().strip() if offset and self.sidecar.exists() else ""
        # Ranges count encoded bytes, and the checksum is over the file as published: no compression.
        request_headers = {**self.headers, "Accept-Encoding": "identity"}
        if offset:
            request_headers["Range"] = f"bytes={offset}-"
            if validator:
                request_headers["If-Range"] = validator
        try:
            with self.http.stream(self.url, headers=request_headers, ok_statuses=(200, 206, 416)) as response:
                return self._receive(response, offset, validator)
        except _CUT_SHORT as error:
            self.interruption = f"cut short ({type(error).__name__})"
            return False

    def _receive(self, response: requests.Response, offset: int, validator: str) -> bool:
        if response.status_code == 416:
            return self._unsatisfiable(response, offset)
        if response.status_code == 206:
            if not self._continues(response, offset, validator):
                self.discard()
                self.interruption = "the answer did not continue the bytes on disk, which were dropped"
                return False
            announced = response.headers["Content-Range"].rpartition("/")[2]  # "*" when the server cannot tell
            total = int(announced) if announced.isdigit() else None
            if not self.resumed_from:
                self.resumed_from = offset
            logger.info("%s: resuming at %d of %s bytes", self.shown, offset, total or "unknown")
            mode = "ab"
        else:
            if offset:
                why = "the file changed on the server" if validator else "the server ignores Range"
                logger.warning("%s: the whole file came for bytes=%d- (%s); starting over", self.shown, offset, why)
            total = None if "Content-Encoding" in response.headers else _int_or_none(response.headers, "Content-Length")
            offset = 0
            self.resumed_from = 0
            mode = "wb"
        with self.part.open(mode) as sink:
            if mode == "wb":
                self._remember_validator(response)
            self._copy(response, sink, offset, total)
        size = self.part_size()
        if total is not None and size < total:
            self.interruption = f"cut short ({size} of {total} bytes)"
            return False
        if total is not None and size > total:
            self.discard()
            raise HttpError(f"{self.shown}: {size} bytes arrived where {total} were announced; discarded")
        return True

    def _unsatisfiable(self, response: requests.Response, offset: int) -> bool:
        """416 to `bytes=<offset>-`: complete if the file is exactly that long, else it changed: start over."""
        match = re.fullmatch(r"bytes \*/(\d+)", response.headers.get("Content-Range", ""))
        if offset and match and int(match.group(1)) == offset:
            self.resumed_from = self.resumed_from or offset
            return True
        self.discard()
        if not offset:
            raise HttpError(f"{self.shown}: HTTP 416 to a request without a range", status=416)
        self.interruption = f"HTTP 416: the file on the server is shorter than the {offset} bytes on disk, dropped"
        return False

    def _continues(self, response: requests.Response, offset: int, validator: str) -> bool:
        """Whether a 206 starts at `offset` of the version we have, even from a server that ignored If-Range."""
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != offset:
            logger.warning("%s: a range other than bytes=%d- arrived; starting over", self.shown, offset)
            return False
        served = {response.headers.get("ETag"), response.headers.get("Last-Modified")} - {None}
        if validator and served and validator not in served:
            logger.warning("%s: the file changed on the server (was %s); starting over", self.shown, validator)
            return False
        return True

    def _remember_validator(self, response: requests.Response) -> None:
        """Keep what `If-Range` may name: a strong ETag, else Last-Modified; weak ETags cannot be used."""
        etag = response.headers.get("ETag", "")
        validator = etag if etag.startswith('"') else response.headers.get("Last-Modified", "")
        if validator:
            self.sidecar.write_text(validator + "\n")
        else:
            self.sidecar.unlink(missing_ok=True)

    def _copy(self, response: requests.Response, sink: BinaryIO, offset: int, total: int | None) -> None:
        started, written = time.monotonic(), 0
        step = int(total * PROGRESS_STEP) if total else PROGRESS_BYTES_UNKNOWN_SIZE
        next_report = offset + max(step, 1)
        for chunk in response.iter_content(CHUNK_BYTES):
            sink.write(chunk)
            written += len(chunk)
            position = offset + written
            if position >= next_report:
                rate = written / max(time.monotonic() - started, 1e-6) / 2**20
                share = f" ({position / total:.0%})" if total else ""
                logger.info("%s: %.1f MiB%s at %.1f MiB/s", self.shown, position / 2**20, share, rate)
                next_report = position + max(step, 1)


def _int_or_none(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name, "")
    return int(value) if value.isdigit() else None


def _normalized_checksum(checksum: str | None, algorithm: str) -> str | None:
    """`checksum` in lower case, after checking it can be a digest of `algorithm` (a sha256 passed as an md5
    is a caller's mistake, better said now than as a mismatch after a long download)."""
    try:
        length = hashlib.new(algorithm).digest_size * 2
    except ValueError:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}") from None
    if checksum is None:
        return None
    normalized = checksum.strip().lower()
    if not re.fullmatch(rf"[0-9a-f]{{{length}}}", normalized):
        raise ValueError(f"{checksum!r} is not a {algorithm} digest ({length} hex digits)")
    return normalized
