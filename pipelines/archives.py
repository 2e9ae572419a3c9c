"""Reading dataset archives from outside (ImageNet tars and .tgz, COCO zips) without unpacking them to disk.

Archives come from hosts we do not control, so each one is treated as hostile until read to the end: every
member path is checked, links and device files refuse the whole archive, and member count, member size,
inflated total and (for zips) compression ratio are held to `ArchiveLimits`. Nothing here writes a file:
members come back as bytes, and callers store them in the object store under content-addressed keys, so a
member name can never place anything outside the work area.

Two errors tell a failed read from a finished one: `UnsafeArchive` (the archive broke a rule) and
`CorruptArchive` (it cannot be read to the end). Both derive from `ArchiveError`. The standard library
readers end quietly at a cut-off header or a truncated gzip stream; here that is an error too, because a
partial read that looks complete would silently shrink a dataset.

    for member in iter_tar(Path("imagenette2-160.tgz"), wanted=lambda name: name.endswith(".JPEG")):
        ingest_photo(store, catalog, member.data, sighting, run_id, name_hint=member.name)
"""

from __future__ import annotations

import gzip
import logging
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

logger = logging.getLogger(__name__)

MiB = 2**20
GiB = 2**30
GZIP_MAGIC = b"\x1f\x8b"
DRAIN_CHUNK_BYTES = MiB
# Methods every zip writer uses by default; rarer ones are refused rather than half supported.
READABLE_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")


class ArchiveError(ValueError):
    """An archive was not read to the end; the caller must treat everything it got from it as unfinished."""

    def __init__(self, problem: str, archive: str | None = None, member: str | None = None) -> None:
        self.problem = problem
        self.archive = archive
        self.member = member
        where = [f"archive {archive!r}"] if archive else []
        where += [f"member {member!r}"] if member is not None else []
        super().__init__(f"{', '.join(where)}: {problem}" if where else problem)


class UnsafeArchive(ArchiveError):
    """The archive broke a safety rule (path, member type or size limit); a real dataset dump never does."""


class CorruptArchive(ArchiveError):
    """The archive cannot be read to the end: truncated, corrupt, or in a form this module does not read."""


@dataclass(frozen=True)
class ArchiveLimits:
    """What an acceptable archive looks like; the defaults fit ILSVRC and COCO dumps with room to spare."""

    max_members: int = 2_000_000  # ILSVRC train holds 1.28 M images
    max_member_bytes: int = 512 * MiB  # whole members are held in memory; an ILSVRC class tar is ~150 MB
    max_total_bytes: int = 64 * GiB  # inflated; COCO train2017 is ~19 GB, ILSVRC train ~140 GB in class tars
    max_compression_ratio: float = 200  # photos barely compress; a deflate bomb reaches ~1000
    max_header_bytes: int = MiB  # tar headers (pax, GNU long names) between two members; real ones are < 1 KB


DEFAULT_LIMITS = ArchiveLimits()


@dataclass(frozen=True)
class ArchiveEntry:
    """One regular file from an archive: its checked name and its bytes."""

    name: str
    size: int
    data: bytes = field(repr=False)


def check_member_name(name: str) -> str:
    """The member path as a normalized relative POSIX path; `UnsafeArchive` when it could point elsewhere.

    Members are stored by content, not by name, but names end up in catalog rows and in tools people run
    later, so a name that would escape a folder on any system (POSIX or Windows) marks the archive hostile.
    """
    return _checked_name(name, archive=None)


def iter_tar(
    source: Path | BinaryIO,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    wanted: Callable[[str], bool] | None = None,
    label: str | None = None,
) -> Iterator[ArchiveEntry]:
    """Yield the regular files of a tar or gzip-compressed tar, read front to back as a stream.

    `source` may be a local path or any readable file object (an HTTP body, a member of an outer tar as
    `io.BytesIO(member.data)`); it is never seeked. A stream cannot be checked before it is read, so members
    come out while later ones are still unread: when this raises, earlier members were yielded but the
    archive as a whole is refused, and the caller must not record it as ingested.
    """
    label = label or _describe(source)
    with source.open("rb") if isinstance(source, Path) else nullcontext(source) as stream:
        try:
            yield from _read_tar(stream, limits, wanted, label)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise CorruptArchive(f"unreadable tar stream ({error})", archive=label) from error


