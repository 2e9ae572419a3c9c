"""The sandbox serves files like a real static host or S3 (validators, HEAD, byte ranges, If-Range), checked over
real HTTP through the blob host at `/files/blob/`."""

from __future__ import annotations

import hashlib
from email.utils import formatdate, parsedate_to_datetime

import pytest
import requests

SIZE = 1000


def blob(sandbox_url: str, seed: int, *, size: int = SIZE, **headers: str) -> requests.Response:
    return requests.get(f"{sandbox_url}/files/blob/{size}.bin", params={"seed": seed}, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def whole(sandbox_url: str) -> bytes:
    return blob(sandbox_url, seed=11).content


def test_blobs_are_deterministic_and_carry_validators(sandbox_url: str, whole: bytes) -> None:
    response = blob(sandbox_url, seed=11)
    md5 = hashlib.md5(whole).hexdigest()
    assert response.status_code == 200 and response.content == whole and len(whole) == SIZE
    assert blob(sandbox_url, seed=12).content != whole
    assert response.headers["Content-Length"] == str(SIZE)
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] == f'"{md5}"'
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert parsedate_to_datetime(response.headers["Last-Modified"]).tzinfo is not None
    checksum = requests.get(f"{sandbox_url}/files/blob/{SIZE}.bin.md5", params={"seed": 11}, timeout=10)
    assert checksum.text == f"{md5}  {SIZE}.bin\n"


def test_head_announces_what_get_would_send(sandbox_url: str, whole: bytes) -> None:
    url = f"{sandbox_url}/files/blob/{SIZE}.bin?seed=11"
    head = requests.head(url, timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(SIZE)
    assert head.headers["ETag"] == f'"{hashlib.md5(whole).hexdigest()}"'
    ranged = requests.head(url, headers={"Range": "bytes=10-19"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == b""
    assert (ranged.headers["Content-Length"], ranged.headers["Content-Range"]) == ("10", f"bytes 10-19/{SIZE}")


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, SIZE - 1),
        ("bytes=-10", SIZE - 10, SIZE - 1),
        ("bytes=900-5000", 900, SIZE - 1),  # an end past the file is cut to the file
        ("bytes=-5000", 0, SIZE - 1),  # a suffix longer than the file is the whole file
        ("bytes=999-999", SIZE - 1, SIZE - 1),
    ],
)
def test_each_range_form_gets_206_with_its_bytes(
    sandbox_url: str, whole: bytes, header: str, first: int, last: int
) -> None:
    response = blob(sandbox_url, seed=11, Range=header)
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert response.headers["Content-Length"] == str(last - first + 1)
    assert response.content == whole[first : last + 1]


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"])
def test_a_range_past_the_end_is_416_with_the_length(sandbox_url: str, header: str) -> None:
    response = blob(sandbox_url, seed=11, Range=header)
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize("header", ["bytes=0-9,20-29", "items=0-9", "bytes=9-3", "bytes=abc", "bytes=-"])
def test_several_or_malformed_ranges_get_the_whole_file(sandbox_url: str, whole: bytes, header: str) -> None:
    response = blob(sandbox_url, seed=11, Range=header)
    assert (response.status_code, response.content) == (200, whole)
    assert "Content-Range" not in response.headers


def test_if_range_honours_the_range_only_for_the_same_version(sandbox_url: str, whole: bytes) -> None:
    etag = f'"{hashlib.md5(whole).hexdigest()}"'
    last_modified = blob(sandbox_url, seed=11).headers["Last-Modified"]
    same = blob(sandbox_url, seed=11, Range="bytes=500-", **{"If-Range": etag})
    assert (same.status_code, same.content) == (206, whole[500:])
    by_date = blob(sandbox_url, seed=11, Range="bytes=500-", **{"If-Range": last_modified})
    assert by_date.status_code == 206
    for other in ('"0123456789abcdef0123456789abcdef"', f"W/{etag}", formatdate(0, usegmt=True), "garbage"):
        changed = blob(sandbox_url, seed=11, Range="bytes=500-", **{"If-Range": other})
        assert (changed.status_code, changed.content) == (200, whole), other


def test_a_server_without_range_support_sends_everything(sandbox_url: str, whole: bytes) -> None:
    response = requests.get(
        f"{sandbox_url}/files/blob/{SIZE}.bin",
        params={"seed": 11, "no_ranges": 1},
        headers={"Range": "bytes=5-"},
        timeout=10,
    )
    assert (response.status_code, response.content) == (200, whole)
    assert "Accept-Ranges" not in response.headers


def test_empty_and_oversized_blobs(sandbox_url: str) -> None:
    empty = blob(sandbox_url, seed=1, size=0)
    assert (empty.status_code, empty.content, empty.headers["Content-Length"]) == (200, b"", "0")
    assert blob(sandbox_url, seed=1, size=0, Range="bytes=0-").status_code == 416
    too_big = blob(sandbox_url, seed=1, size=256 * 1024 * 1024 + 1)
    assert too_big.status_code == 404 and "No such blob" in too_big.text
