"""Archive reading: exact read-back, hostile archives refused, broken ones never passed off as complete."""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from pipelines.archives import (
    ArchiveEntry,
    ArchiveLimits,
    CorruptArchive,
    UnsafeArchive,
    check_member_name,
    iter_tar,
    iter_zip,
)

PHOTOS = {
    "train/n01440764/n01440764_10026.JPEG": b"\xff\xd8 tench " * 300,
    "train/n02102040/n02102040_1.JPEG": b"\xff\xd8 springer " * 200,
    "LICENSE.txt": b"CC BY 2.0\n",
}


def file_entry(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special_entry(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def dir_entry(name: str) -> tuple[tarfile.TarInfo, None]:
    return special_entry(name, tarfile.DIRTYPE)


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def write_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    path.write_bytes(tar_bytes(entries, mode))
    return path


def write_zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return path


def photo_entries() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The layout `tar -C dump -cf x.tar .` writes: a root entry, folders, then './'-prefixed files."""
    return [
        dir_entry("."),
        dir_entry("./train"),
        *(file_entry(f"./{name}", data) for name, data in PHOTOS.items()),
    ]


def read_back(members: list[ArchiveEntry]) -> dict[str, bytes]:
    assert all(member.size == len(member.data) for member in members)
    return {member.name: member.data for member in members}


class OneWayStream:
    """A body that can only be read forward, like an HTTP response."""

    def __init__(self, data: bytes) -> None:
        self._buffer = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._buffer.read(size)


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_tar_and_tgz_read_back_exactly(tmp_path: Path, mode: str) -> None:
    archive = write_tar(tmp_path / "photos.tar", photo_entries(), mode)

    assert read_back(list(iter_tar(archive))) == PHOTOS


def test_tgz_reads_from_a_forward_only_stream() -> None:
    body = OneWayStream(tar_bytes(photo_entries(), "w:gz"))

    assert read_back(list(iter_tar(body, label="https://dumps.example/imagenette.tgz"))) == PHOTOS


def test_zip_reads_back_exactly(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "photos.zip", [("train/", b""), *PHOTOS.items()])

    assert read_back(list(iter_zip(archive))) == PHOTOS


def test_wanted_picks_members_by_checked_name(tmp_path: Path) -> None:
    tar = write_tar(tmp_path / "photos.tgz", photo_entries(), "w:gz")
    zip_ = write_zip(tmp_path / "photos.zip", list(PHOTOS.items()))
    photos = {name: data for name, data in PHOTOS.items() if name.endswith(".JPEG")}

    def wanted(name: str) -> bool:
        return name.endswith(".JPEG")

    assert read_back(list(iter_tar(tar, wanted=wanted))) == photos
    assert read_back(list(iter_zip(zip_, wanted=wanted))) == photos


def test_tar_nested_in_a_tar_reads_through_an_inner_stream(tmp_path: Path) -> None:
    """ILSVRC's train tar holds one tar per class."""
    inner = tar_bytes([file_entry("n01440764_10026.JPEG", PHOTOS["train/n01440764/n01440764_10026.JPEG"])])
    outer = write_tar(tmp_path / "ILSVRC2012_img_train.tar", [file_entry("n01440764.tar", inner)])

    photos = [photo for member in iter_tar(outer) for photo in iter_tar(io.BytesIO(member.data), label=member.name)]

    assert read_back(photos) == {"n01440764_10026.JPEG": PHOTOS["train/n01440764/n01440764_10026.JPEG"]}


@pytest.mark.parametrize(
    ("name", "normalized"),
    [("a/b.jpg", "a/b.jpg"), ("./a/b.jpg", "a/b.jpg"), ("a//./b.jpg", "a/b.jpg"), ("a\\b.jpg", "a/b.jpg")],
)
def test_check_member_name_normalizes(name: str, normalized: str) -> None:
    assert check_member_name(name) == normalized


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "empty"),
        ("./", "empty"),
        ("/etc/passwd", "absolute"),
        ("C:\\Windows\\evil.dll", "absolute"),
        ("c:/evil", "absolute"),
        ("\\\\server\\share\\evil", "absolute"),
        ("../../evil.txt", ".."),
        ("..\\evil", ".."),
        ("photos/../../evil", ".."),
        ("evil\0.jpg", "NUL"),
    ],
)
def test_check_member_name_refuses_names_that_could_point_elsewhere(name: str, rule: str) -> None:
    with pytest.raises(UnsafeArchive, match=rule) as refused:
        check_member_name(name)

    assert refused.value.member == name


HOSTILE_NAMES = [("../../evil.txt", ".."), ("/etc/passwd", "absolute"), ("..\\evil", "..")]


@pytest.mark.parametrize(("name", "rule"), HOSTILE_NAMES)
def test_tar_with_a_hostile_name_is_refused(tmp_path: Path, name: str, rule: str) -> None:
    archive = write_tar(tmp_path / "slip.tar", [file_entry(name, b"owned")])

    with pytest.raises(UnsafeArchive, match=rule) as refused:
        list(iter_tar(archive))

    assert str(refused.value).startswith(f"archive {str(archive)!r}, member {name!r}: ")