@dataclass(frozen=True)
class TarMember:
    """Where one regular file of an uncompressed tar keeps its bytes, so that a part of a 140 GB archive is
    read without the rest."""

    name: str
    offset: int  # of its data, from the start of the archive
    size: int


def index_tar(
    source: Path | BinaryIO, limits: ArchiveLimits = DEFAULT_LIMITS, label: str | None = None
) -> list[TarMember]:
    """The regular files of an uncompressed tar, header by header, seeking past every member's data.

    The same rules as `iter_tar` hold (names, kinds, sizes, totals, a cut-off header or member is corrupt);
    no single read may exceed `max_header_bytes`, since only headers are read. A gzip-compressed tar cannot
    be indexed (it cannot be seeked): read it with `iter_tar`.
    """
    label = label or _describe(source)
    with source.open("rb") if isinstance(source, Path) else nullcontext(source) as stream:
        if stream.read(len(GZIP_MAGIC)) == GZIP_MAGIC:
            raise CorruptArchive("a compressed tar cannot be read by member ranges", archive=label)
        end = stream.seek(0, 2)
        stream.seek(0)
        try:
            return _index_tar(_HeaderReads(stream, limits.max_header_bytes, label), end, limits, label)
        except (tarfile.TarError, EOFError) as error:
            raise CorruptArchive(f"unreadable tar ({error})", archive=label) from error


def read_member(stream: BinaryIO, member: TarMember, label: str | None = None) -> bytes:
    """The bytes of an indexed member; `CorruptArchive` when the file ends before them."""
    stream.seek(member.offset)
    data = stream.read(member.size)
    if len(data) != member.size:
        raise CorruptArchive(f"member cut off after {len(data)} of {member.size} bytes", label, member.name)
    return data


def list_zip(path: Path, limits: ArchiveLimits = DEFAULT_LIMITS, label: str | None = None) -> list[tuple[str, int]]:
    """The regular files of a zip (name, inflated size) in central-directory order, once all passed the checks
    `iter_zip` makes: what a plan divides into member ranges."""
    label = label or str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return [(name, info.file_size) for info, name in _checked_zip_entries(archive, limits, label)]
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise CorruptArchive(f"unreadable zip ({error})", archive=label) from error


def iter_zip(
    path: Path,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    wanted: Callable[[str], bool] | None = None,
    label: str | None = None,
) -> Iterator[ArchiveEntry]:
    """Yield the regular files of a zip, after checking its whole central directory.

    A zip lists its members up front, so unlike a tar it is judged entirely before the first member is
    yielded. Declared sizes are only claims: each read is bounded anyway, and zipfile checks every CRC.
    """
    label = label or str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            files = _checked_zip_entries(archive, limits, label)
            yielded = 0
            for info, name in files:
                if wanted is not None and not wanted(name):
                    continue
                with archive.open(info) as stream:
                    data = stream.read(limits.max_member_bytes + 1)
                if len(data) > limits.max_member_bytes:
                    raise UnsafeArchive(f"inflates past {limits.max_member_bytes} bytes", label, name)
                yielded += 1
                yield ArchiveEntry(name=name, size=len(data), data=data)
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise CorruptArchive(f"unreadable zip ({error})", archive=label) from error
    logger.info("Read %d members (%d yielded) from %s", len(files), yielded, label)


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def _checked_name(name: str, archive: str | None) -> str:
    if not name:
        raise UnsafeArchive("empty member name", archive, name)
    if "\0" in name:
        raise UnsafeArchive("NUL byte in member name", archive, name)
    posix = name.replace("\\", "/")
    if posix.startswith("/") or WINDOWS_DRIVE.match(posix):
        raise UnsafeArchive("absolute path", archive, name)
    segments = posix.split("/")
    if ".." in segments:
        raise UnsafeArchive("path climbs out of the archive with '..'", archive, name)
    normalized = "/".join(segment for segment in segments if segment not in ("", "."))
    if not normalized:
        raise UnsafeArchive("empty member name", archive, name)
    return normalized


