"""Validation fanned out: the batch cut into groups measured by tasks of their own, then judged as one. The
verdicts are those of a single pass, a group killed mid-way is measured again alone, and a plan is final."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pytest
from sqlalchemy import select

from pipelines.catalog import Catalog, SightingRecord
from pipelines.catalog import Image as ImageRow
from pipelines.quality import extract_group, judge_batch, pending_images, plan_batch, validate_batch
from pipelines.quality.run_files import facts_key, pending_key, read_frame
from pipelines.raw_zone import ingest_photo
from pipelines.settings import QualitySettings, Settings
from pipelines.storage import FileStore
from tests.corpus import color_photo, tricky_corpus

SOURCES = ("unsplash", "flickr", "web")
GROUP_IMAGES = 4


class ReadCountingStore(FileStore):
    """A lake that notes every raw image read, and can die after a given number of them, as a task
    killed mid-group would."""

    def __init__(self, root: Path, die_after_reads: int | None = None) -> None:
        super().__init__(root)
        self.raw_reads: list[str] = []
        self.die_after_reads = die_after_reads

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        if key.startswith("raw/"):
            if self.die_after_reads is not None and len(self.raw_reads) >= self.die_after_reads:
                raise KeyboardInterrupt("killed")
            self.raw_reads.append(key)
        with super().open_read(key) as source:
            yield source


def fill(store: FileStore, catalog: Catalog, corpus_folder: Path) -> None:
    """The tricky corpus among ordinary photos, spread over sources, in a fixed order."""
    files = [path.read_bytes() for path, _expected in tricky_corpus(corpus_folder).values()]
    files += [color_photo(seed) for seed in range(20)]
    for number, data in enumerate(files):
        source = SOURCES[number % len(SOURCES)]
        record = SightingRecord(source, f"item-{number}", f"https://{source}.example/{number}", license="CC-BY-2.0")
        ingest_photo(store, catalog, data, record, run_id="ingest", name_hint=f"item-{number}")


def verdicts(catalog: Catalog) -> dict[str, tuple[str, list[str] | None]]:
    with catalog.session() as session:
        rows = session.execute(select(ImageRow.sha256, ImageRow.status, ImageRow.reject_reasons)).all()
    return {sha256: (status, reasons) for sha256, status, reasons in rows}


def grouped(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, quality=QualitySettings(fact_group_images=GROUP_IMAGES))


def test_groups_measured_apart_give_the_verdicts_of_one_pass(tmp_path: Path) -> None:
    outcomes = []
    for name, group_images in (("one", 10**6), ("many", GROUP_IMAGES)):
        store, catalog = FileStore(tmp_path / name / "lake"), Catalog(f"sqlite:///{tmp_path / name / 'c.db'}")
        catalog.migrate()
        fill(store, catalog, tmp_path / "corpus")
        settings = Settings(home=tmp_path / name, quality=QualitySettings(fact_group_images=group_images))
        groups = plan_batch(store, catalog, "run-1", settings)
        for group in groups:
            extract_group(store, "run-1", group, settings)
        summary = judge_batch(store, catalog, "run-1", settings)
        outcomes.append((len(groups), {key: value for key, value in summary.items() if key != "report_uri"}))
        outcomes[-1] += (verdicts(catalog),)
    (one_groups, one_summary, one_verdicts), (many_groups, many_summary, many_verdicts) = outcomes
    assert one_groups == 1 and many_groups == -(-one_summary["images"] // GROUP_IMAGES) > 5
    assert {"exact duplicate", "near duplicate"} <= set(one_summary["by_reason"]), "duplicates cross groups"
    assert many_summary == one_summary
    assert many_verdicts == one_verdicts


def test_a_group_killed_mid_way_is_measured_again_alone(tmp_path: Path) -> None:
    settings = grouped(tmp_path)
    store = ReadCountingStore(tmp_path / "lake")
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    catalog.migrate()
    fill(store, catalog, tmp_path / "corpus")
    groups = plan_batch(store, catalog, "run-1", settings)
    killed = 2
    for group in groups:
        if group != killed:
            extract_group(store, "run-1", group, settings)
    measured_before = {group: store.get(facts_key("run-1", group)) for group in groups if group != killed}

    dying = ReadCountingStore(tmp_path / "lake", die_after_reads=2)
    with pytest.raises(KeyboardInterrupt):
        extract_group(dying, "run-1", killed, settings)
    assert not store.exists(facts_key("run-1", killed)), "a killed group leaves no facts behind"

    retrying = ReadCountingStore(tmp_path / "lake")
    for group in groups:  # even were every task run again, only the killed group is measured
        extract_group(retrying, "run-1", group, settings)
    assert retrying.raw_reads == list(read_frame(store, pending_key("run-1", killed))["raw_key"])
    assert {group: store.get(facts_key("run-1", group)) for group in measured_before} == measured_before

    summary = judge_batch(store, catalog, "run-1", settings)
    assert summary["images"] == sum(len(read_frame(store, facts_key("run-1", group))) for group in groups)
    assert not pending_images(catalog)


def test_a_plan_is_final_and_judging_needs_every_group(tmp_path: Path) -> None:
    settings = grouped(tmp_path)
    store, catalog = FileStore(tmp_path / "lake"), Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    catalog.migrate()
    for seed in range(10):
        ingest_photo(
            store, catalog, color_photo(seed), SightingRecord("local", f"p{seed}", f"file:///p{seed}"), run_id="in"
        )
    groups = plan_batch(store, catalog, "run-1", settings, limit=9)
    assert groups == [0, 1, 2]
    ingest_photo(store, catalog, color_photo(77), SightingRecord("local", "late", "file:///late"), run_id="in")
    assert plan_batch(store, catalog, "run-1", settings) == groups, "a retried plan keeps its batch"

    extract_group(store, "run-1", 0, settings)
    with pytest.raises(RuntimeError, match=r"groups \[1, 2\] were never measured"):
        judge_batch(store, catalog, "run-1", settings)
    for group in groups[1:]:
        extract_group(store, "run-1", group, settings)
    assert judge_batch(store, catalog, "run-1", settings)["images"] == 9
    assert len(pending_images(catalog)) == 2, "the image left out by the limit and the late one wait"
    assert validate_batch(store, catalog, "run-2", settings)["images"] == 2