@pytest.mark.parametrize(("name", "rule"), HOSTILE_NAMES)
def test_zip_with_a_hostile_name_is_refused_before_any_member(tmp_path: Path, name: str, rule: str) -> None:
    archive = write_zip(tmp_path / "slip.zip", [("good.jpg", b"fine"), (name, b"owned")])
    yielded: list[ArchiveEntry] = []

    with pytest.raises(UnsafeArchive, match=rule) as refused:
        yielded.extend(iter_zip(archive, label="coco-slip.zip"))

    assert yielded == []
    assert str(refused.value).startswith(f"archive 'coco-slip.zip', member {name!r}: ")


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        (special_entry("photos/link.jpg", tarfile.SYMTYPE, "/etc/shadow"), "symbolic link"),
        (special_entry("photos/hard.jpg", tarfile.LNKTYPE, "photos/a.jpg"), "hard link"),
        (special_entry("photos/tty", tarfile.CHRTYPE), "device"),
        (special_entry("photos/disk", tarfile.BLKTYPE), "device"),
        (special_entry("photos/pipe", tarfile.FIFOTYPE), "FIFO"),
    ],
)
def test_tar_links_and_special_files_refuse_the_archive(
    tmp_path: Path, entry: tuple[tarfile.TarInfo, None], rule: str
) -> None:
    """Members before the hostile one come out (it is a stream); the error says the archive as a whole failed."""
    archive = write_tar(tmp_path / "links.tar", [file_entry("photos/a.jpg", b"fine"), entry])
    members = iter_tar(archive)

    assert next(members).name == "photos/a.jpg"
    with pytest.raises(UnsafeArchive, match=f"{rule} members are not allowed"):
        next(members)


@pytest.mark.parametrize(("file_type", "rule"), [(stat.S_IFLNK, "symbolic link"), (stat.S_IFCHR, "special file")])
def test_zip_symlink_and_special_entries_are_refused(tmp_path: Path, file_type: int, rule: str) -> None:
    link = zipfile.ZipInfo("photos/link.jpg")
    link.create_system = 3  # unix, where external_attr carries st_mode
    link.external_attr = (file_type | 0o777) << 16

    with pytest.raises(UnsafeArchive, match=rule):
        list(iter_zip(write_zip(tmp_path / "link.zip", [(link, b"/etc/shadow")])))


