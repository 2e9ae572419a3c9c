"""A takedown end to end, through the real pieces: photos ingested from the Unsplash stand-in, a dataset
version built by the stitch, a model trained on it and registered on a real MLflow server; then the
takedown, the impact it reports, the bytes it removes, the re-ingestion it refuses and the build that
leaves the photo out."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import select, update

from models.lineage import WITHDRAWN_TAG
from models.registry import register_run
from models.train import TrainConfig, Trainer
from pipelines.catalog import (
    Catalog,
    DatasetMember,
    FetchFailure,
    Image,
    ImageStatus,
    Sighting,
    SightingRecord,
    Takedown,
    Withdrawal,
)
from pipelines.http import HttpClient, host_key
from pipelines.raw_zone import content_digest, ingest_photo, quarantine_key
from pipelines.settings import Settings
from pipelines.sources.unsplash import UnsplashConfig, client, discover, fetch
from pipelines.sources.web import Candidate, Window, store_candidates
from pipelines.stitch import ShardParams, stitch_dataset
from pipelines.storage import FileStore
from pipelines.takedowns import TakedownRequest, apply_takedown
from pipelines.takedowns.report import report_keys
from sandbox.credentials import UNSPLASH_ACCESS_KEY
from sandbox.library import PhotoLibrary

PARAMS = ShardParams(load_size=72, shard_size=8, split_ratios=(("train", 0.6), ("val", 0.2), ("test", 0.2)))
ANCHOR = datetime.combine(PhotoLibrary().anchor, datetime.min.time(), UTC)


@dataclass
class Trained:
    """A lake whose photos came from the stand-in, one dataset version, one registered model."""

    store: FileStore
    catalog: Catalog
    config: UnsplashConfig
    http: HttpClient
    candidates: list[Candidate]
    version: str
    run_id: str
    model_version: str

    def fetch(self, candidate: Candidate) -> bytes:
        return fetch(self.config, self.http, candidate)


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, sandbox_url: str, small: Callable[..., TrainConfig], tracking_uri: str
) -> Trained:
    root = tmp_path_factory.mktemp("takedowns")
    store, catalog = FileStore(root / "lake"), Catalog(f"sqlite:///{root / 'catalog.db'}")
    catalog.migrate()
    config = UnsplashConfig(api_url=f"{sandbox_url}/unsplash/api", access_key=UNSPLASH_ACCESS_KEY)
    http = client(config, Settings(home=root, http_allowed_hosts=[host_key(sandbox_url)]))
    window = Window(ANCHOR - timedelta(days=60), ANCHOR + timedelta(days=1))
    candidates = discover(config, http, window, ["city", "portrait", "dog"], limit=16)
    counts = store_candidates(candidates, lambda c: fetch(config, http, c), store, catalog, run_id="ingest-1")
    assert counts["stored"] == len(candidates) >= 12
    with catalog.session() as session:  # the quality stage's verdict, which these tests do not exercise
        session.execute(update(Image).values(status=ImageStatus.ACCEPTED))
    version = stitch_dataset(store, catalog, PARAMS)["version"]
    lake_url = store.root.as_uri()
    training = small(dataset=version, lake_url=lake_url, steps=4, tracking=True, eval_every=4, eval_batches=1)
    result = Trainer(training, tracking_uri=tracking_uri, tags={"dag_id": "test"}).fit()
    registered = register_run(result.run_id, tracking_uri, lake_url)
    return Trained(store, catalog, config, http, candidates, version, result.run_id, registered["version"])


def member_of(trained: Trained, version: str) -> Candidate:
    """A candidate whose image is a member of `version` and has its bytes in the lake."""
    with trained.catalog.session() as session:
        members = set(session.scalars(select(DatasetMember.image_sha256).where(DatasetMember.version == version)))
        for candidate in trained.candidates:
            sha = session.scalar(select(Sighting.image_sha256).where(Sighting.source_id == candidate.source_id))
            if sha in members:
                return candidate
    raise AssertionError("no candidate is a member")


def image_of(catalog: Catalog, candidate: Candidate) -> Image:
    with catalog.session() as session:
        sha = session.scalar(select(Sighting.image_sha256).where(Sighting.source_id == candidate.source_id))
        return session.get(Image, sha)


def test_a_takedown_reports_its_exact_impact_removes_the_bytes_and_refuses_the_photo_for_good(
    trained: Trained, tracking_uri: str
) -> None:
    store, catalog = trained.store, trained.catalog
    candidate = member_of(trained, trained.version)
    image = image_of(catalog, candidate)
    data = store.get(image.raw_key)
    store.put(quarantine_key(image.sha256, image.raw_key), data)  # as if it had once been quarantined
    request = TakedownRequest(
        reason="the author asked", requested_by="ana@example.org", source="unsplash", source_id=candidate.source_id
    )

    outcome = apply_takedown(request, store, catalog, tracking_uri)

    assert outcome.known and outcome.images == outcome.newly_withdrawn == [image.sha256]
    assert [version.version for version in outcome.impact.dataset_versions] == [trained.version]
    assert [run.run_id for run in outcome.impact.training_runs] == [trained.run_id]
    assert [(m.name, m.version, m.aliases) for m in outcome.impact.model_versions] == [
        ("colorizer", trained.model_version, ("champion",))
    ]
    assert sorted(outcome.objects_deleted) == sorted([image.raw_key, quarantine_key(image.sha256, image.raw_key)])
    assert not store.exists(image.raw_key) and not store.exists(quarantine_key(image.sha256, image.raw_key))
    assert image_of(catalog, candidate).status == ImageStatus.WITHDRAWN
    tags = MlflowClient(tracking_uri).get_model_version("colorizer", trained.model_version).tags
    assert tags[WITHDRAWN_TAG] == request.takedown_id
    json_key, html_key = report_keys(request.takedown_id)
    report = json.loads(store.get(json_key))
    assert report == json.loads(json.dumps(outcome.report))
    assert report["takedown"]["requested_by"] == "ana@example.org"
    assert [v["version"] for v in report["dataset_versions"]] == [trained.version]
    assert [m["aliases"] for m in report["model_versions"]] == [["champion"]]
    page = store.get(html_key).decode()
    assert trained.run_id in page and trained.version in page and "champion" in page

    # The same source id is refused before it is fetched, with a fetch failure naming the takedown.
    again = store_candidates(trained.candidates, trained.fetch, store, catalog, run_id="ingest-2")
    assert again["withdrawn"] == 1 and again.get("stored", 0) == 0
    with catalog.session() as session:
        failure = session.scalars(select(FetchFailure).where(FetchFailure.run_id == "ingest-2")).one()
    assert failure.source_id == candidate.source_id and request.takedown_id in failure.reason
    # The same bytes under another name are refused too, and nothing reaches the lake.
    copy = SightingRecord("local", content_digest(data), "file:///home/someone/copy.jpg")
    assert ingest_photo(store, catalog, data, copy, run_id="ingest-3") is None
    assert not store.exists(image.raw_key)
    assert catalog.count(Sighting, source="local") == 0 and catalog.count(FetchFailure, run_id="ingest-3") == 1

    # The next build leaves it out.
    rebuilt = stitch_dataset(store, catalog, PARAMS)
    assert rebuilt["version"] != trained.version
    assert rebuilt["sample_count"] == report["dataset_versions"][0]["samples"] - 1
    assert catalog.count(DatasetMember, version=rebuilt["version"], image_sha256=image.sha256) == 0
    assert outcome.rebuild_confs() == [
        {key: PARAMS.to_dict()[key] for key in ("sources", "since", "until", "load_size", "shard_size", "split_ratios")}
    ]

    # The same takedown again changes nothing: rows, objects, tags and the report stay as they were.
    report_before = (store.get(json_key), Path(store.root, json_key).stat().st_mtime_ns)
    repeat = apply_takedown(request, store, catalog, tracking_uri)
    assert repeat.known and not repeat.changed
    assert (repeat.newly_withdrawn, repeat.objects_deleted, repeat.models_tagged) == ([], [], [])
    assert (store.get(json_key), Path(store.root, json_key).stat().st_mtime_ns) == report_before
    assert catalog.count(Takedown) == 1 and catalog.count(Withdrawal) == 1
    tags = MlflowClient(tracking_uri).get_model_version("colorizer", trained.model_version).tags
    assert tags[WITHDRAWN_TAG] == request.takedown_id


def test_a_takedown_that_names_nothing_known_says_so_and_changes_nothing(trained: Trained, tracking_uri: str) -> None:
    store, catalog = trained.store, trained.catalog
    takedowns, images = catalog.count(Takedown), catalog.count(Image, status=ImageStatus.WITHDRAWN)
    request = TakedownRequest(reason="author", requested_by="ana", author="Nobody We Know")

    outcome = apply_takedown(request, store, catalog, tracking_uri)

    assert not outcome.known and not outcome.changed
    assert (catalog.count(Takedown), catalog.count(Image, status=ImageStatus.WITHDRAWN)) == (takedowns, images)
    assert not any(store.exists(key) for key in report_keys(request.takedown_id))


def test_an_author_takedown_withdraws_every_photo_of_theirs(trained: Trained, tracking_uri: str) -> None:
    store, catalog = trained.store, trained.catalog
    with catalog.session() as session:
        author, photos = session.execute(
            select(Sighting.author, Sighting.image_sha256)
            .join(Image, Image.sha256 == Sighting.image_sha256)
            .where(Image.status == ImageStatus.ACCEPTED)
            .limit(1)
        ).one()
        theirs = set(session.scalars(select(Sighting.image_sha256).where(Sighting.author == author)))
    request = TakedownRequest(reason="author's request", requested_by="legal", author=author.upper())

    outcome = apply_takedown(request, store, catalog, tracking_uri)

    assert set(outcome.newly_withdrawn) == theirs and photos in theirs
    assert all(image_of_sha(catalog, sha).status == ImageStatus.WITHDRAWN for sha in theirs)


def image_of_sha(catalog: Catalog, sha256: str) -> Image:
    with catalog.session() as session:
        return session.get(Image, sha256)


@pytest.mark.parametrize(
    ("named", "error"),
    [
        ({}, "name the photos one way"),
        ({"source": "flickr"}, "needs both the source and the source id"),
        ({"author": "Ana", "sha256": "a" * 64}, "name the photos one way"),
        ({"sha256": "not-a-digest"}, "not a sha256"),
    ],
)
def test_a_request_names_its_photos_exactly_one_way(named: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        TakedownRequest(reason="r", requested_by="who", **named)


def test_the_takedown_id_depends_on_what_is_named_only() -> None:
    first = TakedownRequest(reason="one", requested_by="a", source="flickr", source_id="1")
    assert (
        first.takedown_id == TakedownRequest(reason="two", requested_by="b", source="flickr", source_id="1").takedown_id
    )
    assert (
        first.takedown_id != TakedownRequest(reason="one", requested_by="a", source="flickr", source_id="2").takedown_id
    )
