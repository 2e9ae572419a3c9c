"""One contract for the lake, run against both backends: a folder and a real S3-protocol server."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.settings import Settings
from pipelines.storage import FileStore, ObjectNotFound, ObjectStore, S3Store, check_key, open_store


@pytest.fixture
def store(file_or_s3_store: ObjectStore) -> ObjectStore:
    """Every test of the contract runs on both backends."""
    return file_or_s3_store


def test_put_get_exists_size(store: ObjectStore) -> None:
    assert not store.exists("raw/ab/one.jpg")
    store.put("raw/ab/one.jpg", b"\xff\xd8 photo bytes")
    assert store.exists("raw/ab/one.jpg")
    assert store.get("raw/ab/one.jpg") == b"\xff\xd8 photo bytes"
    assert store.size("raw/ab/one.jpg") == len(b"\xff\xd8 photo bytes")


def test_missing_objects_raise_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("raw/none.jpg")
    with pytest.raises(ObjectNotFound):
        store.size("raw/none.jpg")


def test_list_by_prefix_is_sorted_and_complete(store: ObjectStore) -> None:
    keys = ["raw/b2/y.png", "raw/a1/x.jpg", "raw/a1/w.jpg", "reports/quality/run/index.html", "rawness.txt"]
    for key in keys:
        store.put(key, key.encode())
    assert list(store.list("raw/")) == ["raw/a1/w.jpg", "raw/a1/x.jpg", "raw/b2/y.png"]
    assert list(store.list("raw/a1/x")) == ["raw/a1/x.jpg"]
    assert list(store.list("raw")) == ["raw/a1/w.jpg", "raw/a1/x.jpg", "raw/b2/y.png", "rawness.txt"]
    assert list(store.list()) == sorted(keys)
    assert list(store.list("nothing/")) == []


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("quarantine/bad.jpg", b"x")
    store.delete("quarantine/bad.jpg")
    store.delete("quarantine/bad.jpg")
    assert not store.exists("quarantine/bad.jpg")


def test_tags_belong_to_the_object_as_written_and_are_no_objects_themselves(store: ObjectStore) -> None:
    store.put("checkpoints/run/step-00000010.pt", b"state")
    assert store.tags("checkpoints/run/step-00000010.pt") == {}
    store.set_tags("checkpoints/run/step-00000010.pt", {"colorflow-retention": "intermediate"})
    assert store.tags("checkpoints/run/step-00000010.pt") == {"colorflow-retention": "intermediate"}
    assert list(store.list()) == ["checkpoints/run/step-00000010.pt"]

    store.put("checkpoints/run/step-00000010.pt", b"state written again")  # a new object, untagged as on S3
    assert store.tags("checkpoints/run/step-00000010.pt") == {}
    store.set_tags("checkpoints/run/step-00000010.pt", {"colorflow-retention": "intermediate"})
    store.delete("checkpoints/run/step-00000010.pt")
    store.put("checkpoints/run/step-00000010.pt", b"state")
    assert store.tags("checkpoints/run/step-00000010.pt") == {}
    with pytest.raises(ObjectNotFound):
        store.tags("checkpoints/run/none.pt")
    with pytest.raises(ObjectNotFound):
        store.set_tags("checkpoints/run/none.pt", {"colorflow-retention": "intermediate"})


def test_streaming_write_and_read_of_a_large_object(store: ObjectStore) -> None:
    """12 MiB in 1 MiB writes: on S3 this crosses the 5 MiB part size, so it is a multipart upload."""
    digest = hashlib.sha256()
    with store.open_write("datasets/v1/train/000000.tar") as sink:
        for _ in range(12):
            chunk = os.urandom(1024 * 1024)
            digest.update(chunk)
            sink.write(chunk)
    assert store.size("datasets/v1/train/000000.tar") == 12 * 1024 * 1024
    read_back = hashlib.sha256()
    with store.open_read("datasets/v1/train/000000.tar") as source:
        while chunk := source.read(256 * 1024):
            read_back.update(chunk)
    assert read_back.hexdigest() == digest.hexdigest()


def test_object_is_invisible_until_the_write_completes(store: ObjectStore) -> None:
    with store.open_write("datasets/v1/manifest.json") as sink:
        sink.write(b'{"half": ')
        assert not store.exists("datasets/v1/manifest.json")
        assert list(store.list("datasets/")) == []
        sink.write(b"false}")
    assert store.get("datasets/v1/manifest.json") == b'{"half": false}'


@pytest.mark.parametrize("size_mib", [1, 11])
def test_failed_write_publishes_nothing_and_keeps_the_old_object(store: ObjectStore, size_mib: int) -> None:
    store.put("checkpoints/run/last.pt", b"old checkpoint")
    with pytest.raises(RuntimeError), store.open_write("checkpoints/run/last.pt") as sink:
        sink.write(os.urandom(size_mib * 1024 * 1024))
        raise RuntimeError("killed mid-upload")
    assert store.get("checkpoints/run/last.pt") == b"old checkpoint"
    assert list(store.list()) == ["checkpoints/run/last.pt"]
    if isinstance(store, S3Store):
        uploads = store._client.list_multipart_uploads(Bucket=store.bucket)
        assert uploads.get("Uploads", []) == [], "an aborted write must not leave a multipart upload behind"


def test_entries_give_each_object_its_size_and_time_in_key_order(store: ObjectStore) -> None:
    """`raw/ab.txt` sorts before `raw/ab/x.jpg` ('.' < '/'), and `raw/ab0/y` after: a folder lake lists its
    folders where their keys fall, not before or after its files."""
    started = datetime.now(UTC) - timedelta(seconds=5)
    for key, size in (("raw/ab/x.jpg", 5), ("raw/ab0/y", 2), ("raw/ab.txt", 1), ("rawness", 3)):
        store.put(key, b"x" * size)
    entries = list(store.entries("raw/"))
    assert [(entry.key, entry.size) for entry in entries] == [("raw/ab.txt", 1), ("raw/ab/x.jpg", 5), ("raw/ab0/y", 2)]
    assert all(started <= entry.modified <= datetime.now(UTC) + timedelta(seconds=5) for entry in entries)
    assert list(store.list("raw/")) == [entry.key for entry in entries]


def test_an_unfinished_write_is_listed_until_discarded(store: ObjectStore) -> None:
    """A writer that dies mid-write leaves a staged file (folder) or a multipart upload (S3, past 5 MiB)."""
    assert list(store.unfinished_writes()) == []
    writing = store.open_write("datasets/v1/train/train-00000.tar")
    writing.__enter__().write(os.urandom(6 * 1024 * 1024))
    [unfinished] = store.unfinished_writes()
    assert unfinished.started_at <= datetime.now(UTC)  # moto dates every upload 2010-11-10; S3 and MinIO do not
    store.discard(unfinished)
    store.discard(unfinished)
    assert list(store.unfinished_writes()) == []
    with pytest.raises(Exception):  # noqa: B017 - a discarded write cannot publish, whatever the backend says
        writing.__exit__(None, None, None)
    assert not store.exists("datasets/v1/train/train-00000.tar")


def test_put_if_absent_and_copy(store: ObjectStore) -> None:
    assert store.put_if_absent("raw/aa/aaaa.jpg", b"first") is True
    assert store.put_if_absent("raw/aa/aaaa.jpg", b"second") is False
    store.copy("raw/aa/aaaa.jpg", "quarantine/aaaa.jpg")
    assert store.get("quarantine/aaaa.jpg") == b"first"
    assert store.get("raw/aa/aaaa.jpg") == b"first"


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "../outside", "raw/../../x", "raw//x", "raw/./x", "a\\b", ".staging/x"]
)
def test_unsafe_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        store.put(key, b"x")


def test_uri_names_the_backend(store: ObjectStore) -> None:
    assert store.uri("raw/ab/x.jpg").endswith("/raw/ab/x.jpg")
    assert store.uri("raw/ab/x.jpg").startswith("s3://" if isinstance(store, S3Store) else "file://")


def test_check_key_accepts_content_addressed_keys() -> None:
    assert check_key("raw/ab/abcdef.jpg") == "raw/ab/abcdef.jpg"


def test_open_store_picks_the_backend_from_the_url(tmp_path: Path, s3_endpoint: str) -> None:
    settings = Settings(home=tmp_path, s3_endpoint_url=s3_endpoint)
    assert isinstance(open_store(settings=settings), FileStore)
    assert (tmp_path / "lake").is_dir()
    s3 = open_store("s3://colorflow-bucket/lake/", settings=settings)
    assert isinstance(s3, S3Store) and s3.bucket == "colorflow-bucket" and s3.prefix == "lake"
    with pytest.raises(ValueError, match="unsupported lake URL"):
        open_store("ftp://host/lake", settings=settings)
    with pytest.raises(ValueError, match="names no bucket"):
        open_store("s3:///lake", settings=settings)


def test_a_writer_killed_mid_write_leaves_nothing_once_the_lake_is_written_again_on_its_host(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from pipelines.storage import FileStore\n"
            "with FileStore(Path(sys.argv[1])).open_write('raw/aa/big.jpg') as sink:\n"
            "    sink.write(b'x' * 1024); sink.flush(); print('writing', flush=True); time.sleep(60)",
            str(lake),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline() == "writing\n"
    with FileStore(lake).open_write("raw/bb/other.jpg") as sink:  # a live writer's file stays
        sink.write(b"other")
    assert len(list((lake / ".staging").iterdir())) == 1
    elsewhere = lake / ".staging" / f"1-{uuid.uuid4().hex}-another-host.part"  # pid 1 there is not ours
    elsewhere.write_bytes(b"a write in progress on another host")
    writer.kill()
    writer.wait()

    FileStore(lake).put("raw/cc/next.jpg", b"next")

    assert list((lake / ".staging").iterdir()) == [elsewhere]
    assert list(FileStore(lake).list()) == ["raw/bb/other.jpg", "raw/cc/next.jpg"]