BOMB_BYTES = 32 * 2**20


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real photo, then 32 MiB of zeros deflated to ~32 KB (ratio ~1000, as in the classic bombs)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("photo.jpg", PHOTOS["LICENSE.txt"])
        with archive.open("zeros.bin", "w") as member:
            for _ in range(BOMB_BYTES // 2**20):
                member.write(bytes(2**20))
    return path


@pytest.mark.parametrize(
    ("limits", "rule"),
    [
        (ArchiveLimits(), "compression ratio over 200"),
        (ArchiveLimits(max_member_bytes=2**20, max_compression_ratio=10_000), "over the 1048576 limit"),
        (ArchiveLimits(max_total_bytes=2**20, max_compression_ratio=10_000), "in total"),
    ],
)
def test_zip_bomb_is_refused_before_anything_is_inflated(
    zip_bomb: Path, monkeypatch: pytest.MonkeyPatch, limits: ArchiveLimits, rule: str
) -> None:
    def never_inflate(*args: object, **kwargs: object) -> None:
        raise AssertionError("a member was opened before the whole central directory was checked")

    monkeypatch.setattr(zipfile.ZipFile, "open", never_inflate)
    yielded: list[ArchiveEntry] = []
    started = time.perf_counter()

    with pytest.raises(UnsafeArchive, match=rule) as refused:
        yielded.extend(iter_zip(zip_bomb, limits))

    assert time.perf_counter() - started < 0.5
    assert yielded == []
    assert refused.value.member == "zeros.bin"


@pytest.mark.parametrize(("reader", "rule"), [("tar", "more than 2 members"), ("zip", "3 members, over the 2 limit")])
def test_too_many_members_are_refused(tmp_path: Path, reader: str, rule: str) -> None:
    limits = ArchiveLimits(max_members=2)
    names = ["a.jpg", "b.jpg", "c.jpg"]
    if reader == "tar":
        members = iter_tar(write_tar(tmp_path / "many.tar", [file_entry(name, b"x") for name in names]), limits)
    else:
        members = iter_zip(write_zip(tmp_path / "many.zip", [(name, b"x") for name in names]), limits)

    with pytest.raises(UnsafeArchive, match=rule):
        list(members)


@pytest.mark.parametrize("reader", ["tar", "zip"])
def test_inflated_total_over_the_limit_is_refused(tmp_path: Path, reader: str) -> None:
    limits = ArchiveLimits(max_total_bytes=5000)
    photos = [(f"{index}.jpg", bytes([index]) * 2000) for index in range(3)]
    if reader == "tar":
        members = iter_tar(write_tar(tmp_path / "big.tgz", [file_entry(*photo) for photo in photos], "w:gz"), limits)
    else:
        members = iter_zip(write_zip(tmp_path / "big.zip", photos), limits)

    with pytest.raises(UnsafeArchive, match="inflates past 5000 bytes in total") as refused:
        list(members)

    assert refused.value.member == "2.jpg"


def test_tar_member_over_the_size_limit_is_refused_without_being_read(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "big.tar", [file_entry("huge.jpg", bytes(10_000))])

    with pytest.raises(UnsafeArchive, match="10000 bytes, over the 4096 limit"):
        list(iter_tar(archive, ArchiveLimits(max_member_bytes=4096), wanted=lambda name: False))


def test_oversized_tar_header_is_refused_before_it_is_held_in_memory(tmp_path: Path) -> None:
    """tarfile reads a pax header whole, whatever size it declares."""
    info, data = file_entry("a.jpg", b"fine")
    info.pax_headers = {"comment": "x" * 200_000}
    archive = write_tar(tmp_path / "pax.tar", [(info, data)])

    with pytest.raises(UnsafeArchive, match="max_header_bytes"):
        list(iter_tar(archive, ArchiveLimits(max_header_bytes=64 * 1024)))
    assert [member.name for member in iter_tar(archive)] == ["a.jpg"]


def flip_byte(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :]


def broken_tars() -> dict[str, bytes]:
    entries = [file_entry(name, data) for name, data in PHOTOS.items()]
    tgz = tar_bytes(entries, "w:gz")
    tar = tar_bytes(entries)
    first_member_end = 512 + -(-len(PHOTOS["train/n01440764/n01440764_10026.JPEG"]) // 512) * 512
    return {
        "tgz cut in half": tgz[: len(tgz) // 2],
        "tgz without its length trailer": tgz[:-4],
        "tgz with a wrong CRC": flip_byte(tgz, len(tgz) - 6),
        "tgz with a flipped data byte": flip_byte(tgz, len(tgz) // 2),
        "tar cut at a member boundary": tar[:first_member_end],
        "tar cut inside a header": tar[: first_member_end + 100],
        "tar with a garbled second header": flip_byte(tar, first_member_end + 20),
        "empty file": b"",
        "not an archive": b"<html>Service Unavailable</html>",
    }


@pytest.mark.parametrize("case", list(broken_tars()))
def test_truncated_or_corrupt_tar_raises_corrupt_archive(tmp_path: Path, case: str) -> None:
    """The standard library would end quietly on several of these, passing a partial archive off as whole."""
    archive = tmp_path / "broken.tgz"
    archive.write_bytes(broken_tars()[case])

    with pytest.raises(CorruptArchive, match="unreadable tar stream") as failed:
        list(iter_tar(archive))

    assert failed.value.archive == str(archive)


def zip_member_data_offset(path: Path, name: str) -> int:
    with zipfile.ZipFile(path) as archive:
        header_offset = archive.getinfo(name).header_offset
    name_length, extra_length = struct.unpack("<HH", path.read_bytes()[header_offset + 26 : header_offset + 30])
    return header_offset + 30 + name_length + extra_length


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_with_a_flipped_byte_raises_corrupt_archive(tmp_path: Path, method: int) -> None:
    archive = tmp_path / "flipped.zip"
    with zipfile.ZipFile(archive, "w", method) as writer:
        writer.writestr("photo.jpg", PHOTOS["train/n01440764/n01440764_10026.JPEG"])
    archive.write_bytes(flip_byte(archive.read_bytes(), zip_member_data_offset(archive, "photo.jpg") + 10))

    with pytest.raises(CorruptArchive, match="unreadable zip"):
        list(iter_zip(archive))


def test_truncated_zip_raises_corrupt_archive(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "cut.zip", list(PHOTOS.items()))
    archive.write_bytes(archive.read_bytes()[:-100])

    with pytest.raises(CorruptArchive, match="unreadable zip"):
        list(iter_zip(archive))


def listing(*folders: Path) -> list[str]:
    return sorted(str(path) for folder in folders for path in folder.rglob("*"))


def test_hostile_archives_never_write_outside_their_work_area(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative writes would land in the working folder, so that is moved under tmp_path and watched too."""
    downloads = tmp_path / "work" / "downloads"
    downloads.mkdir(parents=True)
    monkeypatch.chdir(downloads.parent)
    hostile = [
        file_entry("photos/a.jpg", b"fine"),
        file_entry("../../evil.txt", b"owned"),
        special_entry("photos/link.jpg", tarfile.SYMTYPE, "/etc/shadow"),
    ]
    tar = write_tar(downloads / "hostile.tgz", hostile, "w:gz")
    zip_ = write_zip(downloads / "hostile.zip", [("photos/a.jpg", b"fine"), ("../../evil.txt", b"owned")])
    before = listing(tmp_path)

    for members in (iter_tar(tar), iter_zip(zip_)):
        with pytest.raises(UnsafeArchive):
            list(members)

    assert listing(tmp_path) == before
