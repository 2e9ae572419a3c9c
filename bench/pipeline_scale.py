"""Real pixels at scale through the real Airflow: ingest, validate and build at 10,000 and 100,000 photos.

At each size N the photos are those of a generated ILSVRC-style dump (`sandbox.large_dump`: the sandbox
library's photos scaled to 160 to 500 px, every one distinct bytes), unpacked into a folder and ingested by
`ingest_local`. A dump itself would go through `ingest_imagenet`, but its sightings carry ImageNet's
research-only terms, which the quality stage rejects on license: nothing would be accepted and
`build_dataset` would have nothing to build. Each size runs on a fresh embedded stack (`bench.ingest.stack`),
so no stage of the second size meets the first one's rows. The stages, each on Airflow's default pool:

- `ingest`: `ingest_local` with two slots;
- `validate_1`, `validate_2`: `validate_images` over all N with one slot, then, the same images put back to
  pending, with two (at least 8 `measure` groups, so both workers have work throughout);
- `build`: `build_dataset` with two slots.

The dump's photos are resized copies of a few hundred originals, so the near-duplicate check would reject
nearly all of them and fail the batch ("source mostly rejected"); it is off for the validation here
(`COLORFLOW_QUALITY_NEAR_DUPLICATE_DISTANCE=-1`), and its search cost at a million hashes is
`bench/near_duplicates.py`'s subject. The stitch still drops near copies, so `build` writes one sample per
original while it selects and plans over all N.

A stage's cost is its span, from its first task's start to its last task's end, per image and per core (over
the slots). Targets (the issue): each stage's per-image cost at the largest size within 1.3 x its cost at the
smallest (`cost_growth_max`), validation with two workers at least 1.8 x one (`validate_two_vs_one`). Prints
a table to stderr and one JSON line to stdout; results: bench/results/pipeline_scale.json and a plot of
per-image cost against N, bench/results/pipeline_scale.png.

    python -m bench pipeline_scale                  # 10,000 and 100,000 photos (hours on two cores)
    python -m bench.pipeline_scale --sizes 300,600  # a quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, update

from bench.ingest import PARTS_PER_WORKER, most_at_once, stack
from bench.report import RESULTS_DIR, write_results
from embedded.airflow_api import AirflowClient
from embedded.settings import StackSettings
from pipelines.catalog import Image, ImageStatus, QualityResult, open_catalog
from pipelines.storage import open_store
from sandbox.large_dump import LargeDump
from sandbox.library import PhotoLibrary

SIZES = (10_000, 100_000)
SIZES_VARIABLE = "COLORFLOW_BENCH_PIPELINE_SIZES"
PHOTOS_PER_CLASS = 100  # a dump's class tars; sizes are multiples of it
SLOTS = 2  # the pool for ingest and build, and the second validation's
GROUPS = 16  # validation groups: eight per worker, so that both stay busy to the end
MIN_GROUP_IMAGES = 100  # below this a `measure` task's start-up would outweigh its work
SECONDS_PER_IMAGE_ALLOWED = 0.2  # a run's timeout, with room for a slow machine
STAGES = ("ingest", "validate_1", "validate_2", "build")
VALIDATION_LAKE_PREFIXES = ("quarantine/", "reports/quality/")
TARGETS = {"cost_growth_max": 1.3, "validate_two_vs_one": 1.8}


def log(message: str) -> None:
    print(f"[bench pipeline_scale] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class StageRun:
    """One DAG run as a stage of the pipeline: how long its tasks spanned and on how many slots."""

    dag_id: str
    run_id: str
    slots: int
    images: int
    tasks: int
    most_tasks_at_once: int
    seconds: float

    @property
    def per_image_ms(self) -> float:
        """Milliseconds per image per core: the span over the images, times the cores it was given."""
        return round(self.seconds * self.slots / self.images * 1000, 2)


def unpack_photos(n: int, scratch: Path, library: PhotoLibrary) -> Path:
    """The photos of an N-photo dump as files, one folder per class: what `ingest_local` reads."""
    if n % PHOTOS_PER_CLASS:
        raise ValueError(f"sizes must be multiples of {PHOTOS_PER_CLASS}: {n}")
    tar = LargeDump(n // PHOTOS_PER_CLASS, PHOTOS_PER_CLASS).build(scratch / "dumps", library)
    folder = scratch / f"photos-{n}"
    with tarfile.open(tar) as outer:
        for member in outer:
            class_tar = outer.extractfile(member)
            assert class_tar is not None  # every member of a train tar is a class tar
            with tarfile.open(fileobj=class_tar) as inner:
                inner.extractall(folder / Path(member.name).stem, filter="data")
    shutil.rmtree(tar.parent)
    return folder


def run_stage(airflow: AirflowClient, dag_id: str, conf: dict[str, Any], slots: int, images: int) -> StageRun:
    """Run `dag_id` on `slots` slots of the default pool and measure its tasks' span; a failed run raises
    with the failed tasks' logs, since its figures would mean nothing."""
    airflow.set_pool_slots("default_pool", slots)
    run_id, state = airflow.run(dag_id, conf, timeout_s=max(600, images * SECONDS_PER_IMAGE_ALLOWED))
    tasks = [task for task in airflow.task_instances(dag_id, run_id) if task["start_date"] and task["end_date"]]
    if state != "success":
        logs = [
            f"--- {task['task_id']}[{task['map_index']}]\n{airflow.task_log(dag_id, run_id, task['task_id'])[-3000:]}"
            for task in tasks
            if task["state"] == "failed"
        ]
        raise RuntimeError(f"{dag_id} run {run_id} ended {state}\n" + "\n".join(logs))
    spans = [(datetime.fromisoformat(task["start_date"]), datetime.fromisoformat(task["end_date"])) for task in tasks]
    seconds = (max(end for _, end in spans) - min(start for start, _ in spans)).total_seconds()
    stage = StageRun(dag_id, run_id, slots, images, len(tasks), most_at_once(spans), round(seconds, 1))
    log(f"{dag_id} on {slots} slot(s), {images:,} images: {stage.seconds} s, {stage.per_image_ms} ms per image")
    return stage


