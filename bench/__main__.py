"""Run every benchmark and write its results to bench/results/ (`python -m bench`, or `make bench`); the hours-long
ones only when named (`python -m bench pipeline_scale`, or `make bench-pipeline`)."""

from __future__ import annotations

import argparse

from bench import (
    celery_workers,
    ingest,
    lake_audit,
    loader,
    near_duplicates,
    pipeline_scale,
    quality,
    rights,
    scale,
    storage,
    studio,
    train_throughput,
    transform,
)

BENCHMARKS = {
    "storage": storage.main,
    "quality": quality.main,
    "transform": transform.main,
    "loader": loader.main,
    "lake_audit": lake_audit.main,
    "ingest": ingest.main,
    "celery_workers": celery_workers.main,
    "near_duplicates": near_duplicates.main,
    "scale": scale.main,
    "rights": rights.main,
    "studio": studio.main,
    "train_throughput": lambda: train_throughput.main([]),
    "pipeline_scale": lambda: pipeline_scale.main([]),
}
# Hours on two cores: run when named, not with every other benchmark.
ON_REQUEST = frozenset({"pipeline_scale"})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all but {', '.join(sorted(ON_REQUEST))})",
    )
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    for name in args.names or [name for name in BENCHMARKS if name not in ON_REQUEST]:
        BENCHMARKS[name]()


if __name__ == "__main__":
    main()
