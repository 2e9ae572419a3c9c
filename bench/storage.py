"""Lake throughput: many small objects (the raw zone) and one large streamed object (a shard), on the
`file://` backend and on a local S3-protocol server (moto_server, so the S3 figures measure the client
path, not AWS). Results: bench/results/storage.json.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3

from bench.report import write_results
from embedded.ports import running_server
from pipelines.storage import FileStore, ObjectStore, S3Store

SMALL_COUNT, SMALL_BYTES = 300, 150 * 1024  # about one 640x480 JPEG each
LARGE_BYTES, CHUNK_BYTES = 256 * 1024 * 1024, 1024 * 1024


def measure(store: ObjectStore) -> dict[str, float]:
    payloads = [os.urandom(SMALL_BYTES) for _ in range(SMALL_COUNT)]
    started = time.perf_counter()
    for number, payload in enumerate(payloads):
        store.put(f"raw/{number % 256:02x}/{number}.jpg", payload)
    put_s = time.perf_counter() - started
    started = time.perf_counter()
    for number in range(SMALL_COUNT):
        store.get(f"raw/{number % 256:02x}/{number}.jpg")
    get_s = time.perf_counter() - started

    chunk = os.urandom(CHUNK_BYTES)
    started = time.perf_counter()
    with store.open_write("datasets/bench/train/000000.tar") as sink:
        for _ in range(LARGE_BYTES // CHUNK_BYTES):
            sink.write(chunk)
    write_s = time.perf_counter() - started
    started = time.perf_counter()
    with store.open_read("datasets/bench/train/000000.tar") as source:
        while source.read(CHUNK_BYTES):
            pass
    read_s = time.perf_counter() - started
    mib = LARGE_BYTES / 2**20
    return {
        "small_put_per_s": round(SMALL_COUNT / put_s, 1),
        "small_get_per_s": round(SMALL_COUNT / get_s, 1),
        "stream_write_mib_per_s": round(mib / write_s, 1),
        "stream_read_mib_per_s": round(mib / read_s, 1),
    }


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        results["file"] = measure(FileStore(Path(folder)))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    moto = Path(sys.executable).parent / "moto_server"
    with running_server(lambda port: [str(moto), "-H", "127.0.0.1", "-p", str(port)]) as endpoint:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        results["s3 (moto_server)"] = measure(S3Store(bucket, endpoint_url=endpoint))

    written = write_results(
        "storage",
        {
            "small_objects": {"count": SMALL_COUNT, "bytes": SMALL_BYTES},
            "large_object_bytes": LARGE_BYTES,
            "results": results,
        },
    )
    print(f"{'backend':<18} {'put/s':>8} {'get/s':>8} {'write MiB/s':>12} {'read MiB/s':>11}")
    for backend, figures in results.items():
        print(
            f"{backend:<18} {figures['small_put_per_s']:>8} {figures['small_get_per_s']:>8} "
            f"{figures['stream_write_mib_per_s']:>12} {figures['stream_read_mib_per_s']:>11}"
        )
    print(f"written to {written}")


if __name__ == "__main__":
    main()