def put_back_to_pending(settings: StackSettings) -> None:
    """Undo a validation: verdicts, check results, quarantine copies and reports, so the next run judges the
    same images anew."""
    with open_catalog(settings).session() as session:
        session.execute(delete(QualityResult))
        session.execute(update(Image).values(status=ImageStatus.PENDING, reject_reasons=None, verdict_at=None))
    store = open_store(settings=settings)
    for prefix in VALIDATION_LAKE_PREFIXES:
        for key in list(store.list(prefix)):
            store.delete(key)


def pipeline(n: int, photos: Path, scratch: Path) -> tuple[dict[str, StageRun], dict[str, int]]:
    """Every stage on N photos, on a stack of its own; and how many images were accepted and became samples,
    so that a stage which did little is seen."""
    with stack(scratch) as (settings, airflow):
        validation = {"limit": n, "group_images": max(MIN_GROUP_IMAGES, n // GROUPS)}
        batch_size = -(-n // (SLOTS * PARTS_PER_WORKER))
        stages = {
            "ingest": run_stage(airflow, "ingest_local", {"folder": str(photos), "batch_size": batch_size}, SLOTS, n)
        }
        stages["validate_1"] = run_stage(airflow, "validate_images", validation, 1, n)
        put_back_to_pending(settings)
        stages["validate_2"] = run_stage(airflow, "validate_images", validation, SLOTS, n)
        stages["build"] = run_stage(airflow, "build_dataset", {}, SLOTS, n)
        judged = airflow.xcom("validate_images", stages["validate_2"].run_id, "judge")
        published = airflow.xcom("build_dataset", stages["build"].run_id, "publish")
        return stages, {"accepted": judged["accepted"], "samples": published["sample_count"]}


def parse_sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(sorted(int(size) for size in text.split(",")))
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError("at least two sizes, so that growth can be seen")
    return sizes


def plot(costs: dict[str, dict[int, float]], path: Path) -> None:
    """Per-image cost against N, one line per stage: a flat line is a stage that scales."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4))
    for stage, by_size in costs.items():
        axes.plot(list(by_size), list(by_size.values()), marker="o", label=stage)
    axes.set_xscale("log")
    sizes = sorted({n for by_size in costs.values() for n in by_size})
    axes.set_xticks(sizes, [f"{n:,}" for n in sizes])
    axes.minorticks_off()
    axes.set_xlabel("images (N)")
    axes.set_ylabel("ms per image per core")
    axes.set_title("Pipeline cost per image as N grows")
    axes.set_ylim(bottom=0)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline_scale", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes(os.environ.get(SIZES_VARIABLE, ",".join(map(str, SIZES)))),
        help=f"comma-separated image counts, multiples of {PHOTOS_PER_CLASS} (default: ${SIZES_VARIABLE} or"
        f" {','.join(map(str, SIZES))})",
    )
    sizes: tuple[int, ...] = parser.parse_args(argv).sizes
    scratch = Path(tempfile.mkdtemp(prefix="colorflow-bench-pipeline-"))
    # The photos are resized copies of a few hundred originals (see the module's docstring).
    os.environ["COLORFLOW_QUALITY_NEAR_DUPLICATE_DISTANCE"] = "-1"
    library = PhotoLibrary()
    runs: dict[int, dict[str, StageRun]] = {}
    outcomes: dict[int, dict[str, int]] = {}
    try:
        for n in sizes:
            log(f"generating {n:,} photos")
            runs[n], outcomes[n] = pipeline(n, unpack_photos(n, scratch, library), scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    costs = {stage: {n: runs[n][stage].per_image_ms for n in sizes} for stage in STAGES}
    log("stage        N  ms per image per core")
    for stage, by_size in costs.items():
        for n, cost in by_size.items():
            log(f"{stage:<10} {n:>9,}  {cost:>8.2f}")
    smallest, largest = sizes[0], sizes[-1]
    figures = {
        "validate_two_vs_one": round(runs[largest]["validate_1"].seconds / runs[largest]["validate_2"].seconds, 2),
        "cost_growth_max": round(max(by_size[largest] / by_size[smallest] for by_size in costs.values()), 2),
        "cost_growth": {stage: round(by_size[largest] / by_size[smallest], 2) for stage, by_size in costs.items()},
        "per_image_ms": {stage: {str(n): cost for n, cost in by_size.items()} for stage, by_size in costs.items()},
        "runs": {str(n): {stage: asdict(run) for stage, run in by_stage.items()} for n, by_stage in runs.items()},
        "sizes": list(sizes),
        "outcomes": {str(n): outcome for n, outcome in outcomes.items()},
        "targets": TARGETS,
    }
    plot(costs, RESULTS_DIR / "pipeline_scale.png")
    path = write_results("pipeline_scale", figures)
    print(path.read_text(), end="")


if __name__ == "__main__":
    main()
