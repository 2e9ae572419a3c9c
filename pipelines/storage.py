"""The lake: one object-store interface over a local folder (`file://`) or S3 (`s3://`).

Stages share data only through the lake, so every write here is atomic: a reader sees either no object
or the whole object, never a half-written one. On a folder that is a staged file moved into place with
`os.replace`; on S3 it is a single PUT or a multipart upload, which S3 only makes visible once completed.

Keys are relative POSIX paths (`raw/ab/abcdef....jpg`). Keys that could escape the store's root
(absolute, `..`, empty segments, backslashes) are refused, because keys are sometimes built from data
that came from outside.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

import psutil

from pipelines.settings import Settings, get_settings

logger = logging.getLogger(__name__)

COPY_CHUNK_BYTES = 1024 * 1024


WRITEBACK_BYTES = 4 << 20
STAGED_NAME = re.compile(r"(?P<pid>\d+)-[0-9a-f]{32}-(?P<host>.+)\.part")


class ObjectNotFound(KeyError):
    """The key names no object in the store."""


@dataclass(frozen=True)
class ObjectEntry:
    """An object as a listing shows it."""

    key: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class UnfinishedWrite:
    """A write that began and never published: a staged file of a folder lake, an S3 multipart upload."""

    name: str  # the staged file's name, or the key the upload was for
    started_at: datetime
    upload_id: str | None = None


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative object key, else raise ValueError."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid object key {key!r}")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts) or parts[0].startswith("."):
        raise ValueError(f"invalid object key {key!r}")
    return key


class ObjectStore(ABC):
    """Atomic, content-agnostic object storage addressed by relative keys."""

    url: str

    @abstractmethod
    def open_read(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Stream an object's bytes; raises ObjectNotFound."""

    @abstractmethod
    def open_write(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Stream bytes into an object that becomes visible, whole, only when the block exits cleanly.

        If the block raises, nothing is published and any previous object under `key` is untouched.
        """

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int:
        """Size of an object in bytes; raises ObjectNotFound."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys that start with `prefix`, in lexicographic order, streamed page by page."""

    @abstractmethod
    def entries(self, prefix: str = "") -> Iterator[ObjectEntry]:
        """`list` with each object's size and time of writing."""

    @abstractmethod
    def unfinished_writes(self) -> Iterator[UnfinishedWrite]:
        """Writes that started and never published (in flight, or left by a writer that died)."""

    @abstractmethod
    def discard(self, write: UnfinishedWrite) -> None:
        """Throw an unfinished write away; one already gone is not an error."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; deleting a missing key is not an error, so cleanups can be rerun."""

    @abstractmethod
    def set_tags(self, key: str, tags: Mapping[str, str]) -> None:
        """Replace an object's tags (S3 object tags: what lifecycle rules select by); raises ObjectNotFound.

        Tags belong to the object as written: writing the key again leaves the new object untagged."""

    @abstractmethod
    def tags(self, key: str) -> dict[str, str]:
        """An object's tags, {} when it has none; raises ObjectNotFound."""

    def uri(self, key: str) -> str:
        """Full address of an object, for logs and for people."""
        return f"{self.url.rstrip('/')}/{check_key(key)}"

    def put(self, key: str, data: bytes) -> None:
        with self.open_write(key) as sink:
            sink.write(data)

    def get(self, key: str) -> bytes:
        with self.open_read(key) as source:
            return source.read()

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Store `data` unless the key exists; True when it was written.

        Meant for content-addressed keys, where an existing object already holds the same bytes.
        """
        if self.exists(key):
            return False
        self.put(key, data)
        return True

    def copy(self, source_key: str, target_key: str) -> None:
        with self.open_read(source_key) as source, self.open_write(target_key) as sink:
            shutil.copyfileobj(source, sink, COPY_CHUNK_BYTES)


class _EarlyWriteback(io.RawIOBase):
    """A staged file that asks the kernel to start writing its pages to disk every few MiB, so the
    closing fsync of a large object (a 100 MB shard) waits for the last few MiB only, not all of it."""

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._written = 0
        self._started = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        count = self._sink.write(data)
        self._written += count
        if self._written - self._started >= WRITEBACK_BYTES:
            self._sink.flush()
            # On Linux, DONTNEED starts asynchronous writeback of the dirty range (and later frees it).
            os.posix_fadvise(self._sink.fileno(), self._started, self._written - self._started, os.POSIX_FADV_DONTNEED)
            self._started = self._written
        return count

    def flush(self) -> None:
        self._sink.flush()


class FileStore(ObjectStore):
    """Objects as files under a root folder; writes are staged in `<root>/.staging/` then renamed.

    An object's tags are a JSON file under `<root>/.tags/` at the object's key: like `.staging/`, a hidden
    folder at the root is never listed, and no key can name it, so tags never appear as lake objects.

    A staged file is named after the process and host writing it. A writer killed outright (SIGKILL, out of
    memory) leaves its file behind, invisible to readers; the next store on the same host to write to that
    lake removes the files of that host's writers that are gone, so crashes do not slowly fill the disk. A
    file staged on another host (a container sharing the folder) is never touched: its process ids are not
    ours to check."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = self.root.as_uri()
        self._staging = self.root / ".staging"
        self._tags = self.root / ".tags"
        self._host = socket.gethostname()
        self._swept = False

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        try:
            handle = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        with handle:
            yield handle

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        target = self._path(key)
        self._staging.mkdir(parents=True, exist_ok=True)
        if not self._swept:
            self._sweep_staging()
        staged = self._staging / f"{os.getpid()}-{uuid.uuid4().hex}-{self._host}.part"
        try:
            with staged.open("wb") as sink:
                yield _EarlyWriteback(sink)
                sink.flush()
                os.fsync(sink.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            self._tags_path(key).unlink(missing_ok=True)  # a new object starts untagged, as on S3
        finally:
            staged.unlink(missing_ok=True)

    def _sweep_staging(self) -> None:
        """Remove what writers of this host that no longer run left staged."""
        self._swept = True
        for staged in self._staging.glob("*.part"):
            writer = STAGED_NAME.fullmatch(staged.name)
            if writer and writer["host"] == self._host and not psutil.pid_exists(int(writer["pid"])):
                staged.unlink(missing_ok=True)
                logger.info("removed %s, left staged by process %s that ended mid-write", staged.name, writer["pid"])

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def list(self, prefix: str = "") -> Iterator[str]:
        for key, _ in self._walk(prefix):
            yield key

    def entries(self, prefix: str = "") -> Iterator[ObjectEntry]:
        for key, entry in self._walk(prefix):
            info = entry.stat()
            yield ObjectEntry(key, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))

    def _walk(self, prefix: str) -> Iterator[tuple[str, os.DirEntry]]:
        """Files whose key starts with `prefix`, in key order, holding one folder's listing at a time: only
        the folders the prefix can reach are entered, so a listing of `raw/ab/` never walks the lake."""
        folder = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        start = self._path(folder.rstrip("/")) if folder else self.root
        yield from self._walk_folder(start, folder, prefix)

    def _walk_folder(self, folder: Path, relative: str, prefix: str) -> Iterator[tuple[str, os.DirEntry]]:
        try:
            with os.scandir(folder) as scan:
                found = [(entry, entry.is_dir(follow_symlinks=False)) for entry in scan]
        except (FileNotFoundError, NotADirectoryError):
            return
        # A folder's keys all start with "<name>/", so it sorts among the files by that string.
        for entry, is_dir in sorted(found, key=lambda pair: pair[0].name + ("/" if pair[1] else "")):
            key = relative + entry.name
            if is_dir:
                hidden = not relative and entry.name.startswith(".")  # .staging and other store internals
                if not hidden and (key + "/").startswith(prefix[: len(key) + 1]):
                    yield from self._walk_folder(Path(entry.path), key + "/", prefix)
            elif key.startswith(prefix) and entry.is_file():
                yield key, entry

    def unfinished_writes(self) -> Iterator[UnfinishedWrite]:
        if not self._staging.is_dir():
            return
        for staged in sorted(self._staging.glob("*.part")):
            with contextlib.suppress(FileNotFoundError):  # published or swept meanwhile
                yield UnfinishedWrite(staged.name, datetime.fromtimestamp(staged.stat().st_mtime, UTC))

    def discard(self, write: UnfinishedWrite) -> None:
        (self._staging / write.name).unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        self._tags_path(key).unlink(missing_ok=True)

    def _tags_path(self, key: str) -> Path:
        return self._tags.joinpath(*check_key(f"{key}.json").split("/"))

    def set_tags(self, key: str, tags: Mapping[str, str]) -> None:
        if not self.exists(key):
            raise ObjectNotFound(key)
        path = self._tags_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._staging.mkdir(parents=True, exist_ok=True)
        staged = self._staging / f"{os.getpid()}-{uuid.uuid4().hex}-{self._host}.part"
        try:
            staged.write_text(json.dumps(dict(tags), sort_keys=True))
            os.replace(staged, path)
        finally:
            staged.unlink(missing_ok=True)

    def tags(self, key: str) -> dict[str, str]:
        if not self.exists(key):
            raise ObjectNotFound(key)
        try:
            return json.loads(self._tags_path(key).read_text())
        except FileNotFoundError:
            return {}


class _MultipartWriter(io.RawIOBase):
    """A writable stream that uploads to S3 in parts, so large objects never sit in memory or on disk."""

    def __init__(self, client, bucket: str, key: str, part_bytes: int) -> None:
        super().__init__()
        self._client, self._bucket, self._key = client, bucket, key
        self._part_bytes = part_bytes
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._buffer += data
        while len(self._buffer) >= self._part_bytes:
            self._upload_part(bytes(self._buffer[: self._part_bytes]))
            del self._buffer[: self._part_bytes]
        return len(data)

    def _upload_part(self, body: bytes) -> None:
        if self._upload_id is None:
            created = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        answer = self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=body
        )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def publish(self) -> None:
        if self._upload_id is None:
            self._client.put_object(Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer))
            return
        if self._buffer:
            self._upload_part(bytes(self._buffer))
        self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def abort(self) -> None:
        if self._upload_id is not None:
            abort_upload(self._client, self._bucket, self._key, self._upload_id)


