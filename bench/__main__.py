"""Run every benchmark and write its results to bench/results/ (`python -m bench`, or `make bench`)."""

from __future__ import annotations

import argparse

from bench import ingest, lake_audit, loader, near_duplicates, quality, scale, storage, train_throughput, transform

BENCHMARKS = {
    "storage": storage.main,
    "quality": quality.main,
    "transform": transform.main,
    "loader": loader.main,
    "lake_audit": lake_audit.main,
    "ingest": ingest.main,
    "near_duplicates": near_duplicates.main,
    "scale": scale.main,
    "train_throughput": lambda: train_throughput.main([]),
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)"
    )
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    for name in args.names or BENCHMARKS:
        BENCHMARKS[name]()


if __name__ == "__main__":
    main()
