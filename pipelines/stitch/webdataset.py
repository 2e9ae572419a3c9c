"""The second step of a build, and its reading half: a shard's samples written to, and streamed back from,
a WebDataset tar in the lake.

Samples are keyed by the image's sha256 and hold `lab.npy` (uint8, `load_size` square) and `json` (sources,
split, raw key). Shard bytes are reproducible (fixed tar metadata, sorted members), and the tar is written
atomically, so rewriting one after a crash gives the same object."""

from __future__ import annotations

import hashlib
import json
import logging
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from pipelines.lab import npy_header, npy_view
from pipelines.stitch.plan import ShardSpec
from pipelines.stitch.select import DatasetImage
from pipelines.stitch.transform import TransformError, transform_image
from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)

READ_BUFFER = 256 << 10  # tarfile's stream default (10 KiB) means dozens of reads and joins per sample


@dataclass(frozen=True)
class Sample:
    """One sample read back from a shard."""

    key: str
    lab8: np.ndarray
    meta: dict[str, Any]


class _HashingWriter:
    """Passes bytes through to the lake while counting and hashing them, so the manifest's checksum costs no
    second read of the shard."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


class _TarShard:
    """Samples in the WebDataset layout (`<key>.json`, `<key>.lab.npy`, consecutive), written with
    tarfile's own headers but without its copy loop: the Lab pixels go from the array to the lake in one
    write, which matters when writing a shard costs little more than decoding its JPEGs."""

    def __init__(self, sink: _HashingWriter) -> None:
        self.sink = sink

    def add(self, member: DatasetImage, lab8: np.ndarray) -> None:
        meta = {"sha256": member.sha256, "sources": list(member.sources), "split": member.split, "raw": member.raw_key}
        text = json.dumps(meta, sort_keys=True).encode()
        pixels = memoryview(lab8).cast("B")
        npy = npy_header(lab8.shape, lab8.dtype.str)
        # Everything but the pixels goes out in one write: a sample is three writes, not seven.
        self.sink.write(
            b"".join(
                (
                    _tar_header(f"{member.sha256}.json", len(text)),
                    text,
                    _padding(len(text)),
                    _tar_header(f"{member.sha256}.lab.npy", len(npy) + len(pixels)),
                    npy,
                )
            )
        )
        self.sink.write(pixels)
        self.sink.write(_padding(len(npy) + len(pixels)))

    def close(self) -> None:
        """The end-of-archive marker (two zero blocks), padded to a whole record as tarfile does."""
        self.sink.write(bytes(2 * tarfile.BLOCKSIZE))
        self.sink.write(bytes(-self.sink.size % tarfile.RECORDSIZE))


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uname, info.gname = size, 0o444, "colorflow", "colorflow"
    return info.tobuf(tarfile.USTAR_FORMAT)  # mtime 0: the same samples give the same bytes


def _padding(size: int) -> bytes:
    return bytes(-size % tarfile.BLOCKSIZE)


def write_shard(store: ObjectStore, spec: ShardSpec, load_size: int) -> dict[str, Any]:
    """Transform the shard's images and write its tar atomically; returns what the manifest records about
    it. An image that fails is left out with its reason; a missing raw object is a lake fault and raises."""
    started = time.perf_counter()
    written = 0
    failures: list[dict[str, str]] = []
    with store.open_write(spec.key) as target:
        sink = _HashingWriter(target)
        tar = _TarShard(sink)
        for member in spec.members:
            data = store.get(member.raw_key)
            try:
                lab8 = transform_image(data, member.format, load_size)
            except TransformError as error:
                failures.append({"sha256": member.sha256, "reason": str(error)})
                logger.warning("left out %s: %s", member.sha256, error)
                continue
            tar.add(member, lab8)
            written += 1
        tar.close()
    elapsed = time.perf_counter() - started
    logger.info(
        "wrote %s: %d samples, %.1f MB in %.1f s (%.0f images/s)",
        spec.key,
        written,
        sink.size / 1e6,
        elapsed,
        len(spec.members) / max(elapsed, 1e-9),
    )
    return {
        "key": spec.key,
        "split": spec.split,
        "samples": written,
        "bytes": sink.size,
        "sha256": sink.digest.hexdigest(),
        "failures": failures,
    }


def iter_samples(store: ObjectStore, key: str) -> Iterator[Sample]:
    """Stream one shard's samples back: the reading half of `_TarShard`, for training and checks."""
    with store.open_read(key) as stream, _open_tar(stream) as tar:
        parts: dict[str, bytes] = {}
        current = None
        for entry in tar:
            if not entry.isfile():
                continue
            sample_key, _, extension = entry.name.partition(".")
            if current is not None and sample_key != current:
                yield _decode_sample(current, parts)
                parts = {}
            current = sample_key
            parts[extension] = tar.extractfile(entry).read()
        if current is not None:
            yield _decode_sample(current, parts)


def _open_tar(stream: BinaryIO) -> tarfile.TarFile:
    """Random access where the lake allows it (a local file), else a forward-only stream (S3). tarfile's
    stream mode copies its buffer on every read, which alone halves the loader's speed on local disk."""
    if stream.seekable():
        return tarfile.open(fileobj=stream, mode="r:")
    return tarfile.open(fileobj=stream, mode="r|", bufsize=READ_BUFFER)


def _decode_sample(key: str, parts: dict[str, bytes]) -> Sample:
    return Sample(key=key, lab8=npy_view(parts["lab.npy"]), meta=json.loads(parts["json"]))