def abort_upload(client, bucket: str, key: str, upload_id: str) -> None:
    """Throw a multipart upload's parts away; one already gone (aborted by the audit, say) is not an error."""
    from botocore.exceptions import ClientError

    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as error:
        if getattr(error, "response", {}).get("Error", {}).get("Code") != "NoSuchUpload":
            raise


class S3Store(ObjectStore):
    """Objects in an S3 bucket under an optional prefix, through boto3 (AWS, MinIO, any S3 protocol server).

    Credentials come from boto3's usual chain (environment, profile, instance role), never from code.
    """

    def __init__(
        self, bucket: str, prefix: str = "", endpoint_url: str | None = None, part_bytes: int = 8 * 1024 * 1024
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.part_bytes = max(part_bytes, 5 * 1024 * 1024)  # S3's minimum for all but the last part
        self._client = boto3.client(
            "s3", endpoint_url=endpoint_url, config=Config(retries={"max_attempts": 5, "mode": "standard"})
        )

    def _object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _is_missing(self, error: Exception) -> bool:
        code = getattr(error, "response", {}).get("Error", {}).get("Code")
        return code in ("404", "NoSuchKey", "NotFound")

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        from botocore.exceptions import ClientError

        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self._object_key(key))["Body"]
        except ClientError as error:
            if self._is_missing(error):
                raise ObjectNotFound(key) from None
            raise
        with contextlib.closing(body):
            yield body

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        writer = _MultipartWriter(self._client, self.bucket, self._object_key(key), self.part_bytes)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.publish()

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self._client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as error:
            if self._is_missing(error):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise ObjectNotFound(key)
        return int(head["ContentLength"])

    def list(self, prefix: str = "") -> Iterator[str]:
        for entry in self.entries(prefix):
            yield entry.key

    def entries(self, prefix: str = "") -> Iterator[ObjectEntry]:
        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
            for entry in page.get("Contents", []):
                yield ObjectEntry(entry["Key"][len(root) :], entry["Size"], entry["LastModified"])

    def unfinished_writes(self) -> Iterator[UnfinishedWrite]:
        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=root):
            for upload in page.get("Uploads", []):
                yield UnfinishedWrite(upload["Key"][len(root) :], upload["Initiated"], upload["UploadId"])

    def discard(self, write: UnfinishedWrite) -> None:
        abort_upload(self._client, self.bucket, self._object_key(write.name), write.upload_id)

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._object_key(key))

    def set_tags(self, key: str, tags: Mapping[str, str]) -> None:
        from botocore.exceptions import ClientError

        tag_set = [{"Key": name, "Value": value} for name, value in sorted(tags.items())]
        try:
            self._client.put_object_tagging(Bucket=self.bucket, Key=self._object_key(key), Tagging={"TagSet": tag_set})
        except ClientError as error:
            if self._is_missing(error):
                raise ObjectNotFound(key) from None
            raise

    def tags(self, key: str) -> dict[str, str]:
        from botocore.exceptions import ClientError

        try:
            answer = self._client.get_object_tagging(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as error:
            if self._is_missing(error):
                raise ObjectNotFound(key) from None
            raise
        return {tag["Key"]: tag["Value"] for tag in answer["TagSet"]}

    def lifecycle_rules(self) -> list[dict]:
        """The bucket's lifecycle rules as S3 returns them: all of the bucket's, not only this lake's prefix."""
        from botocore.exceptions import ClientError

        try:
            return self._client.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
        except ClientError as error:
            if getattr(error, "response", {}).get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
                return []
            raise

    def set_lifecycle_rules(self, rules: list[dict]) -> None:
        """Replace the bucket's lifecycle rules: S3 keeps one configuration per bucket, so `rules` is all of them."""
        self._client.put_bucket_lifecycle_configuration(Bucket=self.bucket, LifecycleConfiguration={"Rules": rules})

    def copy(self, source_key: str, target_key: str) -> None:
        # Server-side copy: the bytes never travel through this process.
        self._client.copy(
            {"Bucket": self.bucket, "Key": self._object_key(source_key)}, self.bucket, self._object_key(target_key)
        )


def open_store(url: str | None = None, settings: Settings | None = None) -> ObjectStore:
    """The object store at `url` (default: the configured lake)."""
    settings = settings or get_settings()
    url = url or settings.lake_url
    parsed = urlparse(url)
    if parsed.scheme == "file":
        root = Path(unquote(parsed.path))
        root.mkdir(parents=True, exist_ok=True)
        return FileStore(root)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"lake URL {url!r} names no bucket")
        return S3Store(parsed.netloc, parsed.path, endpoint_url=settings.s3_endpoint_url)
    raise ValueError(f"unsupported lake URL {url!r}: use file:///path or s3://bucket/prefix")
