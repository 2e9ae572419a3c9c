"""The batch cut into groups whose facts are measured side by side: decoding is most of a validation's
work, and it needs nothing but one image's bytes, so each group is one mapped Airflow task.

- `plan_batch` chooses the batch (the pending images, in sha256 order, at most the run's limit), writes each
  group's images to the lake and returns the group numbers to map over.
- `extract_group` measures one group and writes its facts; the judging task (`validate.judge_batch`) reads
  every group back.

Both are idempotent per run id: the plan is written once (`facts/plan.json` last, so a plan cut short is
made again), and a group whose facts are in the lake is not measured again, so a killed task's retry
measures its own group and nothing else. Files are laid out as `run_files` says.
"""

from __future__ import annotations

import json
import logging

from pipelines.catalog import Catalog
from pipelines.quality.facts import measure, pending_frame
from pipelines.quality.pending import pending_pages
from pipelines.quality.run_files import facts_key, pending_key, plan_key, read_frame, summary_key, write_frame
from pipelines.settings import Settings, get_settings
from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)


def plan_batch(
    store: ObjectStore,
    catalog: Catalog,
    run_id: str,
    settings: Settings | None = None,
    *,
    limit: int | None = None,
    group_images: int | None = None,
) -> list[int]:
    """The group numbers of the run's batch: every pending image (at most `limit`, else `batch_limit`) cut
    into groups of `group_images` (else `fact_group_images`). A run planned before returns its plan; a run
    judged before plans existed (its summary written, no plan) returns no groups."""
    quality = (settings or get_settings()).quality
    group_images = group_images or quality.fact_group_images
    planned = planned_groups(store, run_id)
    if planned is not None:
        logger.info("run %s was planned before, in %d groups", run_id, planned)
        return list(range(planned))
    if store.exists(summary_key(run_id)):
        return []
    images = groups = 0
    pages = pending_pages(catalog, group_images, limit if limit is not None else quality.batch_limit)
    for group, page in enumerate(pages):
        write_frame(
            store,
            pending_key(run_id, group),
            pending_frame(page, quality.license_allow_list, quality.unlicensed_sources),
        )
        images, groups = images + len(page), group + 1
    store.put(plan_key(run_id), json.dumps({"images": images, "groups": groups}).encode())
    logger.info("run %s: %d pending images in %d groups of at most %d", run_id, images, groups, group_images)
    return list(range(groups))


def planned_groups(store: ObjectStore, run_id: str) -> int | None:
    """How many groups the run's plan holds, or None when the run was never planned."""
    if not store.exists(plan_key(run_id)):
        return None
    return int(json.loads(store.get(plan_key(run_id)))["groups"])


def extract_group(store: ObjectStore, run_id: str, group: int, settings: Settings | None = None) -> dict[str, int]:
    """Measure one group's images and write their facts; how many images it holds and how many decode."""
    quality = (settings or get_settings()).quality
    target = facts_key(run_id, group)
    if store.exists(target):
        measured = read_frame(store, target)
        logger.info("group %d of run %s was measured before", group, run_id)
    else:
        pending = read_frame(store, pending_key(run_id, group))
        logger.info("group %d of run %s: measuring %d images", group, run_id, len(pending))
        measured = measure(
            store,
            pending,
            max_pixels=quality.max_pixels,
            analysis_side=quality.analysis_side,
            progress=f"group {group}",
        )
        write_frame(store, target, measured)
    return {"images": len(measured), "decodable": int(measured["decodes"].sum())}