def _describe(source: Path | BinaryIO) -> str | None:
    if isinstance(source, Path):
        return str(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else None


def _read_tar(
    stream: _Readable, limits: ArchiveLimits, wanted: Callable[[str], bool] | None, label: str | None
) -> Iterator[ArchiveEntry]:
    head = stream.read(len(GZIP_MAGIC))
    compressed = _Prefixed(head, stream)
    # gzip is unwrapped here rather than by tarfile ("r|gz"): tarfile's stream reader ignores the gzip CRC and
    # length, so a cut-off .tgz would read as a shorter but valid archive.
    inflated = gzip.GzipFile(fileobj=compressed, mode="rb") if head == GZIP_MAGIC else compressed
    metered = _Metered(inflated, limits.max_header_bytes, label)
    members = total_bytes = yielded = 0
    with tarfile.open(fileobj=metered, mode="r|", tarinfo=_StrictTarInfo) as tar:
        while (info := tar.next()) is not None:
            # A stream-mode TarFile keeps every TarInfo it has read; over 1.28 M ILSVRC members that is gigabytes.
            tar.members.clear()
            members += 1
            name = _checked_tar_member(info, members, total_bytes, limits, label)
            if name is None:
                metered.allow(limits.max_header_bytes)
                continue
            total_bytes += info.size
            metered.allow(limits.max_header_bytes + _tar_blocks(info.size))
            if wanted is None or wanted(name):
                member_file = tar.extractfile(info)
                assert member_file is not None  # tarfile returns None only for non-regular members
                data = member_file.read(info.size)
                yielded += 1
                yield ArchiveEntry(name=name, size=len(data), data=data)
        # Read to the real end, so that gzip checks its CRC and length and a truncated stream cannot pass.
        while metered.read(DRAIN_CHUNK_BYTES):
            pass
    logger.info("Read %d members (%d yielded, %d bytes) from %s", members, yielded, total_bytes, label or "a stream")


def _index_tar(stream: BinaryIO, end: int, limits: ArchiveLimits, label: str | None) -> list[TarMember]:
    found: list[TarMember] = []
    members = total_bytes = 0
    with tarfile.open(fileobj=stream, mode="r:", tarinfo=_StrictTarInfo) as tar:
        while (info := tar.next()) is not None:
            tar.members.clear()
            members += 1
            name = _checked_tar_member(info, members, total_bytes, limits, label)
            if name is None:
                continue
            total_bytes += info.size
            if info.offset_data + info.size > end:
                raise CorruptArchive(f"member cut off at byte {end} of the archive", label, name)
            found.append(TarMember(name, info.offset_data, info.size))
    logger.info("Indexed %d members (%d files, %d bytes) of %s", members, len(found), total_bytes, label or "a tar")
    return found


def _checked_tar_member(
    info: tarfile.TarInfo, members: int, total_bytes: int, limits: ArchiveLimits, label: str | None
) -> str | None:
    """The checked name of the `members`-th member, a regular file within the limits after `total_bytes`
    of earlier ones; None for a directory; `UnsafeArchive` for anything else."""
    if members > limits.max_members:
        raise UnsafeArchive(f"more than {limits.max_members} members", label, info.name)
    if info.isdir():
        if info.name not in (".", "./"):  # the archive root, as `tar -C dir .` writes it
            _checked_name(info.name, label)
        return None
    name = _checked_name(info.name, label)
    if not info.isreg():
        raise UnsafeArchive(f"{_tar_kind(info)} members are not allowed", label, name)
    if info.size > limits.max_member_bytes:
        raise UnsafeArchive(f"{info.size} bytes, over the {limits.max_member_bytes} limit", label, name)
    if total_bytes + info.size > limits.max_total_bytes:
        raise UnsafeArchive(f"inflates past {limits.max_total_bytes} bytes in total", label, name)
    return name


def _checked_zip_entries(
    archive: zipfile.ZipFile, limits: ArchiveLimits, label: str | None
) -> list[tuple[zipfile.ZipInfo, str]]:
    """The regular files of a zip with their checked names, once every central-directory entry passed."""
    entries = archive.infolist()
    if len(entries) > limits.max_members:
        raise UnsafeArchive(f"{len(entries)} members, over the {limits.max_members} limit", label)
    files = []
    total_bytes = 0
    for info in entries:
        name = _checked_name(info.filename, label)
        unix_mode = info.external_attr >> 16  # zeros when the writer was not a unix tool
        if stat.S_ISLNK(unix_mode):
            raise UnsafeArchive("symbolic link members are not allowed", label, name)
        if info.is_dir():
            continue
        if stat.S_IFMT(unix_mode) not in (0, stat.S_IFREG):
            raise UnsafeArchive(f"special file (unix mode {unix_mode:#o}) members are not allowed", label, name)
        if info.flag_bits & 0x1:
            raise CorruptArchive("encrypted member", label, name)
        if info.compress_type not in READABLE_ZIP_METHODS:
            raise CorruptArchive(f"unsupported compression method {info.compress_type}", label, name)
        if info.file_size > limits.max_member_bytes:
            raise UnsafeArchive(f"{info.file_size} bytes, over the {limits.max_member_bytes} limit", label, name)
        if info.file_size > limits.max_compression_ratio * info.compress_size:
            raise UnsafeArchive(
                f"compression ratio over {limits.max_compression_ratio:g} "
                f"({info.compress_size} bytes inflate to {info.file_size})",
                label,
                name,
            )
        total_bytes += info.file_size
        if total_bytes > limits.max_total_bytes:
            raise UnsafeArchive(f"inflates past {limits.max_total_bytes} bytes in total", label, name)
        files.append((info, name))
    return files


def _tar_blocks(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    if info.ischr() or info.isblk():
        return "device"
    if info.isfifo():
        return "FIFO"
    return f"type {info.type!r}"


class _StrictTarInfo(tarfile.TarInfo):
    """A TarInfo whose reader takes only a zero block as the end of an archive.

    tarfile ends quietly at a header that is missing, cut off or garbled once past the first member, which
    makes a truncated download look like a complete, smaller archive.
    """

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as error:
            if len(buf) == tarfile.BLOCKSIZE and not any(buf):
                raise  # the end-of-archive marker
            raise tarfile.ReadError(f"{error} where a member header should be") from None


class _Prefixed:
    """A stream whose first bytes were already read to sniff the format; it hands them out again first."""

    def __init__(self, head: bytes, stream: _Readable) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int, /) -> bytes:
        if not self._head:
            return self._stream.read(size)
        data, self._head = self._head[:size], self._head[size:]
        return data if len(data) == size else data + self._stream.read(size - len(data))


class _HeaderReads:
    """A seekable archive whose reads are bounded: indexing reads headers only, so a larger read is a pax or
    long-name header declaring a size meant to exhaust memory."""

    def __init__(self, stream: BinaryIO, max_read: int, label: str | None) -> None:
        self._stream, self._max_read, self._label = stream, max_read, label

    def read(self, size: int = -1, /) -> bytes:
        if size < 0 or size > self._max_read:
            raise UnsafeArchive("a tar header larger than max_header_bytes", self._label)
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


class _Metered:
    """The inflated tar stream, with a byte allowance that the reader tops up member by member.

    ArchiveEntry sizes are checked against the limits before their data is read, but tarfile reads pax and GNU
    long-name headers into memory whole, whatever size they declare; the allowance bounds those reads.
    """

    def __init__(self, stream: _Readable, allowance: int, label: str | None) -> None:
        self._stream = stream
        self._allowance = allowance
        self._label = label

    def allow(self, allowance: int) -> None:
        self._allowance = allowance

    def read(self, size: int, /) -> bytes:
        data = self._stream.read(size)
        self._allowance -= len(data)
        if self._allowance < 0:
            raise UnsafeArchive("tar headers or trailing data larger than max_header_bytes", self._label)
        return data
