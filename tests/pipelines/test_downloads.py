"""Resumable, verified downloads against the sandbox's blob host over real HTTP: cut connections, partial files
from an earlier try, files that changed on the server, servers without range support, wrong checksums and
reruns. Each test uses its own blob seed, so the host's request log tells which requests it made."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from pipelines.downloads import ChecksumMismatch, download
from pipelines.http import HttpClient, HttpError, HttpPolicy, IncompleteBody, host_key
from sandbox.files import generate_blob

SIZE = 3 * 1024 * 1024 + 12345  # a few MiB, not a multiple of any chunk size


@pytest.fixture
def client(sandbox_url: str) -> HttpClient:
    return HttpClient(HttpPolicy(allowed_hosts=frozenset({host_key(sandbox_url)}), backoff_s=0.05))


@pytest.fixture
def files(sandbox_service: Callable[[str], str]) -> str:
    return sandbox_service("files")


def blob_url(files: str, seed: int, *, size: int = SIZE, **extra: str) -> str:
    query = "&".join(f"{name}={value}" for name, value in {"seed": seed, **extra}.items())
    return f"{files}/blob/{size}.bin?{query}"


def blob_md5(seed: int) -> str:
    """The md5 of the blob the host serves for `seed`, known without asking it (as a pinned md5 is)."""
    return hashlib.md5(generate_blob(SIZE, seed)).hexdigest()


def blob_bytes(files: str, seed: int) -> bytes:
    return requests.get(blob_url(files, seed), timeout=10).content


def served(files: str, seed: int) -> list[dict[str, Any]]:
    """The blob requests the host logged for `seed`, oldest first."""
    log = requests.get(f"{files}/_admin/stats", timeout=10).json()["log"]
    return [entry for entry in log if entry["seed"] == seed and entry["method"] == "GET"]


def leftovers(target: Path) -> list[str]:
    return sorted(path.name for path in target.parent.iterdir())


def test_a_whole_download_is_verified_and_renamed_into_place(
    client: HttpClient, files: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "dump" / "blob.bin"
    md5 = blob_md5(seed=101)
    with caplog.at_level(logging.INFO, logger="pipelines.downloads"):
        result = download(client, blob_url(files, 101), target, checksum=md5)
    assert (result.path, result.size, result.digest, result.resumed_from, result.reused) == (
        target,
        SIZE,
        md5,
        0,
        False,
    )
    assert hashlib.md5(target.read_bytes()).hexdigest() == md5
    assert leftovers(target) == ["blob.bin"], "no .part or .etag sidecar is left behind"
    assert len([line for line in caplog.messages if "MiB/s" in line]) >= 9, "progress every ~10%"


def test_a_cut_connection_resumes_with_ranges_and_verifies(
    client: HttpClient, files: str, tmp_path: Path, faults
) -> None:
    md5 = blob_md5(seed=102)
    faults(path_prefix="/files/blob/", kind="truncate", times=3)
    result = download(client, blob_url(files, 102), tmp_path / "blob.bin", checksum=md5)
    assert result.digest == md5 and result.size == SIZE
    assert 0 < result.resumed_from < SIZE
    requests_made = served(files, 102)
    assert [entry["status"] for entry in requests_made] == [200, 206, 206, 206]
    assert requests_made[0]["range"] is None
    etag = f'"{md5}"'
    for entry in requests_made[1:]:
        assert entry["range"].startswith("bytes=") and entry["if_range"] == etag
    assert requests_made[1]["range"] == f"bytes={result.resumed_from}-"
    offsets = [int(entry["range"][len("bytes=") : -1]) for entry in requests_made[1:]]
    assert offsets == sorted(set(offsets)), "every resume starts further on"


def test_a_part_left_by_an_earlier_try_is_continued(client: HttpClient, files: str, tmp_path: Path) -> None:
    whole = blob_bytes(files, seed=103)
    target = tmp_path / "blob.bin"
    kept = int(SIZE * 0.4)
    target.with_name("blob.bin.part").write_bytes(whole[:kept])
    result = download(client, blob_url(files, 103), target, checksum=hashlib.md5(whole).hexdigest())
    assert (result.resumed_from, result.size, result.reused) == (kept, SIZE, False)
    assert target.read_bytes() == whole
    last = served(files, 103)[-1]
    assert (last["range"], last["if_range"], last["status"]) == (f"bytes={kept}-", None, 206)
    assert leftovers(target) == ["blob.bin"]


def test_a_whole_part_from_a_try_killed_before_the_rename_is_verified_and_kept(
    client: HttpClient, files: str, tmp_path: Path
) -> None:
    whole = blob_bytes(files, seed=112)
    md5 = hashlib.md5(whole).hexdigest()
    target = tmp_path / "blob.bin"
    target.with_name("blob.bin.part").write_bytes(whole)
    target.with_name("blob.bin.part.etag").write_text(f'"{md5}"\n')
    result = download(client, blob_url(files, 112), target, checksum=md5)
    assert (result.resumed_from, result.digest, result.reused) == (SIZE, md5, False)
    last = served(files, 112)[-1]
    assert (last["range"], last["status"]) == (f"bytes={SIZE}-", 416)
    assert leftovers(target) == ["blob.bin"]


def test_a_file_changed_on_the_server_starts_over_instead_of_splicing(
    client: HttpClient, files: str, tmp_path: Path
) -> None:
    """The .part holds 40% of an older version, whose ETag the sidecar remembers: If-Range makes the server
    send the whole new file."""
    target = tmp_path / "blob.bin"
    target.with_name("blob.bin.part").write_bytes(b"old version " * (SIZE // 30))
    target.with_name("blob.bin.part.etag").write_text('"0123456789abcdef0123456789abcdef"\n')
    md5 = blob_md5(seed=104)
    result = download(client, blob_url(files, 104), target, checksum=md5)
    assert (result.digest, result.resumed_from) == (md5, 0)
    last = served(files, 104)[-1]
    assert (last["if_range"], last["status"]) == ('"0123456789abcdef0123456789abcdef"', 200)
    assert leftovers(target) == ["blob.bin"]


def test_a_server_ignoring_range_restarts_cleanly(client: HttpClient, files: str, tmp_path: Path, faults) -> None:
    whole = blob_bytes(files, seed=105)
    md5 = hashlib.md5(whole).hexdigest()
    target = tmp_path / "blob.bin"
    target.with_name("blob.bin.part").write_bytes(whole[: int(SIZE * 0.4)])
    result = download(client, blob_url(files, 105, no_ranges="1"), target, checksum=md5)
    assert (result.digest, result.resumed_from, result.size) == (md5, 0, SIZE)
    assert served(files, 105)[-1]["status"] == 200

    # Cut twice as well: every try starts from zero again, and the third one completes.
    again = tmp_path / "again.bin"
    faults(path_prefix="/files/blob/", kind="truncate", times=2)
    result = download(client, blob_url(files, 105, no_ranges="1"), again, checksum=md5)
    assert (result.digest, result.resumed_from) == (md5, 0)
    assert [entry["status"] for entry in served(files, 105)[-3:]] == [200, 200, 200]


def test_a_wrong_checksum_leaves_nothing(client: HttpClient, files: str, tmp_path: Path) -> None:
    target = tmp_path / "blob.bin"
    wrong = "0" * 32
    with pytest.raises(ChecksumMismatch, match=f"{wrong} was expected") as raised:
        download(client, blob_url(files, 106), target, checksum=wrong)
    assert raised.value.expected == wrong and raised.value.actual == blob_md5(seed=106)
    assert leftovers(target) == []


def test_a_rerun_with_the_target_present_makes_no_request(client: HttpClient, files: str, tmp_path: Path) -> None:
    target = tmp_path / "blob.bin"
    md5 = blob_md5(seed=107)
    first = download(client, blob_url(files, 107), target, checksum=md5)
    before = requests.get(f"{files}/_admin/stats", timeout=10).json()["requests"]
    for checksum in (md5, None):
        rerun = download(client, blob_url(files, 107), target, checksum=checksum)
        assert (rerun.reused, rerun.digest, rerun.size, rerun.path) == (True, md5, SIZE, target)
    assert requests.get(f"{files}/_admin/stats", timeout=10).json()["requests"] == before
    assert not first.reused

    # A target that does not match the checksum is fetched again.
    target.write_bytes(b"damaged")
    fixed = download(client, blob_url(files, 107), target, checksum=md5)
    assert (fixed.reused, fixed.digest) == (False, md5)


def test_a_429_on_the_first_request_is_waited_out(client: HttpClient, files: str, tmp_path: Path, faults) -> None:
    md5 = blob_md5(seed=108)
    faults(path_prefix=f"/files/blob/{SIZE}.bin", kind="429", times=1, retry_after=1)
    started = time.monotonic()
    result = download(client, blob_url(files, 108), tmp_path / "blob.bin", checksum=md5)
    assert time.monotonic() - started >= 0.9, "Retry-After: 1 is honoured"
    assert result.digest == md5


def test_giving_up_keeps_the_part_for_the_next_try(
    client: HttpClient, files: str, sandbox_url: str, tmp_path: Path, faults
) -> None:
    md5 = blob_md5(seed=109)
    target = tmp_path / "blob.bin"
    faults(path_prefix="/files/blob/", kind="truncate", times=50)
    with pytest.raises(IncompleteBody, match="incomplete after 2 resumes"):
        download(client, blob_url(files, 109), target, checksum=md5, max_resumes=2)
    kept = target.with_name("blob.bin.part").stat().st_size
    assert 0 < kept < SIZE and not target.exists()

    requests.delete(f"{sandbox_url}/_faults", timeout=5).raise_for_status()
    result = download(client, blob_url(files, 109), target, checksum=md5)
    assert (result.resumed_from, result.digest) == (kept, md5)


def test_http_errors_are_not_resumed(client: HttpClient, files: str, tmp_path: Path) -> None:
    target = tmp_path / "blob.bin"
    missing = f"{files}/blob/999999999999.bin?seed=1&token=s3cret"
    with pytest.raises(HttpError, match="HTTP 404: No such blob") as raised:
        download(client, missing, target)
    assert raised.value.status == 404 and "s3cret" not in str(raised.value)
    assert leftovers(target) == []


def test_other_algorithms_and_malformed_checksums(client: HttpClient, files: str, tmp_path: Path) -> None:
    sha256 = hashlib.sha256(blob_bytes(files, seed=110)).hexdigest()
    result = download(client, blob_url(files, 110), tmp_path / "blob.bin", checksum=sha256.upper(), algorithm="sha256")
    assert result.digest == sha256
    with pytest.raises(ValueError, match="not a md5 digest"):
        download(client, blob_url(files, 110), tmp_path / "other.bin", checksum=sha256)
    with pytest.raises(ValueError, match="unknown checksum algorithm"):
        download(client, blob_url(files, 110), tmp_path / "other.bin", algorithm="crc99")


def test_stream_leaves_the_body_to_the_caller(client: HttpClient, files: str) -> None:
    with client.stream(blob_url(files, 111), headers={"Range": "bytes=0-9"}) as response:
        assert response.status_code == 206
        assert b"".join(response.iter_content(4)) == blob_bytes(files, seed=111)[:10]
    with (
        pytest.raises(HttpError, match="HTTP 206") as raised,
        client.stream(blob_url(files, 111), headers={"Range": "bytes=0-9"}, ok_statuses=(200,)),
    ):
        pass
    assert raised.value.status == 206
